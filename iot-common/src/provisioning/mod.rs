//! The Device Provisioning Service (DPS) device protocol, without I/O.
//!
//! A device that has no hub yet registers with DPS under an ID scope and a registration id,
//! and learns which hub it was assigned to and under which device id. This module holds what
//! both the provisioning client and the emulator's DPS need to agree on:
//!
//! - [`topics`]: the MQTT topic names, the CONNECT user name and the SAS resource;
//! - [`derive_device_key`]: the key of a device in a symmetric-key enrollment group;
//! - the JSON bodies ([`RegistrationRequest`], [`RegistrationOperation`], [`RegistrationState`]);
//! - [`RegistrationFlow`]: the register-then-poll exchange as a state machine with time
//!   passed in, so that retry-after, throttling and timeouts are tested without a clock.

mod enrollment;
mod error;
mod flow;
mod keys;
mod model;
pub mod topics;

pub use enrollment::{Attestation, AttestationType, EnrollmentGroup, IndividualEnrollment};
pub use error::ProvisioningError;
pub use flow::{FlowOptions, Outgoing, RegistrationFlow, RequestKind};
pub use keys::{derive_device_key, validate_registration_id};
pub use model::{
    RegistrationOperation, RegistrationRequest, RegistrationState, RegistrationStatus,
    ServiceErrorBody, Substatus,
};
pub use topics::ResponseTopic;

/// The device API version the official SDKs send to DPS.
pub const API_VERSION: &str = "2019-03-31";
