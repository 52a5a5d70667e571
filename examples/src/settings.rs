//! Settings from the environment, falling back to the emulator's well-known development values.
//!
//! | variable | meaning | unset |
//! |---|---|---|
//! | `IOTHUB_CONNECTION_STRING` | service connection string | emulator `iothubowner` on `localhost:8443` |
//! | `IOTHUB_DEVICE_CONNECTION_STRING` | device connection string | emulator `myDevice` on `localhost:8883` |
//! | `IOTHUB_DEVICE_ID` | the device the service app targets | the device string's `DeviceId`, else `myDevice` |
//! | `IOTHUB_EVENTHUB_CONNECTION_STRING` | the hub's Event Hub-compatible endpoint (read telemetry) | the service connection string (the hub redirects) |
//! | `IOTHUB_CA_CERT` | extra CA to trust (PEM file) | the emulator's `$HOME/.iot-hub-emulator/certs/ca.pem` if present |
//! | `IOTHUB_DPS_ID_SCOPE` | DPS ID scope | the emulator's development scope |
//! | `IOTHUB_DPS_ENDPOINT` | DPS device endpoint, `host[:port]` | the emulator on `localhost:8883` |
//! | `IOTHUB_DPS_CONNECTION_STRING` | DPS enrollment service connection string | emulator `provisioningserviceowner` on `localhost:8443` |
//!
//! Set them to a real hub's values and the examples run against Azure unchanged.

use iot_device::DeviceClientOptions;
use iot_hub_emulator::dev_keys;
use iot_service::ServiceClientOptions;
use std::path::PathBuf;

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// `IOTHUB_DEVICE_CONNECTION_STRING`, or the emulator's development device.
pub fn device_connection_string() -> String {
    var("IOTHUB_DEVICE_CONNECTION_STRING").unwrap_or_else(|| {
        format!(
            "HostName=localhost;DeviceId={};SharedAccessKey={}",
            dev_keys::DEV_DEVICE_ID,
            dev_keys::DEV_DEVICE_PRIMARY_KEY
        )
    })
}

/// `IOTHUB_CONNECTION_STRING`, or the emulator's development `iothubowner`.
pub fn service_connection_string() -> String {
    var("IOTHUB_CONNECTION_STRING").unwrap_or_else(|| {
        format!(
            "HostName=localhost:8443;SharedAccessKeyName=iothubowner;SharedAccessKey={}",
            dev_keys::DEV_POLICY_PRIMARY_KEY
        )
    })
}

/// Where telemetry is read: `IOTHUB_EVENTHUB_CONNECTION_STRING`, else the service
/// connection string (the hub redirects readers to its Event Hub-compatible endpoint).
pub fn event_hub_connection_string() -> String {
    var("IOTHUB_EVENTHUB_CONNECTION_STRING").unwrap_or_else(service_connection_string)
}

/// The telemetry reader's options trusting [`ca_cert`].
///
/// # Errors
/// The CA file cannot be read or holds no certificate.
pub fn event_reader_options() -> iot_service::Result<iot_service::events::EventReaderOptions> {
    let o = iot_service::events::EventReaderOptions::new();
    match ca_cert() {
        Some(p) => o.trust_ca_file(p),
        None => Ok(o),
    }
}

/// `IOTHUB_DPS_ID_SCOPE`, or the emulator's development scope.
pub fn dps_id_scope() -> String {
    var("IOTHUB_DPS_ID_SCOPE").unwrap_or_else(|| dev_keys::DEV_ID_SCOPE.to_owned())
}

/// `IOTHUB_DPS_ENDPOINT`, or the emulator (`localhost`, port 8883).
pub fn dps_endpoint() -> String {
    var("IOTHUB_DPS_ENDPOINT").unwrap_or_else(|| "localhost".to_owned())
}

/// `IOTHUB_DPS_CONNECTION_STRING`, or the emulator's development `provisioningserviceowner`.
pub fn dps_connection_string() -> String {
    var("IOTHUB_DPS_CONNECTION_STRING").unwrap_or_else(|| {
        format!(
            "HostName=localhost:8443;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey={}",
            dev_keys::DEV_POLICY_PRIMARY_KEY
        )
    })
}

/// `IOTHUB_DEVICE_ID`, else the device connection string's `DeviceId`, else `myDevice`.
pub fn device_id() -> String {
    var("IOTHUB_DEVICE_ID")
        .or_else(|| {
            device_connection_string()
                .parse::<iot_device::DeviceConnectionString>()
                .ok()
                .map(|c| c.device_id)
        })
        .unwrap_or_else(|| dev_keys::DEV_DEVICE_ID.to_owned())
}

/// The CA file to trust: `IOTHUB_CA_CERT`, else the emulator's default one if it exists.
pub fn ca_cert() -> Option<PathBuf> {
    if let Some(p) = var("IOTHUB_CA_CERT") {
        return Some(PathBuf::from(p));
    }
    let default = PathBuf::from(var("HOME")?).join(".iot-hub-emulator/certs/ca.pem");
    default.exists().then_some(default)
}

/// Device options trusting [`ca_cert`].
///
/// # Errors
/// The CA file cannot be read.
pub fn device_options() -> iot_device::Result<DeviceClientOptions> {
    let o = DeviceClientOptions::new();
    match ca_cert() {
        Some(p) => o.trust_ca_file(p),
        None => Ok(o),
    }
}

/// Service options trusting [`ca_cert`].
///
/// # Errors
/// The CA file cannot be read.
pub fn service_options() -> iot_service::Result<ServiceClientOptions> {
    let o = ServiceClientOptions::new();
    match ca_cert() {
        Some(p) => o.trust_ca_file(p),
        None => Ok(o),
    }
}
