//! The Event Hub-compatible endpoint's store: every telemetry message, appended to one of
//! [`PARTITIONS`] partition logs, each bounded in bytes (the oldest events are dropped and the
//! partition's begin sequence number advances). Readers follow a partition by sequence number
//! and wait for new events on its watch channel.
//!
//! With `--state` each append (and each drop) is queued to the store under the partition's
//! lock, so rows reach SQLite in the order they were made; see [`EventLog::restore`].

use super::persistence::{Kind, Write};
use crate::locks::lock;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Partitions of the built-in endpoint (the hub's default; fixed for the emulator).
pub(crate) const PARTITIONS: u32 = 4;

/// The partition a device's events go to: FNV-1a (32 bit) of the device id's UTF-8 bytes,
/// modulo [`PARTITIONS`]. Chosen because it is specified in a few lines and never changes
/// between runs, platforms or Rust versions (unlike `std`'s `DefaultHasher`), so a device's
/// events stay in one partition across restarts with `--state`.
pub(crate) fn partition_of(device_id: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in device_id.as_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % PARTITIONS
}

/// One event as the hub enqueued it. The AMQP message is built from it per delivery.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct HubEvent {
    /// Per partition, from 0, one per event, never reused.
    pub(crate) sequence_number: i64,
    /// Bytes of events before this one in the partition (Event Hubs' offset).
    pub(crate) offset: u64,
    /// Milliseconds since the Unix epoch.
    pub(crate) enqueued_ms: i64,
    pub(crate) device_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) module_id: Option<String>,
    /// `iothub-connection-auth-method`: the JSON the hub writes.
    pub(crate) auth_method: String,
    /// `iothub-connection-auth-generation-id`.
    pub(crate) generation_id: String,
    /// The MQTT property bag (system `$.` keys and application properties), as received.
    pub(crate) properties: String,
    #[serde(skip)]
    pub(crate) body: Bytes,
}

impl HubEvent {
    /// What the event costs the partition's byte bound, and its offset step.
    pub(crate) fn cost(&self) -> u64 {
        const OVERHEAD: usize = 128;
        (self.body.len()
            + self.properties.len()
            + self.device_id.len()
            + self.module_id.as_ref().map_or(0, String::len)
            + self.auth_method.len()
            + self.generation_id.len()
            + OVERHEAD) as u64
    }

    /// The row's bytes: a 4-byte little-endian header length, the JSON header, the body.
    fn to_row(&self) -> Vec<u8> {
        let header = serde_json::to_vec(self).unwrap_or_default();
        let mut row = Vec::with_capacity(4 + header.len() + self.body.len());
        row.extend_from_slice(&(header.len() as u32).to_le_bytes());
        row.extend_from_slice(&header);
        row.extend_from_slice(&self.body);
        row
    }

    fn from_row(row: &[u8]) -> Option<Self> {
        let len = u32::from_le_bytes(row.get(..4)?.try_into().ok()?) as usize;
        let header = row.get(4..4 + len)?;
        let mut event: Self = serde_json::from_slice(header).ok()?;
        event.body = Bytes::copy_from_slice(row.get(4 + len..)?);
        Some(event)
    }
}

/// Where a reader starts, as an Event Hubs selector filter says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// The first event kept (`x-opt-offset > '-1'`, and no filter at all).
    Beginning,
    /// Only events enqueued from now on (`'@latest'`).
    Latest,
    /// The first event with an offset above (`inclusive`: at least) this.
    Offset { offset: u64, inclusive: bool },
    /// The first event with a sequence number above (at least) this.
    Sequence { seq: i64, inclusive: bool },
    /// The first event enqueued after (at or after) this, in ms since the epoch.
    Enqueued { ms: i64, inclusive: bool },
}

/// A partition's runtime information (`$management` READ `com.microsoft:partition`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartitionInfo {
    pub(crate) begin_sequence_number: i64,
    pub(crate) last_sequence_number: i64,
    pub(crate) last_offset: i64,
    pub(crate) last_enqueued_ms: i64,
    pub(crate) is_empty: bool,
}

#[derive(Debug, Default)]
struct Partition {
    events: VecDeque<Arc<HubEvent>>,
    bytes: u64,
    next_seq: i64,
    next_offset: u64,
}

impl Partition {
    /// The sequence number of the first event at or after `start` (`next_seq` if none yet).
    fn resolve(&self, start: Start) -> i64 {
        let first = |pred: &dyn Fn(&HubEvent) -> bool| {
            let i = self.events.partition_point(|e| !pred(e));
            self.events
                .get(i)
                .map_or(self.next_seq, |e| e.sequence_number)
        };
        match start {
            Start::Beginning => self
                .events
                .front()
                .map_or(self.next_seq, |e| e.sequence_number),
            Start::Latest => self.next_seq,
            Start::Offset { offset, inclusive } => {
                first(&|e| e.offset > offset || (inclusive && e.offset == offset))
            }
            Start::Sequence { seq, inclusive } => (if inclusive { seq } else { seq + 1 }).max(0),
            Start::Enqueued { ms, inclusive } => {
                first(&|e| e.enqueued_ms > ms || (inclusive && e.enqueued_ms == ms))
            }
        }
    }
}

/// The store: the partitions, each behind its own lock, and a watch per partition that
/// carries the next sequence number so readers wake for new events.
#[derive(Debug)]
pub(crate) struct EventLog {
    partitions: Vec<Mutex<Partition>>,
    appended: Vec<watch::Sender<i64>>,
    max_bytes: u64,
    /// When the log was first created (`created_at` of `$management`), ms since the epoch.
    created_ms: i64,
}

impl EventLog {
    /// An empty log keeping at most `max_bytes` of events per partition.
    pub(crate) fn new(max_bytes: u64, created_ms: i64) -> Self {
        Self {
            partitions: (0..PARTITIONS)
                .map(|_| Mutex::new(Partition::default()))
                .collect(),
            appended: (0..PARTITIONS).map(|_| watch::Sender::new(0)).collect(),
            max_bytes: max_bytes.max(1),
            created_ms,
        }
    }

    /// The log as `--state` kept it: its rows (`partition/sequence` → event).
    /// Unreadable rows are an error naming the row.
    pub(crate) fn restore(mut self, rows: Vec<(String, Vec<u8>)>) -> Result<Self, String> {
        let mut events = Vec::with_capacity(rows.len());
        for (key, row) in rows {
            let partition = key
                .split_once('/')
                .and_then(|(p, _)| p.parse::<u32>().ok())
                .filter(|p| *p < PARTITIONS);
            match (partition, HubEvent::from_row(&row)) {
                (Some(p), Some(e)) => events.push((p, e)),
                _ => return Err(format!("event {key}")),
            }
        }
        events.sort_by_key(|(p, e)| (*p, e.sequence_number));
        for (p, e) in events {
            let part = self.partitions[p as usize]
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let cost = e.cost();
            part.next_seq = e.sequence_number + 1;
            part.next_offset = e.offset + cost;
            part.bytes += cost;
            part.events.push_back(Arc::new(e));
        }
        for (p, tx) in self.appended.iter_mut().enumerate() {
            let next = lock(&self.partitions[p]).next_seq;
            tx.send_replace(next);
        }
        Ok(self)
    }

    pub(crate) fn created_ms(&self) -> i64 {
        self.created_ms
    }

    /// Appends `event` to `partition`, numbering it, and drops the oldest events until the
    /// byte bound holds again (the newest event is always kept). `persist` receives the rows
    /// to queue, under the partition's lock. Returns what `persist` returned.
    pub(crate) fn append(
        &self,
        partition: u32,
        mut event: HubEvent,
        persist: impl FnOnce(Vec<Write>) -> u64,
    ) -> u64 {
        let p = (partition % PARTITIONS) as usize;
        let mut part = lock(&self.partitions[p]);
        event.sequence_number = part.next_seq;
        event.offset = part.next_offset;
        // Enqueued times never go backwards within a partition (a time filter bisects them),
        // even if the wall clock does.
        if let Some(last) = part.events.back() {
            event.enqueued_ms = event.enqueued_ms.max(last.enqueued_ms);
        }
        let cost = event.cost();
        let mut writes = vec![(
            (Kind::Event, row_key(p, event.sequence_number)),
            Some(event.to_row()),
        )];
        while !part.events.is_empty() && part.bytes + cost > self.max_bytes {
            if let Some(old) = part.events.pop_front() {
                part.bytes -= old.cost();
                writes.push(((Kind::Event, row_key(p, old.sequence_number)), None));
            }
        }
        part.next_seq += 1;
        part.next_offset += cost;
        part.bytes += cost;
        part.events.push_back(Arc::new(event));
        let seq = persist(writes);
        self.appended[p].send_replace(part.next_seq);
        seq
    }

    /// The sequence number a reader starting at `start` reads first.
    pub(crate) fn resolve(&self, partition: u32, start: Start) -> i64 {
        lock(&self.partitions[(partition % PARTITIONS) as usize]).resolve(start)
    }

    /// Up to `max` events from sequence number `from` on (from the first kept one when
    /// `from` was dropped already).
    pub(crate) fn read(&self, partition: u32, from: i64, max: usize) -> Vec<Arc<HubEvent>> {
        let part = lock(&self.partitions[(partition % PARTITIONS) as usize]);
        let first = part
            .events
            .front()
            .map_or(part.next_seq, |e| e.sequence_number);
        let skip = usize::try_from(from.saturating_sub(first)).unwrap_or(0);
        part.events.iter().skip(skip).take(max).cloned().collect()
    }

    /// A receiver of the partition's next sequence number: it changes on every append.
    pub(crate) fn subscribe(&self, partition: u32) -> watch::Receiver<i64> {
        self.appended[(partition % PARTITIONS) as usize].subscribe()
    }

    pub(crate) fn info(&self, partition: u32) -> PartitionInfo {
        let part = lock(&self.partitions[(partition % PARTITIONS) as usize]);
        match part.events.back() {
            Some(last) => PartitionInfo {
                begin_sequence_number: part.events.front().map_or(0, |e| e.sequence_number),
                last_sequence_number: last.sequence_number,
                last_offset: last.offset as i64,
                last_enqueued_ms: last.enqueued_ms,
                is_empty: false,
            },
            // Event Hubs' answer for a partition that holds nothing: -1 for "none yet".
            None => PartitionInfo {
                begin_sequence_number: part.next_seq,
                last_sequence_number: part.next_seq - 1,
                last_offset: -1,
                last_enqueued_ms: 0,
                is_empty: true,
            },
        }
    }
}

fn row_key(partition: usize, seq: i64) -> String {
    format!("{partition}/{seq}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(device: &str, body: &[u8], ms: i64) -> HubEvent {
        HubEvent {
            sequence_number: 0,
            offset: 0,
            enqueued_ms: ms,
            device_id: device.into(),
            module_id: None,
            auth_method: "{}".into(),
            generation_id: "1".into(),
            properties: "a=b".into(),
            body: Bytes::copy_from_slice(body),
        }
    }

    #[test]
    fn the_partition_hash_is_fnv1a_and_never_changes() {
        // Pinned values: changing the hash would move devices between partitions across
        // versions, and readers' checkpoints would no longer match.
        let got: Vec<u32> = ["myDevice", "d1", "d2", "", "thermostat-42"]
            .iter()
            .map(|d| partition_of(d))
            .collect();
        assert_eq!(got, [1, 2, 3, 1, 1]);
    }

    #[test]
    fn retention_drops_the_oldest_and_begin_advances() {
        let log = EventLog::new(1000, 0);
        let mut dropped = Vec::new();
        for i in 0..20 {
            log.append(0, event("d", &[0; 200], i), |w| {
                dropped.extend(w.into_iter().filter(|(_, v)| v.is_none()));
                0
            });
        }
        let info = log.info(0);
        assert_eq!(info.last_sequence_number, 19);
        assert!(info.begin_sequence_number > 0);
        assert_eq!(dropped.len() as i64, info.begin_sequence_number);
        // A reader that asks for a dropped event starts at the first one kept.
        let read = log.read(0, 0, 100);
        assert_eq!(read[0].sequence_number, info.begin_sequence_number);
        assert_eq!(read.last().map(|e| e.sequence_number), Some(19));
    }

    #[test]
    fn starts_resolve_by_offset_sequence_and_time() {
        let log = EventLog::new(u64::MAX, 0);
        for i in 0..5 {
            log.append(2, event("d", b"x", 100 + i * 10), |_| 0);
        }
        let off = log.read(2, 2, 1)[0].offset;
        let r = |s| log.resolve(2, s);
        assert_eq!(r(Start::Beginning), 0);
        assert_eq!(r(Start::Latest), 5);
        assert_eq!(
            r(Start::Offset {
                offset: off,
                inclusive: false
            }),
            3
        );
        assert_eq!(
            r(Start::Offset {
                offset: off,
                inclusive: true
            }),
            2
        );
        assert_eq!(
            r(Start::Sequence {
                seq: 1,
                inclusive: false
            }),
            2
        );
        assert_eq!(
            r(Start::Sequence {
                seq: 1,
                inclusive: true
            }),
            1
        );
        assert_eq!(
            r(Start::Enqueued {
                ms: 120,
                inclusive: false
            }),
            3
        );
        assert_eq!(
            r(Start::Enqueued {
                ms: 120,
                inclusive: true
            }),
            2
        );
        assert_eq!(
            r(Start::Enqueued {
                ms: 999,
                inclusive: false
            }),
            5
        );
    }

    #[test]
    fn rows_round_trip_with_binary_bodies() {
        let mut rows = Vec::new();
        let log = EventLog::new(u64::MAX, 0);
        log.append(3, event("d", &[0xff, 0, 1], 5), |w| {
            rows.extend(w.into_iter().map(|((_, k), v)| (k, v.unwrap_or_default())));
            0
        });
        let restored = EventLog::new(u64::MAX, 0)
            .restore(rows)
            .unwrap_or_else(|e| panic!("{e}"));
        let e = &restored.read(3, 0, 1)[0];
        assert_eq!(&e.body[..], &[0xff, 0, 1]);
        assert_eq!(restored.info(3).last_sequence_number, 0);
        assert_eq!(restored.resolve(3, Start::Latest), 1);
    }
}
