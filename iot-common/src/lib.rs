#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, rust_2018_idioms)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod backoff;
pub mod connection_string;
pub mod encoding;
pub mod hint;
pub mod job;
pub mod method;
pub mod mqtt;
pub mod properties;
pub mod provisioning;
pub mod registry;
pub mod sas;
mod secret;
pub mod status;
mod thumbprint;
mod timestamp;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub mod tls;
pub mod topic;
pub mod twin;
mod twin_paths;

pub use backoff::Backoff;
pub use connection_string::{
    ConnectionStringError, DeviceConnectionString, DeviceCredential, EventHubConnectionString,
    ServiceConnectionString,
};
pub use job::{JobRequest, JobResponse, JobStatus, JobType};
pub use method::{MethodInvocation, MethodInvocationResult, MethodRequest, MethodResponse};
pub use properties::{MessageProperties, PropertyError};
pub use sas::{SasError, SasToken};
pub use secret::Secret;
pub use status::{ErrorCode, HubErrorBody};
pub use thumbprint::{Thumbprint, ThumbprintError};
pub use timestamp::{Timestamp, TimestampError};
pub use topic::TopicError;
pub use twin::{Twin, TwinCollection, TwinError, TwinProperties};
