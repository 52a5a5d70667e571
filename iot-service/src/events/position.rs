//! Where a reader starts, and the checkpoint it leaves: per partition, the sequence number
//! of the last event handed to the caller.

use super::Event;
use iot_common::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where partitions without a checkpoint start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum StartPosition {
    /// The oldest event the hub keeps.
    #[default]
    Beginning,
    /// Only events enqueued after the reader started. [`EventReader::read`] turns it into each
    /// partition's last sequence number at that moment, so a saved position resumes exactly.
    ///
    /// [`EventReader::read`]: super::EventReader::read
    End,
    /// Events enqueued after this time (millisecond precision, as the hub keeps it).
    EnqueuedAfter(Timestamp),
}

/// A reader's position in every partition: a checkpoint (the last sequence number read) for
/// each partition that has one, and [`StartPosition`] for the others. Persist it (it is
/// `serde`) and give it back to [`EventReader::read`] to go on without losing or repeating an
/// event.
///
/// ```
/// use iot_service::events::{Position, StartPosition};
/// let p = Position::new(StartPosition::End);
/// let json = serde_json::to_string(&p)?;
/// assert_eq!(serde_json::from_str::<Position>(&json)?, p);
/// # Ok::<(), serde_json::Error>(())
/// ```
///
/// [`EventReader::read`]: super::EventReader::read
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Position {
    #[serde(default)]
    start: StartPosition,
    /// Partition id → sequence number of the last event read.
    #[serde(default)]
    partitions: BTreeMap<String, i64>,
}

impl Position {
    /// No checkpoints; every partition starts at `start`.
    pub fn new(start: StartPosition) -> Self {
        Self {
            start,
            partitions: BTreeMap::new(),
        }
    }

    /// From the oldest event kept.
    pub fn beginning() -> Self {
        Self::new(StartPosition::Beginning)
    }

    /// Only new events.
    pub fn end() -> Self {
        Self::new(StartPosition::End)
    }

    /// Events enqueued after `time`.
    pub fn enqueued_after(time: impl Into<Timestamp>) -> Self {
        Self::new(StartPosition::EnqueuedAfter(time.into()))
    }

    /// Sets a partition's checkpoint: the sequence number of the last event read there.
    pub fn with_checkpoint(mut self, partition: impl Into<String>, sequence_number: i64) -> Self {
        self.partitions.insert(partition.into(), sequence_number);
        self
    }

    /// Where partitions without a checkpoint start.
    pub fn start(&self) -> StartPosition {
        self.start
    }

    /// The checkpoint of `partition`: the sequence number of the last event read there.
    pub fn checkpoint(&self, partition: &str) -> Option<i64> {
        self.partitions.get(partition).copied()
    }

    /// Records that `event` was read.
    pub fn record(&mut self, event: &Event) {
        self.partitions
            .insert(event.partition.clone(), event.sequence_number);
    }

    /// The selector filter a receiver of `partition` attaches with.
    pub(super) fn selector(&self, partition: &str) -> String {
        if let Some(n) = self.checkpoint(partition) {
            return format!("amqp.annotation.x-opt-sequence-number > '{n}'");
        }
        match self.start {
            StartPosition::Beginning => "amqp.annotation.x-opt-offset > '-1'".to_owned(),
            StartPosition::End => "amqp.annotation.x-opt-offset > '@latest'".to_owned(),
            StartPosition::EnqueuedAfter(t) => {
                let ms = std::time::SystemTime::from(t)
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis());
                format!("amqp.annotation.x-opt-enqueued-time > '{ms}'")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_follow_checkpoints_then_the_start() {
        let p = Position::beginning().with_checkpoint("2", 41);
        assert_eq!(
            p.selector("2"),
            "amqp.annotation.x-opt-sequence-number > '41'"
        );
        assert_eq!(p.selector("0"), "amqp.annotation.x-opt-offset > '-1'");
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_767_225_600_000);
        assert_eq!(
            Position::enqueued_after(t).selector("0"),
            "amqp.annotation.x-opt-enqueued-time > '1767225600000'"
        );
        assert_eq!(
            Position::end().selector("1"),
            "amqp.annotation.x-opt-offset > '@latest'"
        );
    }
}
