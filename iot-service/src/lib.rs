#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, rust_2018_idioms)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod amqp;
mod c2d;
mod client;
mod error;
pub mod events;
mod feedback;
mod jobs;
mod methods;
mod options;
mod provisioning;
mod query;
mod registry;
mod tls;
mod twins;

pub use c2d::{C2dMessage, FeedbackRequest};
pub use client::ServiceClient;
pub use error::{Error, ErrorKind, Result};
pub use feedback::{FeedbackBatch, FeedbackRecord, FeedbackStatus, FeedbackStream};
// Every type that appears in this crate's public API, so that users depend on iot-service
// alone (iot-common is an implementation detail they need not name).
pub use iot_common::job::DeviceJobStatistics;
pub use iot_common::provisioning::{
    Attestation, AttestationType, EnrollmentGroup, IndividualEnrollment, RegistrationState,
    RegistrationStatus, Substatus,
};
pub use iot_common::registry::{
    AuthenticationMechanism, Device, Module, RegistryStatistics, SymmetricKey, X509Thumbprint,
};
pub use iot_common::twin::{Capabilities, ConnectionState, DeviceStatus};
pub use iot_common::{
    Backoff, ConnectionStringError, ErrorCode, EventHubConnectionString, JobResponse, JobStatus,
    JobType, MethodInvocation, Secret, ServiceConnectionString, Thumbprint, Timestamp,
    TimestampError, Twin, TwinCollection, TwinProperties,
};
pub use jobs::JobSchedule;
pub use methods::{DirectMethodRequest, DirectMethodResult};
pub use options::{DEFAULT_MAX_RESPONSE_BYTES, RetryOptions, ServiceClientOptions};
pub use provisioning::{PROVISIONING_API_VERSION, ProvisioningServiceClient};
pub use query::Query;
pub use twins::{IfMatch, TwinPatch};

/// Compile-time proof that the handles users share across tasks stay `Send + Sync`.
#[allow(dead_code)]
fn _assert_send_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<ServiceClient>();
    send_sync::<ProvisioningServiceClient>();
    send_sync::<Error>();
    send_sync::<ServiceClientOptions>();
    send_sync::<Query<Twin>>();
    send_sync::<Query<serde_json::Value>>();
    send_sync::<Query<JobResponse>>();
    send_sync::<C2dMessage>();
    send_sync::<FeedbackStream>();
    send_sync::<FeedbackBatch>();
}
