#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, rust_2018_idioms)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod client;
mod driver;
mod error;
mod inner;
mod message;
mod methods;
mod options;
pub mod provisioning;
mod session;
mod status;
mod tls;
mod twin;

pub use client::{DeviceClient, MAX_TELEMETRY_BYTES, WeakDeviceClient};
pub use error::{Error, ErrorKind, Result};
pub use iot_common::{
    MessageProperties, MethodRequest, MethodResponse, Secret, TwinCollection, TwinProperties,
};
pub use message::{C2dMessage, C2dMessages, Message};
pub use methods::{BoxFuture, IncomingMethod, MethodError, MethodHandler, MethodRequests};
pub use options::{DeviceClientOptions, Transport};
pub use session::QueueFullPolicy;
pub use status::{ClientStats, CloseReason, ConnectionStatus, DisconnectReason, StatusChanges};
pub use twin::{DesiredKind, DesiredUpdate, DesiredUpdates};
