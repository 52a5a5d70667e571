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

/// A queued cloud-to-device message.
#[derive(Debug, Clone)]
pub(crate) struct C2dMessage {
    pub(crate) properties: MessageProperties,
    pub(crate) body: Bytes,
    /// The hub's number for it (its row in `--state`); assigned when queued.
    pub(crate) id: u64,
}

/// A cloud-to-device message as `--state` keeps it.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredC2d {
    properties: String,
    body: String,
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
        })
        .ok();
        (Self::store_key(device_id, self.id), value)
    }

    /// Pending messages from the store's rows, queued per device in order.
    pub(crate) fn from_rows(
        rows: Vec<(String, Vec<u8>)>,
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
