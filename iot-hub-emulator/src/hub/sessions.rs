//! Session operations: a device connects, subscribes, is pushed to, and goes away. A
//! `clean_session=false` client's subscriptions outlive its connection (and, with `--state`,
//! a restart).

use super::persistence::Kind;
use super::{Hub, Outbound, Refused, SessionHandle};
use crate::clock::now_timestamp;
use crate::locks::lock;
use bytes::Bytes;
use iot_common::twin::ConnectionState;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

impl Hub {
    /// Hands one persistent MQTT session's subscriptions to the store (`None`: forget it).
    /// Call it under `sessions.persistent`'s lock. Returns the sequence number to wait for.
    fn persist_session(&self, client_id: &str, subs: Option<u8>) -> u64 {
        let seq = self.persistence.enqueue([(
            (Kind::Session, client_id.to_owned()),
            subs.map(|s| s.to_string().into_bytes()),
        )]);
        self.sessions.saved_seq.fetch_max(seq, Ordering::AcqRel);
        seq
    }

    /// Records the subscriptions of a `clean_session=false` client, to be restored when it
    /// reconnects (also after a restart with `--state`). Returns the sequence number of the
    /// commit that holds them (0 without `--state`).
    pub(crate) fn save_subscriptions(&self, handle: &SessionHandle) -> u64 {
        let subs = handle.subs.load(Ordering::Acquire);
        let client_id = handle.client_id();
        let mut persistent = lock(&self.sessions.persistent);
        if persistent.insert(client_id.clone(), subs) != Some(subs) {
            self.persist_session(&client_id, Some(subs))
        } else {
            self.sessions.saved_seq.load(Ordering::Acquire)
        }
    }

    /// Registers a new connection for an identity, closing any previous one (one connection
    /// per identity). Returns the handle and whether a persistent session existed.
    pub(crate) fn register_session(
        &self,
        device_id: &str,
        module_id: Option<&str>,
        clean_session: bool,
    ) -> (Arc<SessionHandle>, bool) {
        let client_id = iot_common::mqtt::client_id(device_id, module_id);
        let restored = {
            let mut subs = lock(&self.sessions.persistent);
            if clean_session {
                if subs.remove(&client_id).is_some() {
                    self.persist_session(&client_id, None);
                }
                None
            } else {
                subs.get(&client_id).copied()
            }
        };
        if clean_session {
            self.drop_c2d(device_id);
        }
        let handle = Arc::new(SessionHandle {
            conn_id: self.sessions.next_conn_id(),
            device_id: device_id.to_owned(),
            module_id: module_id.map(str::to_owned),
            outbox: Default::default(),
            subs: AtomicU8::new(restored.unwrap_or(0)),
            pending: Default::default(),
            close: Default::default(),
        });
        let old = lock(&self.sessions.live).insert(client_id, handle.clone());
        if let Some(old) = old {
            old.close.close("replaced by a new connection");
            old.fail_pending();
        }
        self.set_connection_state(device_id, module_id, ConnectionState::Connected);
        self.sessions.changed.notify_waiters();
        (handle, restored.is_some())
    }

    /// Removes a connection (if it is still the current one for its identity).
    pub(crate) fn unregister_session(&self, handle: &Arc<SessionHandle>, clean_session: bool) {
        handle.outbox.close();
        let client_id = handle.client_id();
        let removed = {
            let mut sessions = lock(&self.sessions.live);
            match sessions.get(&client_id) {
                Some(s) if s.conn_id == handle.conn_id => sessions.remove(&client_id).is_some(),
                _ => false,
            }
        };
        if !clean_session {
            self.save_subscriptions(handle);
        }
        handle.fail_pending();
        if removed {
            self.set_connection_state(
                &handle.device_id,
                handle.module_id.as_deref(),
                ConnectionState::Disconnected,
            );
        }
    }

    pub(crate) fn session(
        &self,
        device_id: &str,
        module_id: Option<&str>,
    ) -> Option<Arc<SessionHandle>> {
        self.sessions
            .get(&iot_common::mqtt::client_id(device_id, module_id))
    }

    pub(crate) fn connected_count(&self) -> usize {
        self.sessions.count()
    }

    /// Closes the connection of an identity; `true` when there was one.
    pub(crate) fn disconnect(&self, device_id: &str, module_id: Option<&str>) -> bool {
        match self.session(device_id, module_id) {
            Some(s) => {
                s.close.close("closed by the emulator");
                true
            }
            None => false,
        }
    }

    /// Closes every connection; returns how many.
    pub(crate) fn disconnect_all(&self) -> usize {
        self.sessions
            .all()
            .iter()
            .inspect(|s| s.close.close("closed by the emulator"))
            .count()
    }

    fn set_connection_state(
        &self,
        device_id: &str,
        module_id: Option<&str>,
        state: ConnectionState,
    ) {
        let now = now_timestamp();
        let mut reg = lock(&self.registry);
        let Some(rec) = reg.record_mut_volatile(device_id) else {
            return;
        };
        match module_id {
            None => {
                rec.device.connection_state = state;
                rec.device.connection_state_updated_time = Some(now);
                rec.device.last_activity_time = Some(now);
            }
            Some(m) => {
                if let Some(mr) = rec.modules.get_mut(m) {
                    mr.module.connection_state = state;
                    mr.module.connection_state_updated_time = Some(now);
                    mr.module.last_activity_time = Some(now);
                }
            }
        }
    }

    /// Records device activity (any publish).
    pub(crate) fn touch(&self, device_id: &str, module_id: Option<&str>) {
        let now = now_timestamp();
        let mut reg = lock(&self.registry);
        if let Some(rec) = reg.record_mut_volatile(device_id) {
            match module_id.and_then(|m| rec.modules.get_mut(m)) {
                Some(mr) => mr.module.last_activity_time = Some(now),
                None => rec.device.last_activity_time = Some(now),
            }
        }
    }

    /// Pushes a message to a session if it is subscribed to `bit`; `false` otherwise.
    ///
    /// A session whose outbound queue is full is closed rather than silently skipped: a
    /// dropped desired-property notification would leave the device's twin stale with nothing
    /// to tell it so, while a device that reconnects reads its twin again.
    pub(crate) fn push(
        &self,
        session: &SessionHandle,
        bit: u8,
        topic: String,
        payload: Bytes,
    ) -> bool {
        if !session.subscribed(bit) {
            return false;
        }
        match session.outbox.push(Outbound::Publish { topic, payload }) {
            Ok(()) => true,
            Err(Refused::Full) => {
                tracing::warn!(
                    device_id = %session.device_id,
                    "closing a connection that does not keep up with its notifications"
                );
                session
                    .close
                    .close("the device did not keep up with its notifications");
                false
            }
            Err(Refused::Closed) => false,
        }
    }
}
