//! The jobs store: every job and its per-device `devices.jobs` records, with the changes not
//! yet handed to `--state`. It owns no lock; the hub keeps it behind one.

use super::persistence::{Kind, Write};
use crate::error::HubRefusal;
use iot_common::{ErrorCode, JobResponse, JobStatus};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Every job and its per-device records, by job id.
#[derive(Debug, Default)]
pub(crate) struct JobStore {
    pub(super) jobs: BTreeMap<String, JobResponse>,
    pub(super) device_jobs: BTreeMap<String, Vec<Value>>,
    /// Jobs and device rows changed since the last hand-over to `--state`.
    changed_jobs: BTreeSet<String>,
    changed_rows: BTreeSet<(String, usize)>,
    /// The last batch that carried job rows to `--state`.
    pub(super) handover: super::durability::Handover,
}

/// The store key of a job's per-device row: the zero-padded index keeps the rows in order.
fn row_key(job_id: &str, index: usize) -> String {
    format!("{job_id}/{index:010}")
}

impl JobStore {
    pub(super) fn touch(&mut self, id: &str) {
        self.changed_jobs.insert(id.to_owned());
    }

    pub(super) fn touch_rows(&mut self, id: &str, rows: impl IntoIterator<Item = usize>) {
        for i in rows {
            self.changed_rows.insert((id.to_owned(), i));
        }
    }

    /// The changes since the last call, as store rows (a job and each of its device rows).
    pub(crate) fn take_changes(&mut self) -> Vec<Write> {
        let mut out = Vec::new();
        for id in std::mem::take(&mut self.changed_jobs) {
            let v = self.jobs.get(&id).and_then(|j| serde_json::to_vec(j).ok());
            out.push(((Kind::Job, id), v));
        }
        for (id, i) in std::mem::take(&mut self.changed_rows) {
            let v = self
                .device_jobs
                .get(&id)
                .and_then(|rows| rows.get(i))
                .and_then(|r| serde_json::to_vec(r).ok());
            out.push(((Kind::JobDevice, row_key(&id, i)), v));
        }
        out
    }

    /// Jobs from the store's rows. A job that was running when the emulator stopped is
    /// marked failed: its run cannot be resumed half-way.
    pub(crate) fn from_rows(
        jobs: Vec<(String, Vec<u8>)>,
        rows: Vec<(String, Vec<u8>)>,
    ) -> Result<Self, String> {
        let mut store = Self::default();
        for (id, v) in jobs {
            let mut job: JobResponse =
                serde_json::from_slice(&v).map_err(|e| format!("job {id} ({e})"))?;
            if is_active(job.status) && job.status != JobStatus::Scheduled {
                job.status = JobStatus::Failed;
                job.end_time = Some(crate::clock::now_timestamp());
                job.status_message = Some("The emulator restarted while the job ran.".into());
                store.touch(&id);
            }
            store.jobs.insert(id, job);
        }
        // Keys sort by job then zero-padded index, so rows come back in order.
        for (key, v) in rows {
            let row: Value =
                serde_json::from_slice(&v).map_err(|e| format!("job row {key} ({e})"))?;
            let job = key
                .rsplit_once('/')
                .map(|(j, _)| j.to_owned())
                .ok_or_else(|| format!("job row {key}"))?;
            store.device_jobs.entry(job).or_default().push(row);
        }
        Ok(store)
    }
}

pub(super) fn is_active(status: JobStatus) -> bool {
    matches!(
        status,
        JobStatus::Scheduled | JobStatus::Queued | JobStatus::Running | JobStatus::Enqueued
    )
}

impl JobStore {
    /// Keeps the store bounded before a new job goes in: too many unfinished jobs is the hub's
    /// 429 ThrottlingMaxActiveJobCountExceeded; past the retention bound the oldest finished
    /// job (and its per-device rows) is forgotten, as the hub forgets jobs after a while.
    pub(super) fn make_room(&mut self) -> Result<(), HubRefusal> {
        let active = self.jobs.values().filter(|j| is_active(j.status)).count();
        if active >= crate::limits::MAX_ACTIVE_JOBS {
            return Err(HubRefusal::new(
                ErrorCode::ThrottlingMaxActiveJobCountExceeded,
                format!(
                    "{active} jobs are unfinished, the most this hub runs at once; wait for one to finish or cancel one."
                ),
            ));
        }
        while self.jobs.len() >= crate::limits::MAX_KEPT_JOBS {
            let oldest = self
                .jobs
                .iter()
                .filter(|(_, j)| !is_active(j.status))
                .min_by(|a, b| a.1.created_time.cmp(&b.1.created_time))
                .map(|(id, _)| id.clone());
            let Some(oldest) = oldest else { break };
            self.jobs.remove(&oldest);
            let rows = self.device_jobs.remove(&oldest).map_or(0, |r| r.len());
            self.touch(&oldest);
            self.touch_rows(&oldest, 0..rows);
        }
        Ok(())
    }
}
