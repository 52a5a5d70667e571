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
// Every type that appears in this crate's public API, so that users depend on iot-device
// alone (iot-common is an implementation detail they need not name).
pub use bytes::Bytes;
pub use futures_core::Stream;
pub use iot_common::tls::ClientIdentity;
pub use iot_common::{
    Backoff, ConnectionStringError, DeviceConnectionString, DeviceCredential, MessageProperties,
    MethodRequest, MethodResponse, PropertyError, Secret, TwinCollection, TwinError,
    TwinProperties,
};
pub use message::{C2dMessage, C2dMessages, Message};
pub use methods::{BoxFuture, IncomingMethod, MethodError, MethodHandler, MethodRequests};
pub use options::{DeviceClientOptions, Transport};
/// The rustls this crate is built with, for [`DeviceClientOptions::tls_client_config`].
pub use rustls;
pub use session::QueueFullPolicy;
pub use status::{ClientStats, CloseReason, ConnectionStatus, DisconnectReason, StatusChanges};
pub use twin::{DesiredKind, DesiredUpdate, DesiredUpdates};

/// Compile-time proof that the handles, errors and streams users share across tasks stay
/// `Send + Sync`.
#[allow(dead_code)]
fn _assert_send_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<DeviceClient>();
    send_sync::<WeakDeviceClient>();
    send_sync::<DeviceClientOptions>();
    send_sync::<Error>();
    send_sync::<MethodError>();
    send_sync::<C2dMessages>();
    send_sync::<DesiredUpdates>();
    send_sync::<MethodRequests>();
    send_sync::<StatusChanges>();
    send_sync::<IncomingMethod>();
    send_sync::<Message>();
}
