//! `iothub job …`: schedule, show, cancel and list jobs; `--wait` follows one to its end.

use crate::cli::{JobCommand, JobScheduleArgs};
use crate::error::CliError;
use crate::hub::Hub;
use crate::input;
use crate::output::{Column, Output};
use iot_service::{DirectMethodRequest, JobResponse, JobSchedule, JobStatus, TwinPatch};
use serde_json::Value;
use std::time::{Duration, SystemTime};

const COLUMNS: &[Column] = &[
    Column("Job", "/jobId"),
    Column("Type", "/type"),
    Column("Status", "/status"),
    Column("Start", "/startTime"),
    Column("End", "/endTime"),
    Column("Succeeded", "/deviceJobStatistics/succeededCount"),
    Column("Failed", "/deviceJobStatistics/failedCount"),
];

/// How often `--wait` asks for the job's state.
const POLL: Duration = Duration::from_millis(500);

/// Runs one `job` subcommand.
///
/// # Cancel safety
/// A dropped schedule or cancel may or may not have reached the hub (`job show` tells);
/// dropping `--wait` only stops the waiting, the job goes on. Bounded by the client's timeout
/// and `--wait-timeout`.
pub async fn run(hub: &Hub, out: &Output, cmd: JobCommand) -> Result<(), CliError> {
    match cmd {
        JobCommand::Schedule(a) => {
            let job = schedule(hub, out, &a).await?;
            let job = if a.wait {
                wait(hub, out, job, a.wait_timeout).await?
            } else {
                job
            };
            out.object(&to_value(&job)?);
        }
        JobCommand::Show { job_id } => out.object(&to_value(&hub.client.get_job(&job_id).await?)?),
        JobCommand::Cancel { job_id } => {
            out.object(&to_value(&hub.client.cancel_job(&job_id).await?)?);
        }
        JobCommand::List {
            job_type,
            status,
            top,
        } => {
            let top = top.unwrap_or(u64::MAX);
            let mut rows = Vec::new();
            {
                let _s = out.spinner("listing jobs");
                let mut q = hub
                    .client
                    .query_jobs(job_type.as_deref(), status.as_deref());
                while (rows.len() as u64) < top {
                    let Some(page) = q.next_page().await? else {
                        break;
                    };
                    let room = usize::try_from(top - rows.len() as u64).unwrap_or(usize::MAX);
                    for j in page.into_iter().take(room) {
                        rows.push(to_value(&j)?);
                    }
                }
            }
            out.rows(&rows, COLUMNS);
        }
    }
    Ok(())
}

async fn schedule(hub: &Hub, out: &Output, a: &JobScheduleArgs) -> Result<JobResponse, CliError> {
    let when = JobSchedule {
        start: a
            .start_in
            .map(|s| SystemTime::now() + Duration::from_secs(s)),
        max_execution: Duration::from_secs(a.max_execution),
    };
    let _s = out.spinner(format!("scheduling job {}", a.job_id));
    let job = match (&a.method, &a.twin_patch) {
        (Some(method), _) => {
            let mut req = DirectMethodRequest::new(method)
                .response_timeout(Duration::from_secs(a.response_timeout));
            if let Some(p) = &a.payload {
                req = req.payload_json(input::json(p)?);
            }
            hub.client
                .schedule_method_job(&a.job_id, &a.condition, &req, when)
                .await?
        }
        (None, Some(patch)) => {
            let patch = twin_patch(input::json(patch)?)?;
            hub.client
                .schedule_twin_update_job(&a.job_id, &a.condition, &patch, when)
                .await?
        }
        (None, None) => {
            return Err(CliError::Usage("give --method or --twin-patch".into()));
        }
    };
    Ok(job)
}

fn twin_patch(v: Value) -> Result<TwinPatch, CliError> {
    let mut patch = TwinPatch::new();
    if let Some(Value::Object(t)) = v.get("tags") {
        patch = patch.tags(t.clone());
    }
    if let Some(Value::Object(d)) = v.pointer("/properties/desired") {
        patch = patch.desired_properties(d.clone());
    }
    if patch == TwinPatch::new() {
        return Err(CliError::Usage(
            "--twin-patch needs {\"tags\":{…}} and/or {\"properties\":{\"desired\":{…}}}".into(),
        ));
    }
    Ok(patch)
}

fn finished(s: JobStatus) -> bool {
    matches!(
        s,
        JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
    )
}

async fn wait(
    hub: &Hub,
    out: &Output,
    mut job: JobResponse,
    timeout_secs: u64,
) -> Result<JobResponse, CliError> {
    let spinner = out.spinner(format!("waiting for job {}", job.job_id));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout_secs);
    while !finished(job.status) {
        if tokio::time::Instant::now() + POLL > deadline {
            return Err(CliError::Transport(format!(
                "job {} did not finish within {timeout_secs} s (it goes on; see `iothub job show {}`)",
                job.job_id, job.job_id
            )));
        }
        tokio::time::sleep(POLL).await;
        job = hub.client.get_job(&job.job_id).await?;
        spinner.set_message(format!("waiting for job {}: {:?}", job.job_id, job.status));
    }
    Ok(job)
}

fn to_value(j: &JobResponse) -> Result<Value, CliError> {
    serde_json::to_value(j).map_err(|e| CliError::Unexpected(format!("cannot show the job: {e}")))
}
