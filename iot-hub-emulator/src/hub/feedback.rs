//! Cloud-to-device feedback: the outcome of a message whose sender asked for it
//! (`iothub-ack`) becomes a record that the service reads from
//! `/messages/serviceBound/feedback`; and message expiry, which is one such outcome.

use super::c2d_store::Ack;
use super::feedback_store::{Batch, FeedbackRecord, Outcome};
use super::{C2dMessage, Hub};
use crate::locks::lock;

impl Hub {
    /// Records the outcome of a message if its `iothub-ack` asks for it. Returns the sequence
    /// number of the record's write, to wait for (0: nothing written).
    pub(crate) fn c2d_outcome(&self, device_id: &str, msg: &C2dMessage, outcome: Outcome) -> u64 {
        let wanted = match msg.ack() {
            Ack::None => false,
            Ack::Positive => outcome == Outcome::Success,
            Ack::Negative => outcome != Outcome::Success,
            Ack::Full => true,
        };
        if !wanted {
            return 0;
        }
        let device_generation_id = lock(&self.registry)
            .devices
            .get(device_id)
            .and_then(|d| d.device.generation_id.clone())
            .unwrap_or_default();
        let record = FeedbackRecord {
            original_message_id: msg.properties.message_id.clone().unwrap_or_default(),
            description: outcome.description().to_owned(),
            device_generation_id,
            device_id: device_id.to_owned(),
            enqueued_time_utc: crate::clock::format_time(self.clock.now()),
            status_code: outcome.status_code().to_owned(),
            lock_token: None,
        };
        let mut seq = 0;
        self.feedback.push(record, |writes| {
            if self.persistence.is_durable() {
                seq = self.persistence.enqueue(writes);
            }
        });
        seq
    }

    /// Removes every queued message whose lifetime has passed by the hub's clock, each with
    /// an `Expired` outcome. Returns how many.
    pub(crate) fn expire_c2d(&self) -> usize {
        let expired = self.c2d.take_expired(self.clock.now_ms());
        if expired.is_empty() {
            return 0;
        }
        self.persistence.enqueue(
            expired
                .iter()
                .map(|(d, m)| (C2dMessage::store_key(d, m.id), None)),
        );
        for (device_id, msg) in &expired {
            self.c2d_outcome(device_id, msg, Outcome::Expired);
        }
        expired.len()
    }

    /// The next batch of feedback records, if any are waiting.
    pub(crate) fn take_feedback(&self) -> Option<Batch> {
        self.feedback.take_batch()
    }

    /// The service accepted a batch: its records are forgotten, in `--state` too. Returns
    /// the sequence number to wait for.
    pub(crate) fn feedback_accepted(&self, batch: &Batch) -> u64 {
        let mut seq = 0;
        self.feedback.accepted(batch, |writes| {
            if self.persistence.is_durable() {
                seq = self.persistence.enqueue(writes);
            }
        });
        seq
    }

    /// The batch was not accepted (released, modified, or the link went away): redelivered.
    pub(crate) fn feedback_returned(&self, batch: Batch) {
        self.feedback.returned(batch);
    }
}
