//! Scheduled jobs (jobs v2): a job runs a direct method or a twin update on every device whose
//! twin matches its condition, at its start time, within its time limit; each device gets a
//! `devices.jobs` record with its outcome.

use super::Hub;
use super::job_store::{JobStore, is_active};
use crate::clock::{now_string, now_timestamp};
use crate::error::HubRefusal;
use crate::locks::lock;
use crate::query::{self, Collection};
use iot_common::{ErrorCode, JobRequest, JobResponse, JobStatus, JobType, Timestamp};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

fn to_chrono(t: Timestamp) -> chrono::DateTime<chrono::Utc> {
    std::time::SystemTime::from(t).into()
}

fn job_type_name(t: JobType) -> &'static str {
    match t {
        JobType::ScheduleDeviceMethod => "scheduleDeviceMethod",
        _ => "scheduleUpdateTwin",
    }
}

impl Hub {
    fn job_store(&self) -> &Mutex<JobStore> {
        &self.jobs
    }

    /// The rows of `FROM devices.jobs`: one per device per job.
    pub(crate) fn device_job_documents(&self) -> Vec<Value> {
        lock(self.job_store())
            .device_jobs
            .values()
            .flatten()
            .cloned()
            .collect()
    }

    /// `PUT /jobs/v2/{id}`.
    pub(crate) fn create_job(&self, id: &str, req: JobRequest) -> Result<JobResponse, HubRefusal> {
        if req.job_id != id {
            return Err(HubRefusal::bad_request(
                "jobId in the body does not match the path.",
            ));
        }
        if req.query_condition.len() > crate::limits::MAX_QUERY_LEN {
            return Err(HubRefusal::bad_request(format!(
                "queryCondition is longer than {} characters.",
                crate::limits::MAX_QUERY_LEN
            )));
        }
        query::parse_condition(&req.query_condition)
            .map_err(|e| HubRefusal::bad_request(e.to_string()))?;
        if req.max_execution_time_in_seconds > crate::limits::MAX_JOB_EXECUTION_SECS {
            return Err(HubRefusal::bad_request(
                "maxExecutionTimeInSeconds is larger than an int64.",
            ));
        }
        match req.job_type {
            JobType::ScheduleDeviceMethod => {
                let m = req
                    .cloud_to_device_method
                    .as_ref()
                    .ok_or_else(|| HubRefusal::bad_request("cloudToDeviceMethod is required."))?;
                super::methods::validate(m)?;
            }
            _ => {
                let patch = req
                    .update_twin
                    .as_ref()
                    .filter(|p| p.is_object())
                    .ok_or_else(|| HubRefusal::bad_request("updateTwin is required."))?;
                if patch.get("etag").and_then(Value::as_str) != Some("*") {
                    return Err(HubRefusal::bad_request(
                        "updateTwin must carry \"etag\": \"*\".",
                    ));
                }
            }
        }
        let start = match &req.start_time {
            Some(t) => to_chrono(*t),
            None => chrono::Utc::now(),
        };
        let mut store = lock(self.job_store());
        if store.jobs.contains_key(id) {
            return Err(HubRefusal::new(
                ErrorCode::JobAlreadyExists,
                format!("A job with id '{id}' already exists."),
            ));
        }
        store.make_room()?;
        let mut job = JobResponse::new(id, req.job_type);
        job.query_condition = Some(req.query_condition);
        job.created_time = Some(now_timestamp());
        job.start_time = Some(std::time::SystemTime::from(start).into());
        job.max_execution_time_in_seconds = Some(req.max_execution_time_in_seconds);
        job.cloud_to_device_method = req.cloud_to_device_method;
        job.update_twin = req.update_twin;
        store.jobs.insert(id.to_owned(), job.clone());
        store.touch(id);
        drop(store);
        self.persist_jobs();
        Ok(job)
    }

    pub(crate) fn get_job(&self, id: &str) -> Result<JobResponse, HubRefusal> {
        lock(self.job_store()).jobs.get(id).cloned().ok_or_else(|| {
            HubRefusal::new(ErrorCode::JobNotFound, format!("Job '{id}' not found."))
        })
    }

    /// `POST /jobs/v2/{id}/cancel`: a job that has not finished stops; its pending devices
    /// are marked canceled.
    pub(crate) fn cancel_job(&self, id: &str) -> Result<JobResponse, HubRefusal> {
        let mut store = lock(self.job_store());
        let job = store.jobs.get_mut(id).ok_or_else(|| {
            HubRefusal::new(ErrorCode::JobNotFound, format!("Job '{id}' not found."))
        })?;
        if is_active(job.status) {
            job.status = JobStatus::Cancelled;
            job.end_time = Some(now_timestamp());
        }
        let job = job.clone();
        store.touch(id);
        drop(store);
        self.persist_jobs();
        Ok(job)
    }

    /// Jobs filtered by type and status (names compared case-insensitively).
    pub(crate) fn query_jobs(
        &self,
        job_type: Option<&str>,
        status: Option<&str>,
    ) -> Vec<JobResponse> {
        lock(self.job_store())
            .jobs
            .values()
            .filter(|j| job_type.is_none_or(|t| wire_name(&j.job_type).eq_ignore_ascii_case(t)))
            .filter(|j| status.is_none_or(|s| wire_name(&j.status).eq_ignore_ascii_case(s)))
            .cloned()
            .collect()
    }

    fn update_job(&self, id: &str, f: impl FnOnce(&mut JobResponse)) {
        {
            let mut store = lock(self.job_store());
            let Some(job) = store.jobs.get_mut(id) else {
                return;
            };
            f(job);
            store.touch(id);
        }
        self.persist_jobs();
    }

    fn set_device_job(&self, job_id: &str, index: usize, f: impl FnOnce(&mut Value)) {
        {
            let mut store = lock(self.job_store());
            let Some(rec) = store
                .device_jobs
                .get_mut(job_id)
                .and_then(|v| v.get_mut(index))
            else {
                return;
            };
            f(rec);
            rec["lastUpdatedDateTimeUtc"] = Value::String(now_string());
            store.touch_rows(job_id, [index]);
        }
        self.persist_jobs();
    }

    fn job_status(&self, id: &str) -> Option<JobStatus> {
        lock(self.job_store()).jobs.get(id).map(|j| j.status)
    }
}

/// The wire spelling of a serde enum (`scheduleDeviceMethod`, `cancelled`, …).
fn wire_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Starts jobs whose start time has come, each on its own task.
pub(crate) async fn scheduler(hub: Arc<Hub>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = shutdown.changed() => return,
        }
        let now = chrono::Utc::now();
        let due: Vec<JobResponse> = {
            let mut store = lock(hub.job_store());
            store
                .jobs
                .values_mut()
                .filter(|j| j.status == JobStatus::Scheduled)
                .filter(|j| j.start_time.is_none_or(|t| to_chrono(t) <= now))
                .map(|j| {
                    j.status = JobStatus::Running;
                    j.clone()
                })
                .collect::<Vec<_>>()
                .into_iter()
                .inspect(|j| store.touch(&j.job_id))
                .collect()
        };
        hub.persist_jobs();
        for job in due {
            tokio::spawn(run_job(hub.clone(), job));
        }
    }
}

async fn run_job(hub: Arc<Hub>, job: JobResponse) {
    let id = job.job_id.clone();
    let Some(condition) = job
        .query_condition
        .as_deref()
        .and_then(|c| query::parse_condition(c).ok())
    else {
        hub.update_job(&id, |j| j.status = JobStatus::Failed);
        return;
    };
    let devices: Vec<String> = hub
        .candidate_documents(Collection::Devices, Some(&condition))
        .iter()
        .filter(|d| query::matches(&condition, d.as_ref()))
        .filter_map(|d| d.get("deviceId").and_then(Value::as_str).map(str::to_owned))
        .collect();
    let created = now_string();
    let kind = job_type_name(job.job_type);
    {
        let mut store = lock(hub.job_store());
        store.device_jobs.insert(
            id.clone(),
            devices
                .iter()
                .map(|d| {
                    json!({
                        "deviceId": d, "jobId": id, "jobType": kind, "status": "pending",
                        "createdDateTimeUtc": created, "lastUpdatedDateTimeUtc": created,
                    })
                })
                .collect(),
        );
        store.touch_rows(&id, 0..devices.len());
    }
    hub.persist_jobs();
    let total = devices.len() as u64;
    hub.update_job(&id, |j| {
        j.device_job_statistics.device_count = total;
        j.device_job_statistics.pending_count = total;
    });
    let limit = Duration::from_secs(job.max_execution_time_in_seconds.unwrap_or(3600))
        .min(crate::limits::MAX_JOB_TIMER);
    let deadline = tokio::time::Instant::now() + limit;
    let mut outcome_status = JobStatus::Completed;
    for (i, device) in devices.iter().enumerate() {
        let stop = match hub.job_status(&id) {
            Some(JobStatus::Cancelled) => Some(("canceled", JobStatus::Cancelled)),
            _ if tokio::time::Instant::now() >= deadline => Some(("failed", JobStatus::Failed)),
            _ => None,
        };
        if let Some((device_status, job_status)) = stop {
            for k in i..devices.len() {
                hub.set_device_job(&id, k, |r| r["status"] = json!(device_status));
            }
            outcome_status = job_status;
            break;
        }
        hub.set_device_job(&id, i, |r| {
            r["status"] = json!("running");
            r["startTimeUtc"] = json!(now_string());
        });
        hub.update_job(&id, |j| {
            j.device_job_statistics.pending_count -= 1;
            j.device_job_statistics.running_count += 1;
        });
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let result = match job.job_type {
            JobType::ScheduleDeviceMethod => {
                let Some(m) = job.cloud_to_device_method.clone() else {
                    break;
                };
                match tokio::time::timeout(remaining, hub.invoke_method(device, None, m)).await {
                    Ok(Ok(r)) => Ok(
                        json!({ "deviceMethodResponse": { "status": r.status, "payload": r.payload } }),
                    ),
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(HubRefusal::new(
                        ErrorCode::GatewayTimeout,
                        "The job ran out of time.",
                    )),
                }
            }
            _ => {
                let patch = job.update_twin.clone().unwrap_or(Value::Null);
                hub.update_twin(device, None, &patch, None, false)
                    .map(|_| json!({}))
            }
        };
        let ok = result.is_ok();
        hub.set_device_job(&id, i, |r| {
            r["endTimeUtc"] = json!(now_string());
            match result {
                Ok(outcome) => {
                    r["status"] = json!("completed");
                    r["outcome"] = outcome;
                }
                Err(e) => {
                    r["status"] = json!("failed");
                    r["error"] = json!({ "code": e.code.name(), "description": e.message });
                }
            }
        });
        hub.update_job(&id, |j| {
            let s = &mut j.device_job_statistics;
            s.running_count -= 1;
            if ok {
                s.succeeded_count += 1;
            } else {
                s.failed_count += 1;
            }
        });
    }
    hub.update_job(&id, |j| {
        if j.status == JobStatus::Running {
            j.status = outcome_status;
        }
        if outcome_status == JobStatus::Failed {
            j.failure_reason = Some("The job exceeded maxExecutionTimeInSeconds.".into());
        }
        j.end_time.get_or_insert_with(now_timestamp);
    });
}
