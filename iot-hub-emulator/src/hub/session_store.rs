//! The sessions store: live MQTT connections (one per identity) and the subscriptions of
//! `clean_session=false` clients, each map behind its own lock.

use super::close_signal::CloseSignal;
use super::outbox::Outbox;
use crate::locks::lock;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, oneshot};

/// What a connection task is asked to do.
#[derive(Debug)]
pub(crate) enum Outbound {
    Publish { topic: String, payload: Bytes },
    C2dAvailable,
}

/// Bits of [`SessionHandle::subs`].
pub(crate) mod sub {
    pub(crate) const METHODS: u8 = 1;
    pub(crate) const TWIN_RESPONSES: u8 = 2;
    pub(crate) const DESIRED: u8 = 4;
    pub(crate) const C2D: u8 = 8;
    pub(crate) const MODULE_INPUTS: u8 = 16;
}

/// The answer a device gave to a method request.
pub(crate) type MethodReply = (i32, Bytes);

/// A live MQTT connection, as the rest of the hub sees it.
#[derive(Debug)]
pub(crate) struct SessionHandle {
    pub(crate) conn_id: u64,
    pub(crate) device_id: String,
    pub(crate) module_id: Option<String>,
    /// What waits to be sent to the device (bounded; see [`Outbox`]).
    pub(crate) outbox: Outbox,
    pub(crate) subs: AtomicU8,
    pub(crate) pending: Mutex<HashMap<String, oneshot::Sender<MethodReply>>>,
    /// Closes the connection even when `tx` is full or the task is blocked writing.
    pub(crate) close: CloseSignal,
}

impl SessionHandle {
    pub(crate) fn subscribed(&self, bit: u8) -> bool {
        self.subs.load(Ordering::Acquire) & bit != 0
    }

    pub(crate) fn client_id(&self) -> String {
        iot_common::mqtt::client_id(&self.device_id, self.module_id.as_deref())
    }

    /// Fails the method calls waiting on this connection (their callers see 404103).
    pub(crate) fn fail_pending(&self) {
        lock(&self.pending).clear();
    }
}

/// Live connections by MQTT client id, and persistent subscriptions by client id.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    pub(crate) live: Mutex<HashMap<String, Arc<SessionHandle>>>,
    pub(crate) persistent: Mutex<HashMap<String, u8>>,
    next_conn: AtomicU64,
    /// The sequence number of the last save of persistent subscriptions: a save that finds
    /// them unchanged waits for it (the same subscriptions may not be committed yet).
    pub(crate) saved_seq: AtomicU64,
    /// Woken whenever a session connects or changes its subscriptions.
    pub(crate) changed: Notify,
}

impl Sessions {
    pub(crate) fn new(persistent: HashMap<String, u8>) -> Self {
        Self {
            live: Mutex::default(),
            persistent: Mutex::new(persistent),
            next_conn: AtomicU64::new(1),
            saved_seq: AtomicU64::new(0),
            changed: Notify::new(),
        }
    }

    pub(crate) fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn get(&self, client_id: &str) -> Option<Arc<SessionHandle>> {
        lock(&self.live).get(client_id).cloned()
    }

    pub(crate) fn count(&self) -> usize {
        lock(&self.live).len()
    }

    pub(crate) fn all(&self) -> Vec<Arc<SessionHandle>> {
        lock(&self.live).values().cloned().collect()
    }
}
