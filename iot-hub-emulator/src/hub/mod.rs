//! The hub's service core. Every protocol front end (MQTT in `mqtt/`, REST and WebSockets in
//! `http/`) calls into this module and nothing else of the other's.
//!
//! The core is a set of stores, each owning its lock, and the operations on them:
//!
//! | store | file | what it holds |
//! |---|---|---|
//! | registry | `registry.rs` | identities (devices, modules), keys, policies |
//! | twins | `twin_store.rs`, `twin_state.rs`, `tag_index.rs` | each identity's twin (documents, versions, etags, `$metadata`), keyed by device and module id; the index of tag values that queries look up |
//! | sessions | `session_store.rs`, `close_signal.rs` | live MQTT connections, persistent subscriptions |
//! | cloud-to-device | `c2d_store.rs` | pending messages per device |
//! | feedback | `feedback_store.rs` | cloud-to-device outcomes waiting for the service |
//! | telemetry | `telemetry.rs` | the bounded buffer of received messages |
//! | events | `event_log.rs`, `event_receivers.rs` | the Event Hub-compatible endpoint's partition logs, and who reads them (epochs) |
//! | jobs | `job_store.rs` | jobs and their per-device records |
//! | persistence | `persistence.rs`, `durability.rs` | `--state`: the SQLite writer and the wait for commits |
//! | faults | `faults.rs` | the one seam through which injected failures reach the hub |
//!
//! Operations (`impl Hub`), one file per area: `identities.rs`, `twins.rs`, `sessions.rs`,
//! `methods.rs`, `c2d.rs`, `feedback.rs`, `jobs.rs`, `query.rs`, `auth.rs`, `events.rs`. An operation that changes
//! persisted state queues its rows under the lock that ordered the change and answers only
//! after [`Hub::wait_durable`].
//!
//! Lock order: see [`crate::locks`]. An operation that needs two stores' locks takes them in
//! that order; twin operations take only the twins' lock.

pub(crate) mod auth;
mod c2d;
mod c2d_store;
mod close_signal;
mod durability;
pub(crate) mod event_log;
pub(crate) mod event_receivers;
mod events;
mod faults;
mod feedback;
pub(crate) mod feedback_store;
mod identities;
mod job_store;
pub(crate) mod jobs;
#[cfg(test)]
mod lock_tests;
mod methods;
mod outbox;
pub(crate) mod persistence;
mod provisioning;
mod query;
#[cfg(test)]
mod query_tests;
pub(crate) mod registry;
pub(crate) mod schema_v1;
mod session_store;
mod sessions;
mod tag_index;
mod telemetry;
pub(crate) mod twin_state;
pub(crate) mod twin_store;
mod twins;

pub(crate) use c2d_store::C2dMessage;
pub(crate) use durability::{Persistence, Receipt};
pub use faults::FaultSettings;
pub(crate) use faults::FaultState;
pub(crate) use job_store::JobStore;
pub(crate) use outbox::Refused;
pub(crate) use session_store::{Outbound, SessionHandle, sub};
pub use telemetry::TelemetryRecord;

use crate::error::HubRefusal;
use crate::locks::lock;
use c2d_store::C2dQueues;
use registry::Registry;
use session_store::Sessions;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use telemetry::Telemetry;
use twin_store::TwinStore;

/// Settings that shape the hub's behaviour.
#[derive(Debug, Clone)]
pub(crate) struct HubOptions {
    pub(crate) host_name: String,
    pub(crate) token_grace: Duration,
    pub(crate) telemetry_capacity: usize,
    pub(crate) telemetry_max_bytes: usize,
    /// Bytes of events kept per partition of the Event Hub-compatible endpoint.
    pub(crate) event_retention_bytes: u64,
    /// Consumer groups besides `$Default`.
    pub(crate) consumer_groups: Vec<String>,
    /// Set on non-loopback binds: tokens signed with a well-known development key are refused.
    pub(crate) refuse_well_known: bool,
    /// The ID scope of the emulator's DPS.
    pub(crate) id_scope: String,
    /// The `retry-after` (seconds) of DPS's first `assigning` answer.
    pub(crate) dps_retry_after: u64,
    /// The CAs that `certificateAuthority` devices chain to (from configuration, not stored).
    pub(crate) device_cas: std::sync::Arc<crate::client_cert::DeviceCas>,
}

/// What `--state` (or nothing) gives the hub at start-up.
#[derive(Debug, Default)]
pub(crate) struct HubState {
    pub(crate) registry: Registry,
    pub(crate) twins: TwinStore,
    pub(crate) persistent_sessions: HashMap<String, u8>,
    pub(crate) c2d: HashMap<String, VecDeque<C2dMessage>>,
    /// Feedback records not yet taken by the service.
    pub(crate) feedback: Vec<(u64, feedback_store::FeedbackRecord)>,
    pub(crate) jobs: JobStore,
    /// The DPS's enrollments and registrations.
    pub(crate) dps: crate::dps::DpsRows,
    /// The Event Hub-compatible endpoint's events, restored.
    pub(crate) events: Option<event_log::EventLog>,
}

/// The hub.
#[derive(Debug)]
pub(crate) struct Hub {
    pub(crate) options: HubOptions,
    pub(crate) registry: Mutex<Registry>,
    /// Taken after `registry` when both are needed.
    pub(crate) twins: Mutex<TwinStore>,
    pub(crate) sessions: Sessions,
    telemetry: Telemetry,
    pub(crate) events: event_log::EventLog,
    pub(crate) event_receivers: event_receivers::EventReceivers,
    c2d: C2dQueues,
    pub(crate) feedback: feedback_store::FeedbackQueue,
    /// The clock message lifetimes are measured by.
    pub(crate) clock: crate::clock::HubClock,
    /// Fault injection: every AMQP connection waits on it and is dropped when it fires.
    pub(crate) drop_amqp: tokio::sync::Notify,
    jobs: Mutex<JobStore>,
    persistence: Persistence,
    pub(crate) faults: FaultState,
    /// The Device Provisioning Service, which assigns devices to this hub.
    pub(crate) dps: crate::dps::Dps,
    next_rid: AtomicU64,
}

impl Hub {
    pub(crate) fn new(options: HubOptions, state: HubState, persistence: Persistence) -> Self {
        let faults = FaultState::default();
        persistence.attach_fault(faults.state_write_failures());
        let durable = persistence.is_durable();
        Self {
            telemetry: Telemetry::new(options.telemetry_capacity, options.telemetry_max_bytes),
            events: state.events.unwrap_or_else(|| {
                event_log::EventLog::new(
                    options.event_retention_bytes,
                    chrono::Utc::now().timestamp_millis(),
                )
            }),
            event_receivers: event_receivers::EventReceivers::default(),
            registry: Mutex::new(state.registry),
            twins: Mutex::new(state.twins),
            sessions: Sessions::new(state.persistent_sessions),
            c2d: C2dQueues::new(state.c2d),
            feedback: feedback_store::FeedbackQueue::new(state.feedback),
            clock: crate::clock::HubClock::default(),
            drop_amqp: tokio::sync::Notify::new(),
            jobs: Mutex::new(state.jobs),
            persistence,
            faults,
            dps: crate::dps::Dps::new(
                options.id_scope.clone(),
                options.host_name.clone(),
                options.dps_retry_after,
            )
            .restored(state.dps, durable),
            next_rid: AtomicU64::new(1),
            options,
        }
    }

    pub(crate) fn host_name(&self) -> &str {
        &self.options.host_name
    }

    pub(crate) fn next_rid(&self) -> String {
        self.next_rid.fetch_add(1, Ordering::Relaxed).to_string()
    }

    /// Hands the registry's and DPS's changes to the store and returns the sequence number
    /// to wait for. DPS operations call this before they answer; the answer then waits for
    /// [`Self::wait_durable`].
    pub(crate) fn mark_dirty(&self) -> u64 {
        if !self.persistence.is_durable() {
            return 0;
        }
        let mut reg = lock(&self.registry);
        self.persist_registry(&mut reg, None)
    }

    /// Hands the registry's changes (with DPS's, and the twins' when the caller holds their
    /// lock too) to the store in one batch, so that an identity and its twin are committed
    /// together. Call it under the lock(s) the changes were made under.
    pub(crate) fn persist_registry(
        &self,
        reg: &mut Registry,
        twins: Option<&mut TwinStore>,
    ) -> u64 {
        if !self.persistence.is_durable() {
            return 0;
        }
        let mut writes = reg.take_changes();
        // Taken under the registry's lock: DPS never holds its own lock while calling the hub,
        // so this order cannot deadlock.
        writes.extend(self.dps.take_changes());
        let Some(t) = twins else {
            return reg.handover.enqueue(&self.persistence, writes);
        };
        let twin_rows = t.take_changes();
        let with_twins = !twin_rows.is_empty();
        writes.extend(twin_rows);
        let seq = reg.handover.enqueue(&self.persistence, writes);
        if with_twins {
            t.handover.carried(seq);
        }
        seq
    }

    /// Hands the twins' changes to the store; call it under the twins' lock.
    pub(crate) fn persist_twins(&self, twins: &mut TwinStore) -> u64 {
        if !self.persistence.is_durable() {
            return 0;
        }
        let rows = twins.take_changes();
        twins.handover.enqueue(&self.persistence, rows)
    }

    /// Hands the jobs' changes to `--state`, queued under the jobs' lock so that two
    /// changes of one row are queued in the order they were made. Returns the sequence
    /// number to wait for.
    pub(crate) fn persist_jobs(&self) -> u64 {
        if !self.persistence.is_durable() {
            return 0;
        }
        let mut jobs = lock(&self.jobs);
        let rows = jobs.take_changes();
        jobs.handover.enqueue(&self.persistence, rows)
    }

    /// Waits until the changes up to `seq` are committed to `--state`.
    ///
    /// # Cancel safety
    /// Cancel-safe: the changes are committed regardless.
    pub(crate) async fn wait_durable(&self, seq: u64) -> Result<(), HubRefusal> {
        self.persistence.wait(seq).await
    }

    /// Blocks (at most 30 s) until the changes up to `seq` are committed to `--state`. For the
    /// in-process API, which has no task to park.
    pub(crate) fn wait_durable_blocking(&self, seq: u64) -> std::io::Result<()> {
        self.persistence.wait_blocking(seq, FLUSH_TIMEOUT)
    }

    /// Blocks (at most 30 s) until every change made so far is committed to `--state`.
    pub(crate) fn flush(&self) -> std::io::Result<()> {
        {
            let mut reg = lock(&self.registry);
            let mut twins = lock(&self.twins);
            self.persist_registry(&mut reg, Some(&mut twins));
        }
        // Everything: start-up and shutdown wait for all that was queued, by anyone.
        let seq = self.persistence.last_seq();
        self.persistence.wait_blocking(seq, FLUSH_TIMEOUT)
    }

    /// Commits what is pending and stops the store's writer.
    pub(crate) fn close_store(&self) {
        self.persistence.close();
    }
}

/// How long the in-process API and shutdown wait for a commit.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

impl Hub {
    /// Keeps a device's message for inspection and appends it to the Event Hub-compatible
    /// endpoint; returns the `--state` sequence number to wait for before acknowledging it.
    pub(crate) fn record_telemetry(&self, record: TelemetryRecord) -> u64 {
        let seq = self.append_event(
            &record.device_id,
            record.module_id.as_deref(),
            &record.properties,
            record.body.clone(),
        );
        self.telemetry.push(record);
        seq
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
        self.telemetry.page(device_id, from, top, max_bytes)
    }

    pub(crate) fn telemetry(&self, device_id: Option<&str>) -> Vec<TelemetryRecord> {
        self.telemetry.all(device_id)
    }

    pub(crate) fn clear_telemetry(&self) {
        self.telemetry.clear();
    }
}
