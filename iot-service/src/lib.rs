#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, rust_2018_idioms)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod client;
mod error;
mod hint;
mod jobs;
mod methods;
mod options;
mod query;
mod registry;
mod twins;

pub use client::ServiceClient;
pub use error::{Error, ErrorKind, Result};
pub use iot_common::registry::{Device, Module, RegistryStatistics, SymmetricKey};
pub use iot_common::twin::{ConnectionState, DeviceStatus};
pub use iot_common::{ErrorCode, JobResponse, JobStatus, JobType, Twin, TwinCollection};
pub use jobs::JobSchedule;
pub use methods::{DirectMethodRequest, DirectMethodResult};
pub use options::{RetryOptions, ServiceClientOptions};
pub use query::Query;
pub use twins::{IfMatch, TwinPatch};
