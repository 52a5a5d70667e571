//! The hub's service core. Every protocol front end (MQTT in `mqtt/`, REST and WebSockets in
//! `http/`) calls into this module and nothing else of the other's.
//!
//! The core is a set of stores, each owning its lock, and the operations on them:
//!
//! | store | file | what it holds |
//! |---|---|---|
//! | registry | `registry.rs`, `twin_state.rs`, `tag_index.rs` | identities, keys, policies, and each identity's twin (documents, versions, etags, `$metadata`); the index of tag values that queries look up |
//! | sessions | `session_store.rs`, `close_signal.rs` | live MQTT connections, persistent subscriptions |
//! | cloud-to-device | `c2d_store.rs` | pending messages per device |
//! | feedback | `feedback_store.rs` | cloud-to-device outcomes waiting for the service |
//! | telemetry | `telemetry.rs` | the bounded buffer of received messages |
//! | jobs | `job_store.rs` | jobs and their per-device records |
//! | persistence | `persistence.rs`, `durability.rs` | `--state`: the SQLite writer and the wait for commits |
//! | faults | `faults.rs` | the one seam through which injected failures reach the hub |
//!
//! Operations (`impl Hub`), one file per area: `identities.rs`, `twins.rs`, `sessions.rs`,
//! `methods.rs`, `c2d.rs`, `feedback.rs`, `jobs.rs`, `query.rs`, `auth.rs`. An operation that changes
//! persisted state queues its rows under the lock that ordered the change and answers only
//! after [`Hub::wait_durable`].

pub(crate) mod auth;
mod c2d;
mod c2d_store;
mod close_signal;
mod durability;
mod faults;
mod feedback;
pub(crate) mod feedback_store;
mod identities;
mod job_store;
pub(crate) mod jobs;
mod methods;
pub(crate) mod persistence;
mod provisioning;
mod query;
#[cfg(test)]
mod query_tests;
pub(crate) mod registry;
mod session_store;
mod sessions;
mod tag_index;
mod telemetry;
pub(crate) mod twin_state;
mod twins;

pub(crate) use c2d_store::C2dMessage;
pub(crate) use durability::Persistence;
pub use faults::FaultSettings;
pub(crate) use faults::FaultState;
pub(crate) use job_store::JobStore;
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

/// Settings that shape the hub's behaviour.
#[derive(Debug, Clone)]
pub(crate) struct HubOptions {
    pub(crate) host_name: String,
    pub(crate) token_grace: Duration,
    pub(crate) telemetry_capacity: usize,
    pub(crate) telemetry_max_bytes: usize,
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
    pub(crate) persistent_sessions: HashMap<String, u8>,
    pub(crate) c2d: HashMap<String, VecDeque<C2dMessage>>,
    /// Feedback records not yet taken by the service.
    pub(crate) feedback: Vec<(u64, feedback_store::FeedbackRecord)>,
    pub(crate) jobs: JobStore,
    /// The DPS's enrollments and registrations.
    pub(crate) dps: crate::dps::DpsRows,
}

/// The hub.
#[derive(Debug)]
pub(crate) struct Hub {
    pub(crate) options: HubOptions,
    pub(crate) registry: Mutex<Registry>,
    pub(crate) sessions: Sessions,
    telemetry: Telemetry,
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
            registry: Mutex::new(state.registry),
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

    /// Hands the registry's changes to the store and returns the sequence number to wait for.
    /// Every mutation calls this before it answers; the answer then waits for
    /// [`Self::wait_durable`].
    pub(crate) fn mark_dirty(&self) -> u64 {
        if !self.persistence.is_durable() {
            return 0;
        }
        let mut reg = lock(&self.registry);
        let mut writes = reg.take_changes();
        // Taken under the registry's lock: DPS never holds its own lock while calling the hub,
        // so this order cannot deadlock.
        writes.extend(self.dps.take_changes());
        self.persistence.enqueue(writes)
    }

    /// Hands the jobs' changes to `--state`, queued under the jobs' lock so that two
    /// changes of one row are queued in the order they were made.
    pub(crate) fn persist_jobs(&self) {
        if self.persistence.is_durable() {
            let mut jobs = lock(&self.jobs);
            self.persistence.enqueue(jobs.take_changes());
        }
    }

    /// The sequence number a caller must wait for so that every change made so far is
    /// committed (0 without `--state`).
    pub(crate) fn durable_seq(&self) -> u64 {
        self.persistence.last_seq()
    }

    /// Waits until the changes up to `seq` are committed to `--state`.
    ///
    /// # Cancel safety
    /// Cancel-safe: the changes are committed regardless.
    pub(crate) async fn wait_durable(&self, seq: u64) -> Result<(), HubRefusal> {
        self.persistence.wait(seq).await
    }

    /// Blocks (at most 30 s) until every change made so far is committed to `--state`.
    pub(crate) fn flush(&self) -> std::io::Result<()> {
        let seq = self.mark_dirty().max(self.durable_seq());
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
    pub(crate) fn record_telemetry(&self, record: TelemetryRecord) {
        self.telemetry.push(record);
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
