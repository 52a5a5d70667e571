//! Scheduled jobs: a direct method or a twin update on every device matching a condition.

use crate::client::{Call, ServiceClient};
use crate::methods::DirectMethodRequest;
use crate::twins::TwinPatch;
use crate::{Error, ErrorKind, Result};
use iot_common::{JobRequest, JobResponse, Timestamp};
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
        req.start_time = schedule.start.map(Timestamp::from);
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
        req.start_time = schedule.start.map(Timestamp::from);
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
