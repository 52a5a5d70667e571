//! The cloud-to-device store: each device's queue of pending messages, behind one lock, and
//! the numbers that name their rows in `--state`.

use super::persistence::{Kind, Write};
use crate::locks::lock;
use bytes::Bytes;
use iot_common::MessageProperties;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// How many messages may wait for one device; one more is the hub's 403004.
pub(crate) const MAX_PENDING: usize = 50;

/// How long a message without its own expiry waits for its device: the hub's default
/// `cloudToDevice.defaultTtlAsIso8601`, one hour.
pub(crate) const DEFAULT_TTL_MS: i64 = 3600 * 1000;

/// The `iothub-ack` request of a message: which outcomes produce a feedback record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ack {
    None,
    /// Only `Success`.
    Positive,
    /// Only failures (`Expired`, `DeliveryCountExceeded`, `Rejected`, `Purged`).
    Negative,
    /// Both.
    Full,
}

/// A queued cloud-to-device message.
#[derive(Debug, Clone)]
pub(crate) struct C2dMessage {
    pub(crate) properties: MessageProperties,
    pub(crate) body: Bytes,
    /// The hub's number for it (its row in `--state`); assigned when queued.
    pub(crate) id: u64,
    /// When it was queued (the hub's clock, ms since the epoch); set by the hub.
    pub(crate) enqueued_ms: i64,
}

/// A cloud-to-device message as `--state` keeps it.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredC2d {
    properties: String,
    body: String,
    /// Absent in rows written before expiry existed: such a message counts as queued at start.
    #[serde(default)]
    enqueued_ms: i64,
}

impl C2dMessage {
    pub(crate) fn store_key(device_id: &str, id: u64) -> (Kind, String) {
        // Device ids cannot contain '/'; the zero-padded number keeps rows in queue order.
        (Kind::C2d, format!("{device_id}/{id:020}"))
    }

    /// The row that stores it.
    pub(crate) fn row(&self, device_id: &str) -> Write {
        use base64::Engine as _;
        let value = serde_json::to_vec(&StoredC2d {
            properties: self.properties.encode(),
            body: base64::engine::general_purpose::STANDARD.encode(&self.body),
            enqueued_ms: self.enqueued_ms,
        })
        .ok();
        (Self::store_key(device_id, self.id), value)
    }

    /// When it expires (ms since the epoch): its own `$.exp`, else [`DEFAULT_TTL_MS`] after
    /// it was queued.
    pub(crate) fn expires_at_ms(&self) -> i64 {
        self.properties
            .expiry_time
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map_or(self.enqueued_ms.saturating_add(DEFAULT_TTL_MS), |t| {
                t.timestamp_millis()
            })
    }

    /// The feedback its sender asked for (`iothub-ack`).
    pub(crate) fn ack(&self) -> Ack {
        match self
            .properties
            .ack
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("positive") => Ack::Positive,
            Some("negative") => Ack::Negative,
            Some("full") => Ack::Full,
            _ => Ack::None,
        }
    }

    /// Pending messages from the store's rows, queued per device in order. `now_ms` is given
    /// to rows that do not say when they were queued.
    pub(crate) fn from_rows(
        rows: Vec<(String, Vec<u8>)>,
        now_ms: i64,
    ) -> Result<HashMap<String, VecDeque<Self>>, String> {
        use base64::Engine as _;
        let mut queues: HashMap<String, VecDeque<Self>> = HashMap::new();
        for (key, value) in rows {
            let parsed = key.rsplit_once('/').and_then(|(device, id)| {
                let stored: StoredC2d = serde_json::from_slice(&value).ok()?;
                let msg = Self {
                    properties: MessageProperties::decode(&stored.properties).ok()?,
                    body: base64::engine::general_purpose::STANDARD
                        .decode(stored.body)
                        .ok()?
                        .into(),
                    id: id.parse().ok()?,
                    enqueued_ms: if stored.enqueued_ms == 0 {
                        now_ms
                    } else {
                        stored.enqueued_ms
                    },
                };
                Some((device.to_owned(), msg))
            });
            let (device, msg) = parsed.ok_or_else(|| format!("cloud-to-device message {key}"))?;
            queues.entry(device).or_default().push_back(msg);
        }
        Ok(queues)
    }
}

/// Every device's pending messages.
#[derive(Debug)]
pub(crate) struct C2dQueues {
    pub(crate) queues: Mutex<HashMap<String, VecDeque<C2dMessage>>>,
    next: AtomicU64,
}

impl C2dQueues {
    pub(crate) fn new(queues: HashMap<String, VecDeque<C2dMessage>>) -> Self {
        let next = queues.values().flatten().map(|m| m.id).max().unwrap_or(0) + 1;
        Self {
            queues: Mutex::new(queues),
            next: AtomicU64::new(next),
        }
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Removes every message that expired by `now_ms`, with its device.
    pub(crate) fn take_expired(&self, now_ms: i64) -> Vec<(String, C2dMessage)> {
        let mut out = Vec::new();
        for (device, queue) in lock(&self.queues).iter_mut() {
            if queue.iter().any(|m| m.expires_at_ms() <= now_ms) {
                let (gone, kept) = std::mem::take(queue)
                    .into_iter()
                    .partition(|m| m.expires_at_ms() <= now_ms);
                *queue = kept;
                out.extend(gone.into_iter().map(|m: C2dMessage| (device.clone(), m)));
            }
        }
        out
    }

    pub(crate) fn pop(&self, device_id: &str) -> Option<C2dMessage> {
        lock(&self.queues).get_mut(device_id)?.pop_front()
    }

    pub(crate) fn len(&self, device_id: &str) -> usize {
        lock(&self.queues).get(device_id).map_or(0, VecDeque::len)
    }

    /// Puts unacknowledged messages back at the front, in order.
    pub(crate) fn requeue(&self, device_id: &str, msgs: Vec<C2dMessage>) {
        if msgs.is_empty() {
            return;
        }
        let mut q = lock(&self.queues);
        let queue = q.entry(device_id.to_owned()).or_default();
        for m in msgs.into_iter().rev() {
            queue.push_front(m);
        }
    }
}
