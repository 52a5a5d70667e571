//! The emulator as a Device Provisioning Service (DPS): enrollments (individual and groups)
//! and the device registration exchange, assigning every device to the emulator's own hub.
//!
//! This module owns its state and its lock and does no I/O: the MQTT and HTTPS front ends
//! parse requests and call it, and the hub is reached through [`Provisioner`] only, so DPS
//! and the hub core do not know each other's insides.

mod enrollments;
mod persist;
mod register;
#[cfg(test)]
mod tests;
mod x509;

pub(crate) use iot_common::provisioning::{EnrollmentGroup, IndividualEnrollment};
pub(crate) use persist::DpsRows;
pub(crate) use register::{Attestor, ProvisionedDevice, X509Credential};

use iot_common::provisioning::ServiceErrorBody;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

/// Operations remembered for polling; the oldest are forgotten past this (a device polls
/// within seconds of registering).
const MAX_OPERATIONS: usize = 10_000;
/// Enrollments and groups together, so that a runaway script cannot exhaust memory.
pub(crate) const MAX_ENROLLMENTS: usize = 100_000;

/// What the hub does for DPS: create or update the assigned device.
pub(crate) trait Provisioner {
    /// Creates the device if it does not exist (with `device.keys` and `device.initial_twin`),
    /// or updates its credentials when it does; the twin is reset to the initial twin only
    /// when `device.reset_twin`. Returns the hub's message when it refuses.
    fn provision(&self, device: &ProvisionedDevice) -> Result<(), String>;
}

/// An error DPS answers with: an HTTP status, a DPS error code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DpsError {
    pub(crate) status: u16,
    pub(crate) code: u32,
    pub(crate) message: String,
}

impl DpsError {
    pub(crate) fn new(status: u16, code: u32, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, 400004, message)
    }

    pub(crate) fn unauthorized() -> Self {
        Self::new(401, 401002, "Unauthorized")
    }

    pub(crate) fn not_found(what: &str) -> Self {
        Self::new(404, 404201, format!("{what} not found."))
    }

    pub(crate) fn precondition_failed() -> Self {
        Self::new(
            412,
            412002,
            "Precondition failed: the etag does not match the current one.",
        )
    }

    /// The JSON body both the MQTT and HTTPS front ends send.
    pub(crate) fn body(&self) -> ServiceErrorBody {
        ServiceErrorBody {
            error_code: Some(self.code),
            tracking_id: Some(uuid::Uuid::new_v4().to_string()),
            message: self.message.clone(),
            timestamp_utc: Some(crate::clock::now_string()),
        }
    }
}

/// The Device Provisioning Service of one ID scope.
#[derive(Debug)]
pub(crate) struct Dps {
    id_scope: String,
    hub_host: String,
    retry_after: u64,
    state: Mutex<DpsState>,
}

#[derive(Debug, Default)]
struct DpsState {
    individual: BTreeMap<String, IndividualEnrollment>,
    groups: BTreeMap<String, EnrollmentGroup>,
    /// Registration states by registration id.
    registrations: BTreeMap<String, iot_common::provisioning::RegistrationState>,
    /// The group each group-attested registration came through.
    group_of: BTreeMap<String, String>,
    /// Finished operations by id, oldest first, for polls.
    operations: VecDeque<(String, iot_common::provisioning::RegistrationOperation)>,
    etag_seq: u64,
    /// `--state` is on: changed rows are remembered until the hub takes them.
    track: bool,
    dirty: std::collections::BTreeSet<(crate::hub::persistence::Kind, String)>,
}

impl DpsState {
    fn next_etag(&mut self) -> String {
        self.etag_seq += 1;
        format!("\"{:x}\"", self.etag_seq)
    }
}

impl Dps {
    /// A DPS for `id_scope` that assigns devices to the hub `hub_host` (the host name devices
    /// dial, as it appears in the hub's connection string).
    pub(crate) fn new(
        id_scope: impl Into<String>,
        hub_host: impl Into<String>,
        retry_after: u64,
    ) -> Self {
        Self {
            id_scope: id_scope.into(),
            hub_host: hub_host.into(),
            retry_after,
            state: Mutex::new(DpsState::default()),
        }
    }

    /// The ID scope devices register under.
    pub(crate) fn id_scope(&self) -> &str {
        &self.id_scope
    }

    /// The `retry-after` of the first `assigning` answer, in seconds.
    pub(crate) fn retry_after(&self) -> u64 {
        self.retry_after
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DpsState> {
        crate::locks::lock(&self.state)
    }
}
