//! Scheduled jobs: a direct method or a twin update on every device matching a condition.

use crate::client::{Call, ServiceClient};
use crate::methods::DirectMethodRequest;
use crate::twins::TwinPatch;
use crate::{Error, ErrorKind, Result};
use iot_common::{JobRequest, JobResponse};
use reqwest::Method;
use std::time::{Duration, SystemTime};

/// When and for how long a job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobSchedule {
    /// Start time (`None`: now).
    pub start: Option<SystemTime>,
    /// The job's time limit (default 1 h).
    pub max_execution: Duration,
}

impl Default for JobSchedule {
    fn default() -> Self {
        Self {
            start: None,
            max_execution: Duration::from_secs(3600),
        }
    }
}

fn iso(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

impl ServiceClient {
    /// Schedules a direct method on every device matching `condition` (a WHERE clause, e.g.
    /// `deviceId IN ['a','b']` or `properties.reported.firmware < '2.0'`).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for an invalid method; [`ErrorKind::Conflict`] for a reused
    /// job id; [`ErrorKind::InvalidInput`] for a condition the hub cannot parse.
    ///
    /// # Cancel safety
    /// Dropping the future abandons the request; if it was already sent the hub may still
    /// apply it, exactly as after a timeout. Scheduling the same job id again gives `Conflict`, which tells you it was applied.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn example(service: iot_service::ServiceClient) -> Result<(), iot_service::Error> {
    /// use iot_service::{DirectMethodRequest, JobSchedule};
    /// let job = service
    ///     .schedule_method_job(
    ///         "reboot-floor-3",
    ///         "tags.floor = 3",
    ///         &DirectMethodRequest::new("rebootDevice"),
    ///         JobSchedule::default(),
    ///     )
    ///     .await?;
    /// println!("{:?}", job.status);
    /// # Ok(()) }
    /// ```
    pub async fn schedule_method_job(
        &self,
        job_id: &str,
        condition: &str,
        method: &DirectMethodRequest,
        schedule: JobSchedule,
    ) -> Result<JobResponse> {
        method
            .body()
            .validate()
            .map_err(|e| Error::new(ErrorKind::InvalidInput, e.to_string()))?;
        let mut req = JobRequest::device_method(job_id, condition, method.body().clone());
        req.start_time = schedule.start.map(iso);
        req.max_execution_time_in_seconds = schedule.max_execution.as_secs();
        self.put_job(job_id, &req).await
    }

    /// Schedules a twin update (tags and/or desired) on every device matching `condition`.
    ///
    /// # Errors
    /// As [`ServiceClient::schedule_method_job`].
    ///
    /// # Cancel safety
    /// Dropping the future abandons the request; if it was already sent the hub may still
    /// apply it, exactly as after a timeout. Scheduling the same job id again gives `Conflict`, which tells you it was applied.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn example(service: iot_service::ServiceClient) -> Result<(), iot_service::Error> {
    /// use iot_service::{JobSchedule, TwinPatch};
    /// let patch = TwinPatch::new().desired("telemetryInterval", serde_json::json!(60));
    /// service
    ///     .schedule_twin_update_job("slow-down", "tags.region = 'US'", &patch, JobSchedule::default())
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn schedule_twin_update_job(
        &self,
        job_id: &str,
        condition: &str,
        patch: &TwinPatch,
        schedule: JobSchedule,
    ) -> Result<JobResponse> {
        patch.validate()?;
        let mut req = JobRequest::update_twin(job_id, condition, patch.to_value());
        req.start_time = schedule.start.map(iso);
        req.max_execution_time_in_seconds = schedule.max_execution.as_secs();
        self.put_job(job_id, &req).await
    }

    async fn put_job(&self, job_id: &str, req: &JobRequest) -> Result<JobResponse> {
        let call = Call::new(Method::PUT, vec!["jobs", "v2", job_id]).json(req)?;
        self.send(call).await?.json()
    }

    /// A job's state and statistics.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`].
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping the future abandons the request; nothing changes on the hub.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn example(service: iot_service::ServiceClient) -> Result<(), iot_service::Error> {
    /// let job = service.get_job("reboot-floor-3").await?;
    /// println!("{:?} {:?}", job.status, job.device_job_statistics);
    /// # Ok(()) }
    /// ```
    pub async fn get_job(&self, job_id: &str) -> Result<JobResponse> {
        self.send(Call::new(Method::GET, vec!["jobs", "v2", job_id]))
            .await?
            .json()
    }

    /// Cancels a job; devices not yet reached are marked canceled.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`].
    ///
    /// # Cancel safety
    /// Dropping the future abandons the request; if it was already sent the hub may still
    /// apply it, exactly as after a timeout. Cancelling again is harmless.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn example(service: iot_service::ServiceClient) -> Result<(), iot_service::Error> {
    /// let job = service.cancel_job("reboot-floor-3").await?;
    /// println!("{:?}", job.status);
    /// # Ok(()) }
    /// ```
    pub async fn cancel_job(&self, job_id: &str) -> Result<JobResponse> {
        self.send(Call::new(
            Method::POST,
            vec!["jobs", "v2", job_id, "cancel"],
        ))
        .await?
        .json()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_times() {
        assert_eq!(iso(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(iso(t), "2023-11-14T22:13:20.123Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(iso(leap), "2000-02-29T00:00:00.000Z");
    }
}
