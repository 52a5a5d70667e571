//! The feedback store: records of cloud-to-device outcomes (`iothub-ack`) waiting for the
//! service to take them from `/messages/serviceBound/feedback`, behind one lock.
//!
//! A record is waiting, or in flight in a batch that a receiver has not settled yet. Accepted
//! batches are forgotten; any other outcome (or a lost link) puts the records back in front.

use super::persistence::{Kind, Write};
use crate::limits::{MAX_FEEDBACK_BATCH, MAX_FEEDBACK_RECORDS};
use crate::locks::lock;
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::watch;

/// One record, in the hub's JSON form (`application/vnd.microsoft.iothub.feedback.json`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FeedbackRecord {
    pub(crate) original_message_id: String,
    pub(crate) description: String,
    pub(crate) device_generation_id: String,
    pub(crate) device_id: String,
    /// When the outcome happened.
    pub(crate) enqueued_time_utc: String,
    /// `Success`, `Expired`, `DeliveryCountExceeded`, `Rejected` or `Purged`.
    pub(crate) status_code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) lock_token: Option<String>,
}

/// What happened to a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    Expired,
    Purged,
}

impl Outcome {
    pub(crate) fn status_code(self) -> &'static str {
        match self {
            Self::Success => "Success",
            Self::Expired => "Expired",
            Self::Purged => "Purged",
        }
    }

    /// The hub's `description` for the outcome.
    pub(crate) fn description(self) -> &'static str {
        match self {
            Self::Success => "Success",
            Self::Expired => "Message expired",
            Self::Purged => "Message purged",
        }
    }
}

fn store_key(id: u64) -> (Kind, String) {
    // Zero-padded: rows load in the order they were made.
    (Kind::Feedback, format!("{id:020}"))
}

#[derive(Debug, Default)]
struct Inner {
    waiting: VecDeque<(u64, FeedbackRecord)>,
    in_flight: usize,
    next: u64,
    dropped: u64,
}

/// Every waiting feedback record, at most [`MAX_FEEDBACK_RECORDS`].
#[derive(Debug)]
pub(crate) struct FeedbackQueue {
    inner: Mutex<Inner>,
    /// Bumped whenever records become waiting, so an idle feedback link wakes.
    available: watch::Sender<u64>,
}

/// Records handed to one receiver, until it settles them.
pub(crate) type Batch = Vec<(u64, FeedbackRecord)>;

impl FeedbackQueue {
    pub(crate) fn new(restored: Vec<(u64, FeedbackRecord)>) -> Self {
        let next = restored.iter().map(|(id, _)| *id).max().unwrap_or(0) + 1;
        Self {
            inner: Mutex::new(Inner {
                waiting: restored.into(),
                next,
                ..Inner::default()
            }),
            available: watch::Sender::new(0),
        }
    }

    /// Rows of `--state` back to records, in the order they were made.
    pub(crate) fn from_rows(
        rows: Vec<(String, Vec<u8>)>,
    ) -> Result<Vec<(u64, FeedbackRecord)>, String> {
        let mut out = rows
            .into_iter()
            .map(|(key, value)| {
                let id = key.parse().ok();
                let record = serde_json::from_slice(&value).ok();
                id.zip(record)
                    .ok_or_else(|| format!("feedback record {key}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by_key(|(id, _)| *id);
        Ok(out)
    }

    /// Adds a record. When [`MAX_FEEDBACK_RECORDS`] are held, the oldest waiting one is
    /// dropped for it (or, if all are in flight, this one). `persist` is given the rows to
    /// write, under the lock, so that rows are queued in the order they were made.
    pub(crate) fn push(&self, record: FeedbackRecord, persist: impl FnOnce(Vec<Write>)) {
        let mut inner = lock(&self.inner);
        let mut writes = Vec::with_capacity(2);
        if inner.waiting.len() + inner.in_flight >= MAX_FEEDBACK_RECORDS {
            inner.dropped += 1;
            tracing::warn!(
                dropped = inner.dropped,
                "feedback store full ({MAX_FEEDBACK_RECORDS} records): dropping the oldest"
            );
            match inner.waiting.pop_front() {
                Some((old, _)) => writes.push((store_key(old), None)),
                None => return,
            }
        }
        let id = inner.next;
        inner.next += 1;
        writes.push((store_key(id), serde_json::to_vec(&record).ok()));
        inner.waiting.push_back((id, record));
        persist(writes);
        drop(inner);
        self.available.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Takes up to [`MAX_FEEDBACK_BATCH`] waiting records, or `None` if there are none.
    pub(crate) fn take_batch(&self) -> Option<Batch> {
        let mut inner = lock(&self.inner);
        let n = inner.waiting.len().min(MAX_FEEDBACK_BATCH);
        if n == 0 {
            return None;
        }
        let batch: Batch = inner.waiting.drain(..n).collect();
        inner.in_flight += n;
        Some(batch)
    }

    /// A receiver accepted the batch: its records are gone (the rows to delete go to `persist`).
    pub(crate) fn accepted(&self, batch: &Batch, persist: impl FnOnce(Vec<Write>)) {
        let mut inner = lock(&self.inner);
        inner.in_flight = inner.in_flight.saturating_sub(batch.len());
        persist(batch.iter().map(|(id, _)| (store_key(*id), None)).collect());
    }

    /// The batch was not accepted: its records wait again, in front, in order.
    pub(crate) fn returned(&self, batch: Batch) {
        {
            let mut inner = lock(&self.inner);
            inner.in_flight = inner.in_flight.saturating_sub(batch.len());
            for r in batch.into_iter().rev() {
                inner.waiting.push_front(r);
            }
        }
        self.available.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Waiting records (not in flight).
    pub(crate) fn waiting(&self) -> usize {
        lock(&self.inner).waiting.len()
    }

    /// A receiver that changes whenever records may have become waiting.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.available.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: usize) -> FeedbackRecord {
        FeedbackRecord {
            original_message_id: n.to_string(),
            description: "Success".into(),
            device_generation_id: "1".into(),
            device_id: "d".into(),
            enqueued_time_utc: "2026-01-01T00:00:00.0000000Z".into(),
            status_code: "Success".into(),
            lock_token: None,
        }
    }

    #[test]
    fn full_store_drops_the_oldest_waiting_record() {
        let q = FeedbackQueue::new(Vec::new());
        for n in 0..=MAX_FEEDBACK_RECORDS {
            q.push(record(n), |_| {});
        }
        assert_eq!(q.waiting(), MAX_FEEDBACK_RECORDS);
        let first = q.take_batch().unwrap();
        assert_eq!(first[0].1.original_message_id, "1");
        assert_eq!(first.len(), MAX_FEEDBACK_BATCH);
    }

    #[test]
    fn a_returned_batch_comes_back_first_and_an_accepted_one_is_deleted() {
        let q = FeedbackQueue::new(Vec::new());
        for n in 0..3 {
            q.push(record(n), |_| {});
        }
        let b = q.take_batch().unwrap();
        assert!(q.take_batch().is_none());
        q.returned(b);
        let b = q.take_batch().unwrap();
        assert_eq!(b[0].1.original_message_id, "0");
        let mut deleted = Vec::new();
        q.accepted(&b, |w| deleted = w);
        assert_eq!(deleted.len(), 3);
        assert!(deleted.iter().all(|(_, v)| v.is_none()));
        assert_eq!(q.waiting(), 0);
    }
}
