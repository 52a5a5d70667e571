//! The hub's shared state: registry, live MQTT sessions, telemetry buffer, cloud-to-device
//! queues, and persistence. Every protocol front end (MQTT, WebSocket, REST) calls into this.

use crate::error::ApiError;
use crate::registry::Registry;
use crate::telemetry::TelemetryBuffer;
pub(crate) use crate::telemetry::TelemetryRecord;
use bytes::Bytes;
use iot_common::MessageProperties;
use iot_common::twin::ConnectionState;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, oneshot};

/// The current UTC time as the hub writes it (7 fractional digits).
/// The current time as registry records carry it.
pub(crate) fn now_timestamp() -> iot_common::Timestamp {
    std::time::SystemTime::now().into()
}

pub(crate) fn now_string() -> String {
    format_time(chrono::Utc::now())
}

/// ISO-8601 UTC with 7 fractional digits, as the hub (a .NET service) writes times.
pub(crate) fn format_time(t: chrono::DateTime<chrono::Utc>) -> String {
    use chrono::Timelike as _;
    format!(
        "{}.{:07}Z",
        t.format("%Y-%m-%dT%H:%M:%S"),
        t.nanosecond() % 1_000_000_000 / 100
    )
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Locks a mutex, recovering from poisoning: a panicked request must not take the hub down.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Settings that shape the hub's behaviour.
#[derive(Debug, Clone)]
pub(crate) struct HubOptions {
    pub(crate) host_name: String,
    pub(crate) token_grace: Duration,
    pub(crate) telemetry_capacity: usize,
    pub(crate) telemetry_max_bytes: usize,
    /// Set on non-loopback binds: tokens signed with a well-known development key are refused.
    pub(crate) refuse_well_known: bool,
}

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
    fn store_key(device_id: &str, id: u64) -> (crate::store::Kind, String) {
        // Device ids cannot contain '/'; the zero-padded number keeps rows in queue order.
        (crate::store::Kind::C2d, format!("{device_id}/{id:020}"))
    }

    fn to_row(&self) -> Option<Vec<u8>> {
        use base64::Engine as _;
        serde_json::to_vec(&StoredC2d {
            properties: self.properties.encode(),
            body: base64::engine::general_purpose::STANDARD.encode(&self.body),
        })
        .ok()
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
    pub(crate) tx: mpsc::Sender<Outbound>,
    pub(crate) subs: AtomicU8,
    pub(crate) pending: Mutex<HashMap<String, oneshot::Sender<MethodReply>>>,
    /// Closes the connection even when `tx` is full or the task is blocked writing.
    pub(crate) close: crate::mqtt::CloseSignal,
}

impl SessionHandle {
    pub(crate) fn subscribed(&self, bit: u8) -> bool {
        self.subs.load(Ordering::Acquire) & bit != 0
    }

    pub(crate) fn client_id(&self) -> String {
        iot_common::mqtt::client_id(&self.device_id, self.module_id.as_deref())
    }
}

/// The hub.
#[derive(Debug)]
pub(crate) struct Hub {
    pub(crate) options: HubOptions,
    pub(crate) registry: Mutex<Registry>,
    sessions: Mutex<HashMap<String, Arc<SessionHandle>>>,
    persistent_subs: Mutex<HashMap<String, u8>>,
    telemetry: Mutex<TelemetryBuffer>,
    c2d: Mutex<HashMap<String, VecDeque<C2dMessage>>>,
    next_c2d: AtomicU64,
    next_rid: AtomicU64,
    next_conn: AtomicU64,
    /// The durable store (`--state`); `None` keeps everything in memory.
    store: Option<Arc<crate::store::Store>>,
    pub(crate) session_changed: Notify,
    pub(crate) jobs: Mutex<crate::jobs::JobStore>,
    pub(crate) faults: crate::faults::FaultState,
}

impl Hub {
    pub(crate) fn new(
        options: HubOptions,
        registry: Registry,
        store: Option<Arc<crate::store::Store>>,
        persistent_subs: HashMap<String, u8>,
        c2d: HashMap<String, VecDeque<C2dMessage>>,
        jobs: crate::jobs::JobStore,
    ) -> Self {
        let next_c2d = c2d.values().flatten().map(|m| m.id).max().unwrap_or(0) + 1;
        let faults = crate::faults::FaultState::default();
        if let Some(s) = &store {
            s.attach_fault(faults.state_write_failures());
        }
        Self {
            telemetry: Mutex::new(TelemetryBuffer::new(
                options.telemetry_capacity,
                options.telemetry_max_bytes,
            )),
            options,
            registry: Mutex::new(registry),
            sessions: Mutex::default(),
            persistent_subs: Mutex::new(persistent_subs),
            c2d: Mutex::new(c2d),
            next_c2d: AtomicU64::new(next_c2d),
            next_rid: AtomicU64::new(1),
            next_conn: AtomicU64::new(1),
            store,
            session_changed: Notify::new(),
            jobs: Mutex::new(jobs),
            faults,
        }
    }

    pub(crate) fn host_name(&self) -> &str {
        &self.options.host_name
    }

    pub(crate) fn next_rid(&self) -> String {
        self.next_rid.fetch_add(1, Ordering::Relaxed).to_string()
    }

    /// Hands the registry's changes to the store. Every mutation calls this before it
    /// answers; the answer then waits for [`Self::wait_durable`].
    pub(crate) fn mark_dirty(&self) {
        if let Some(store) = &self.store {
            let mut reg = lock(&self.registry);
            let writes = reg.take_changes();
            store.enqueue(writes);
        }
    }

    /// Hands the jobs' changes to `--state`, queued under the jobs' lock so that two
    /// changes of one row are queued in the order they were made.
    pub(crate) fn persist_jobs(&self) {
        if let Some(store) = &self.store {
            let mut jobs = lock(&self.jobs);
            store.enqueue(jobs.take_changes());
        }
    }

    /// Hands one persistent MQTT session's subscriptions to the store (`None`: forget it).
    fn persist_session(&self, client_id: &str, subs: Option<u8>) {
        if let Some(store) = &self.store {
            store.enqueue([(
                (crate::store::Kind::Session, client_id.to_owned()),
                subs.map(|s| s.to_string().into_bytes()),
            )]);
        }
    }

    /// Records the subscriptions of a `clean_session=false` client, to be restored when it
    /// reconnects (also after a restart with `--state`).
    pub(crate) fn save_subscriptions(&self, handle: &SessionHandle) {
        let subs = handle.subs.load(Ordering::Acquire);
        let client_id = handle.client_id();
        let mut persistent = lock(&self.persistent_subs);
        if persistent.insert(client_id.clone(), subs) != Some(subs) {
            self.persist_session(&client_id, Some(subs));
        }
    }

    /// The sequence number a caller must wait for so that every change made so far is
    /// committed (0 without `--state`).
    pub(crate) fn durable_seq(&self) -> u64 {
        self.store.as_ref().map_or(0, |s| s.last_seq())
    }

    /// Waits until the changes up to `seq` are committed to `--state`.
    ///
    /// # Cancel safety
    /// Cancel-safe: the changes are committed regardless.
    pub(crate) async fn wait_durable(&self, seq: u64) -> Result<(), ApiError> {
        match &self.store {
            Some(store) if seq > 0 => store.wait(seq).await.map_err(|e| {
                ApiError::new(
                    iot_common::ErrorCode::ServiceUnavailable,
                    format!("The change could not be stored yet ({e}); it is retried."),
                )
            }),
            _ => Ok(()),
        }
    }

    /// Commits what is pending and stops the store's writer.
    pub(crate) fn close_store(&self) {
        if let Some(s) = &self.store {
            s.close();
        }
    }

    /// Registers a new connection for an identity, closing any previous one (one connection
    /// per identity). Returns the handle and whether a persistent session existed.
    pub(crate) fn register_session(
        &self,
        device_id: &str,
        module_id: Option<&str>,
        tx: mpsc::Sender<Outbound>,
        clean_session: bool,
    ) -> (Arc<SessionHandle>, bool) {
        let client_id = iot_common::mqtt::client_id(device_id, module_id);
        let restored = {
            let mut subs = lock(&self.persistent_subs);
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
            let mut c2d = lock(&self.c2d);
            if let Some(dropped) = c2d.remove(device_id)
                && let Some(store) = &self.store
            {
                store.enqueue(
                    dropped
                        .iter()
                        .map(|m| (C2dMessage::store_key(device_id, m.id), None)),
                );
            }
        }
        let handle = Arc::new(SessionHandle {
            conn_id: self.next_conn.fetch_add(1, Ordering::Relaxed),
            device_id: device_id.to_owned(),
            module_id: module_id.map(str::to_owned),
            tx,
            subs: AtomicU8::new(restored.unwrap_or(0)),
            pending: Mutex::default(),
            close: Default::default(),
        });
        let old = lock(&self.sessions).insert(client_id, handle.clone());
        if let Some(old) = old {
            old.close.close("replaced by a new connection");
            fail_pending(&old);
        }
        self.set_connection_state(device_id, module_id, ConnectionState::Connected);
        self.session_changed.notify_waiters();
        (handle, restored.is_some())
    }

    /// Removes a connection (if it is still the current one for its identity).
    pub(crate) fn unregister_session(&self, handle: &Arc<SessionHandle>, clean_session: bool) {
        let client_id = handle.client_id();
        let removed = {
            let mut sessions = lock(&self.sessions);
            match sessions.get(&client_id) {
                Some(s) if s.conn_id == handle.conn_id => sessions.remove(&client_id).is_some(),
                _ => false,
            }
        };
        if !clean_session {
            self.save_subscriptions(handle);
        }
        fail_pending(handle);
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
        lock(&self.sessions)
            .get(&iot_common::mqtt::client_id(device_id, module_id))
            .cloned()
    }

    pub(crate) fn connected_count(&self) -> usize {
        lock(&self.sessions).len()
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
        let sessions: Vec<_> = lock(&self.sessions).values().cloned().collect();
        sessions
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
        match session.tx.try_send(Outbound::Publish { topic, payload }) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(
                    device_id = %session.device_id,
                    "closing a connection that does not keep up with its notifications"
                );
                session
                    .close
                    .close("the device did not keep up with its notifications");
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    pub(crate) fn record_telemetry(&self, record: TelemetryRecord) {
        lock(&self.telemetry).push(record);
    }

    /// Up to `top` buffered records from sequence number `from` on, and the sequence number
    /// the next page starts at.
    pub(crate) fn telemetry_page(
        &self,
        device_id: Option<&str>,
        from: u64,
        top: usize,
        max_bytes: usize,
    ) -> (Vec<TelemetryRecord>, Option<u64>) {
        lock(&self.telemetry).page(device_id, from, top, max_bytes)
    }

    pub(crate) fn telemetry(&self, device_id: Option<&str>) -> Vec<TelemetryRecord> {
        lock(&self.telemetry).all(device_id)
    }

    pub(crate) fn clear_telemetry(&self) {
        lock(&self.telemetry).clear();
    }

    /// Queues a cloud-to-device message (at most 50 pending per device).
    pub(crate) fn enqueue_c2d(&self, device_id: &str, mut msg: C2dMessage) -> Result<(), ApiError> {
        if !lock(&self.registry).devices.contains_key(device_id) {
            return Err(ApiError::device_not_found(device_id));
        }
        {
            let mut q = lock(&self.c2d);
            let queue = q.entry(device_id.to_owned()).or_default();
            if queue.len() >= 50 {
                return Err(ApiError::new(
                    iot_common::ErrorCode::DeviceMaximumQueueDepthExceeded,
                    "The device already has 50 pending cloud-to-device messages.",
                ));
            }
            msg.id = self.next_c2d.fetch_add(1, Ordering::Relaxed);
            if let Some(store) = &self.store {
                store.enqueue([(C2dMessage::store_key(device_id, msg.id), msg.to_row())]);
            }
            queue.push_back(msg);
        }
        if let Some(s) = self.session(device_id, None) {
            let _ = s.tx.try_send(Outbound::C2dAvailable);
        }
        Ok(())
    }

    /// The device acknowledged (completed) a message: it is gone for good.
    pub(crate) fn c2d_completed(&self, device_id: &str, msg: &C2dMessage) {
        if let Some(store) = &self.store {
            store.enqueue([(C2dMessage::store_key(device_id, msg.id), None)]);
        }
    }

    pub(crate) fn pop_c2d(&self, device_id: &str) -> Option<C2dMessage> {
        lock(&self.c2d).get_mut(device_id)?.pop_front()
    }

    /// Puts unacknowledged messages back at the front, in order.
    pub(crate) fn requeue_c2d(&self, device_id: &str, msgs: Vec<C2dMessage>) {
        if msgs.is_empty() {
            return;
        }
        let mut q = lock(&self.c2d);
        let queue = q.entry(device_id.to_owned()).or_default();
        for m in msgs.into_iter().rev() {
            queue.push_front(m);
        }
    }

    pub(crate) fn pending_c2d(&self, device_id: &str) -> usize {
        lock(&self.c2d).get(device_id).map_or(0, VecDeque::len)
    }

    /// Waits (blocking, at most 30 s) until every change is committed to `--state`.
    pub(crate) fn flush(&self) -> std::io::Result<()> {
        match &self.store {
            Some(s) => {
                self.mark_dirty();
                s.flush_blocking(Duration::from_secs(30))
            }
            None => Ok(()),
        }
    }
}

fn fail_pending(handle: &SessionHandle) {
    lock(&handle.pending).clear();
}
