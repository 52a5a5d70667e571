//! Scheduled jobs (jobs v2): run a direct method or a twin update on every device matching a
//! query condition.

use crate::{MethodInvocation, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `scheduleDeviceMethod` or `scheduleUpdateTwin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum JobType {
    /// Invoke a direct method on each device.
    ScheduleDeviceMethod,
    /// Apply a twin patch to each device.
    ScheduleUpdateTwin,
}

/// A job's status. Note the hub's spelling `cancelled` at job level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum JobStatus {
    /// Unknown.
    Unknown,
    /// Accepted, not yet started.
    Enqueued,
    /// Running.
    Running,
    /// Finished; see the statistics for per-device failures.
    Completed,
    /// Failed as a whole.
    Failed,
    /// Cancelled by the service.
    Cancelled,
    /// Waiting for its start time.
    Scheduled,
    /// Queued behind other jobs.
    Queued,
}

/// The body of `PUT /jobs/v2/{jobId}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct JobRequest {
    /// The job id.
    pub job_id: String,
    /// What the job does.
    #[serde(rename = "type")]
    pub job_type: JobType,
    /// The method, for `scheduleDeviceMethod`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_to_device_method: Option<MethodInvocation>,
    /// The twin patch (`tags`, `properties.desired`, `etag: "*"`), for `scheduleUpdateTwin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_twin: Option<Value>,
    /// A WHERE condition over device twins, e.g. `deviceId IN ['a','b']`.
    pub query_condition: String,
    /// When to start; now when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Timestamp>,
    /// How long the job may run.
    #[serde(default = "default_max_execution")]
    pub max_execution_time_in_seconds: u64,
}

fn default_max_execution() -> u64 {
    3600
}

impl JobRequest {
    /// A method job.
    pub fn device_method(
        job_id: impl Into<String>,
        query_condition: impl Into<String>,
        method: MethodInvocation,
    ) -> Self {
        Self {
            job_id: job_id.into(),
            job_type: JobType::ScheduleDeviceMethod,
            cloud_to_device_method: Some(method),
            update_twin: None,
            query_condition: query_condition.into(),
            start_time: None,
            max_execution_time_in_seconds: default_max_execution(),
        }
    }

    /// A twin-update job; `patch` holds `tags` and/or `properties.desired`.
    pub fn update_twin(
        job_id: impl Into<String>,
        query_condition: impl Into<String>,
        mut patch: Value,
    ) -> Self {
        if let Some(obj) = patch.as_object_mut() {
            obj.entry("etag")
                .or_insert_with(|| Value::String("*".into()));
        }
        Self {
            job_id: job_id.into(),
            job_type: JobType::ScheduleUpdateTwin,
            cloud_to_device_method: None,
            update_twin: Some(patch),
            query_condition: query_condition.into(),
            start_time: None,
            max_execution_time_in_seconds: default_max_execution(),
        }
    }
}

/// Per-device counts of a job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct DeviceJobStatistics {
    /// Devices the condition matched.
    pub device_count: u64,
    /// Devices where it failed.
    pub failed_count: u64,
    /// Devices where it succeeded.
    pub succeeded_count: u64,
    /// Devices in progress.
    pub running_count: u64,
    /// Devices not yet started.
    pub pending_count: u64,
}

/// A job as the hub reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct JobResponse {
    /// The job id.
    pub job_id: String,
    /// The condition.
    #[serde(default)]
    pub query_condition: Option<String>,
    /// When it was created.
    #[serde(default)]
    pub created_time: Option<Timestamp>,
    /// When it starts or started.
    #[serde(default)]
    pub start_time: Option<Timestamp>,
    /// When it ended.
    #[serde(default)]
    pub end_time: Option<Timestamp>,
    /// Its time limit.
    #[serde(default)]
    pub max_execution_time_in_seconds: Option<u64>,
    /// What it does.
    #[serde(rename = "type")]
    pub job_type: JobType,
    /// The method, for method jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_to_device_method: Option<MethodInvocation>,
    /// The patch, for twin jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_twin: Option<Value>,
    /// Its status.
    pub status: JobStatus,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// A status message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    /// Per-device counts.
    #[serde(default)]
    pub device_job_statistics: DeviceJobStatistics,
}

impl JobResponse {
    /// A job record in state `scheduled` with empty statistics.
    pub fn new(job_id: impl Into<String>, job_type: JobType) -> Self {
        Self {
            job_id: job_id.into(),
            query_condition: None,
            created_time: None,
            start_time: None,
            end_time: None,
            max_execution_time_in_seconds: None,
            job_type,
            cloud_to_device_method: None,
            update_twin: None,
            status: JobStatus::Scheduled,
            failure_reason: None,
            status_message: None,
            device_job_statistics: DeviceJobStatistics::default(),
        }
    }
}
