//! Cloud-to-device operations: queue a message for a device, hand it to the device's
//! connection, and forget it once the device has completed it (PUBACK).

use super::c2d_store::MAX_PENDING;
use super::feedback_store::Outcome;
use super::{C2dMessage, Hub, Outbound};
use crate::error::HubRefusal;
use crate::locks::lock;

impl Hub {
    /// Queues a cloud-to-device message (at most [`MAX_PENDING`] per device). Returns the
    /// sequence number to wait for before the message may be called accepted.
    pub(crate) fn enqueue_c2d(
        &self,
        device_id: &str,
        mut msg: C2dMessage,
    ) -> Result<u64, HubRefusal> {
        if !lock(&self.registry).devices.contains_key(device_id) {
            return Err(HubRefusal::device_not_found(device_id));
        }
        let seq = {
            let mut q = lock(&self.c2d.queues);
            let queue = q.entry(device_id.to_owned()).or_default();
            if queue.len() >= MAX_PENDING {
                return Err(HubRefusal::new(
                    iot_common::ErrorCode::DeviceMaximumQueueDepthExceeded,
                    "The device already has 50 pending cloud-to-device messages.",
                ));
            }
            msg.id = self.c2d.next_id();
            msg.enqueued_ms = self.clock.now_ms();
            let seq = self.persistence.enqueue([msg.row(device_id)]);
            queue.push_back(msg);
            seq
        };
        if let Some(s) = self.session(device_id, None) {
            let _ = s.outbox.push(Outbound::C2dAvailable);
        }
        Ok(seq)
    }

    /// The device acknowledged (completed) a message: it is gone for good, with a `Success`
    /// feedback record if one was asked for. Returns the sequence number to wait for before
    /// the PUBACK's effect is durable.
    pub(crate) fn c2d_completed(&self, device_id: &str, msg: &C2dMessage) -> u64 {
        let seq = self
            .persistence
            .enqueue([(C2dMessage::store_key(device_id, msg.id), None)]);
        seq.max(self.c2d_outcome(device_id, msg, Outcome::Success))
    }

    /// Forgets every pending message of a device (a clean session, or the device deleted),
    /// in memory and in `--state`. Returns the sequence number to wait for.
    pub(crate) fn drop_c2d(&self, device_id: &str) -> u64 {
        let dropped = {
            let mut q = lock(&self.c2d.queues);
            match q.remove(device_id) {
                Some(dropped) => dropped,
                None => return 0,
            }
        };
        let seq = self.persistence.enqueue(
            dropped
                .iter()
                .map(|m| (C2dMessage::store_key(device_id, m.id), None)),
        );
        dropped.iter().fold(seq, |seq, m| {
            seq.max(self.c2d_outcome(device_id, m, Outcome::Purged))
        })
    }

    /// The next message for the device; expired ones are removed on the way (`Expired`).
    pub(crate) fn pop_c2d(&self, device_id: &str) -> Option<C2dMessage> {
        loop {
            let msg = self.c2d.pop(device_id)?;
            if msg.expires_at_ms() > self.clock.now_ms() {
                return Some(msg);
            }
            self.persistence
                .enqueue([(C2dMessage::store_key(device_id, msg.id), None)]);
            self.c2d_outcome(device_id, &msg, Outcome::Expired);
        }
    }

    /// Puts unacknowledged messages back at the front, in order; a deleted device's are
    /// forgotten, in `--state` too.
    pub(crate) fn requeue_c2d(&self, device_id: &str, msgs: Vec<C2dMessage>) {
        if lock(&self.registry).devices.contains_key(device_id) {
            self.c2d.requeue(device_id, msgs);
        } else {
            self.persistence.enqueue(
                msgs.iter()
                    .map(|m| (C2dMessage::store_key(device_id, m.id), None)),
            );
        }
    }

    pub(crate) fn pending_c2d(&self, device_id: &str) -> usize {
        self.c2d.len(device_id)
    }
}
