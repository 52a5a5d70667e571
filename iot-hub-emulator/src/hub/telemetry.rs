//! The buffer of device-to-cloud messages the emulator keeps for inspection, bounded in
//! messages and in bytes (oldest dropped first), with sequence numbers so that readers can
//! page through it while it moves.

use crate::locks::lock;
use bytes::Bytes;
use iot_common::MessageProperties;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// A device-to-cloud message kept by the emulator.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct TelemetryRecord {
    /// Position in the buffer's history: increases by one per message received, never reused.
    pub sequence_number: u64,
    /// Sender device.
    pub device_id: String,
    /// Sender module.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module_id: Option<String>,
    /// System and application properties.
    #[serde(serialize_with = "serialize_props")]
    pub properties: MessageProperties,
    /// The body, byte for byte. In JSON it is `body` (text) when it is UTF-8, else
    /// `bodyBase64`.
    #[serde(flatten, serialize_with = "serialize_body")]
    pub body: Bytes,
    /// When the hub received it.
    pub enqueued_time: String,
}

impl TelemetryRecord {
    /// A record as received; the buffer assigns its sequence number.
    pub(crate) fn new(
        device_id: String,
        module_id: Option<String>,
        properties: MessageProperties,
        body: Bytes,
        enqueued_time: String,
    ) -> Self {
        Self {
            sequence_number: 0,
            device_id,
            module_id,
            properties,
            body,
            enqueued_time,
        }
    }

    /// The body as text, when it is UTF-8.
    pub fn body_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }

    /// What the record costs the buffer: the body, the properties and a fixed overhead.
    fn cost(&self) -> usize {
        let p = &self.properties;
        let system = [
            &p.message_id,
            &p.correlation_id,
            &p.user_id,
            &p.content_type,
            &p.content_encoding,
            &p.expiry_time,
        ]
        .iter()
        .map(|v| v.as_ref().map_or(0, String::len))
        .sum::<usize>();
        let custom = p
            .custom
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>();
        const OVERHEAD: usize = 256;
        self.body.len()
            + system
            + custom
            + self.device_id.len()
            + self.module_id.as_ref().map_or(0, String::len)
            + self.enqueued_time.len()
            + OVERHEAD
    }
}

fn serialize_body<S: serde::Serializer>(body: &Bytes, s: S) -> Result<S::Ok, S::Error> {
    use base64::Engine as _;
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(1))?;
    match std::str::from_utf8(body) {
        Ok(text) => m.serialize_entry("body", text)?,
        Err(_) => m.serialize_entry(
            "bodyBase64",
            &base64::engine::general_purpose::STANDARD.encode(body),
        )?,
    }
    m.end()
}

fn serialize_props<S: serde::Serializer>(p: &MessageProperties, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(None)?;
    let sys = [
        ("messageId", &p.message_id),
        ("correlationId", &p.correlation_id),
        ("userId", &p.user_id),
        ("contentType", &p.content_type),
        ("contentEncoding", &p.content_encoding),
        ("expiryTime", &p.expiry_time),
    ];
    for (k, v) in sys {
        if let Some(v) = v {
            m.serialize_entry(k, v)?;
        }
    }
    let custom: HashMap<&str, &str> = p
        .custom
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    m.serialize_entry("application", &custom)?;
    m.end()
}

/// The telemetry store: the bounded buffer behind its own lock.
#[derive(Debug)]
pub(crate) struct Telemetry(Mutex<TelemetryBuffer>);

impl Telemetry {
    pub(crate) fn new(max_messages: usize, max_bytes: usize) -> Self {
        Self(Mutex::new(TelemetryBuffer::new(max_messages, max_bytes)))
    }

    pub(crate) fn push(&self, record: TelemetryRecord) {
        lock(&self.0).push(record);
    }

    pub(crate) fn clear(&self) {
        lock(&self.0).clear();
    }

    pub(crate) fn all(&self, device_id: Option<&str>) -> Vec<TelemetryRecord> {
        lock(&self.0).all(device_id)
    }

    /// See [`TelemetryBuffer::page`].
    pub(crate) fn page(
        &self,
        device_id: Option<&str>,
        from: u64,
        top: usize,
        max_bytes: usize,
    ) -> (Vec<TelemetryRecord>, Option<u64>) {
        lock(&self.0).page(device_id, from, top, max_bytes)
    }
}

/// The bounded buffer: at most `max_messages` records and `max_bytes` of record cost.
#[derive(Debug)]
pub(crate) struct TelemetryBuffer {
    records: VecDeque<(TelemetryRecord, usize)>,
    bytes: usize,
    next_seq: u64,
    max_messages: usize,
    max_bytes: usize,
}

impl TelemetryBuffer {
    pub(crate) fn new(max_messages: usize, max_bytes: usize) -> Self {
        Self {
            records: VecDeque::new(),
            bytes: 0,
            next_seq: 0,
            max_messages: max_messages.max(1),
            max_bytes: max_bytes.max(1),
        }
    }

    /// Appends a record, dropping the oldest until both bounds hold again. A record larger
    /// than the whole byte bound is still kept alone, so the newest message is always visible.
    pub(crate) fn push(&mut self, mut record: TelemetryRecord) {
        record.sequence_number = self.next_seq;
        self.next_seq += 1;
        let cost = record.cost();
        while !self.records.is_empty()
            && (self.records.len() >= self.max_messages || self.bytes + cost > self.max_bytes)
        {
            if let Some((_, c)) = self.records.pop_front() {
                self.bytes -= c;
            }
        }
        self.bytes += cost;
        self.records.push_back((record, cost));
    }

    pub(crate) fn clear(&mut self) {
        self.records.clear();
        self.bytes = 0;
    }

    /// Bytes currently accounted to the buffer.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn all(&self, device_id: Option<&str>) -> Vec<TelemetryRecord> {
        self.matching(device_id, 0).cloned().collect()
    }

    /// Up to `top` records with a sequence number of at least `from` and about `max_bytes` of
    /// bodies (at least one record), and where the next page starts when more are left.
    pub(crate) fn page(
        &self,
        device_id: Option<&str>,
        from: u64,
        top: usize,
        max_bytes: usize,
    ) -> (Vec<TelemetryRecord>, Option<u64>) {
        let mut page = Vec::new();
        let mut bytes = 0;
        for r in self.matching(device_id, from) {
            let cost = r.cost();
            if page.len() >= top || (!page.is_empty() && bytes + cost > max_bytes) {
                return (page, Some(r.sequence_number));
            }
            bytes += cost;
            page.push(r.clone());
        }
        (page, None)
    }

    fn matching<'a>(
        &'a self,
        device_id: Option<&'a str>,
        from: u64,
    ) -> impl Iterator<Item = &'a TelemetryRecord> + 'a {
        // Sequence numbers are contiguous in the deque, so the start is an index.
        let first = self.records.front().map_or(0, |(r, _)| r.sequence_number);
        let skip = usize::try_from(from.saturating_sub(first)).unwrap_or(usize::MAX);
        self.records
            .iter()
            .skip(skip)
            .map(|(r, _)| r)
            .filter(move |r| device_id.is_none_or(|d| r.device_id == d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(device: &str, body: &[u8]) -> TelemetryRecord {
        TelemetryRecord::new(
            device.into(),
            None,
            MessageProperties::new(),
            Bytes::copy_from_slice(body),
            "t".into(),
        )
    }

    #[test]
    fn the_buffer_is_bounded_in_bytes_not_only_in_messages() {
        let mut b = TelemetryBuffer::new(10_000, 1024 * 1024);
        for _ in 0..100 {
            b.push(record("d", &[0xFF; 250 * 1024]));
        }
        assert!(b.bytes() <= 1024 * 1024, "{} bytes kept", b.bytes());
        assert_eq!(
            b.all(None).len(),
            4,
            "four 250 KB bodies fit in 1 MiB, five do not"
        );
        // Bodies are kept as bytes: 0xFF is one byte, not a three-byte replacement character.
        assert_eq!(b.all(None)[0].body.len(), 250 * 1024);
    }

    #[test]
    fn pages_follow_sequence_numbers_while_old_records_drop() {
        let mut b = TelemetryBuffer::new(5, usize::MAX);
        for i in 0..8u8 {
            b.push(record(if i % 2 == 0 { "a" } else { "b" }, &[i]));
        }
        // Records 3..=7 remain.
        let (page, next) = b.page(None, 0, 2, usize::MAX);
        assert_eq!(
            page.iter().map(|r| r.sequence_number).collect::<Vec<_>>(),
            [3, 4]
        );
        assert_eq!(next, Some(5));
        let (page, next) = b.page(None, 5, 10, usize::MAX);
        assert_eq!(page.len(), 3);
        assert_eq!(next, None);
        let (page, _) = b.page(Some("a"), 0, 10, usize::MAX);
        // A byte bound smaller than one record still returns one record per page.
        let (page1, next) = b.page(None, 0, 10, 1);
        assert_eq!((page1.len(), next), (1, Some(4)));
        assert!(page.iter().all(|r| r.device_id == "a"));
        assert_eq!(page.len(), 2);
    }

    #[test]
    fn binary_bodies_serialize_as_base64_and_text_as_text() {
        let text = serde_json::to_value(record("d", b"hello")).unwrap_or_default();
        assert_eq!(text["body"], "hello");
        let binary = serde_json::to_value(record("d", &[0xFF, 0x00])).unwrap_or_default();
        assert_eq!(binary["bodyBase64"], "/wA=");
        assert!(binary.get("body").is_none());
    }
}
