//! The seed file: devices to pre-register, as JSON.
//!
//! ```json
//! { "devices": [ { "deviceId": "sensor-1", "primaryKey": "<base64>", "secondaryKey": "<base64>" },
//!                { "deviceId": "sensor-2" } ],
//!   "deviceCAs": [ "certs/device-ca.pem", "-----BEGIN CERTIFICATE-----\n…" ] }
//! ```
//! Missing keys are generated. `deviceCAs` are CAs trusted for `certificateAuthority` devices:
//! each a PEM, or a path to one (relative paths are from the seed file's directory).

use crate::error::EmulatorError;
use crate::hub::registry::generate_key;
use iot_common::Secret;
use iot_common::registry::SymmetricKey;
use serde::Deserialize;
use std::path::Path;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SeedDevice {
    device_id: String,
    #[serde(default)]
    primary_key: Option<Secret>,
    #[serde(default)]
    secondary_key: Option<Secret>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Seed {
    #[serde(default)]
    devices: Vec<SeedDevice>,
    #[serde(default, rename = "deviceCAs")]
    device_cas: Vec<String>,
}

fn parse(path: &Path) -> Result<Seed, EmulatorError> {
    let bytes = std::fs::read(path)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| EmulatorError::State(format!("{}: {e}", path.display())))
}

/// The seed file's `deviceCAs` as (where it came from, PEM).
pub(crate) fn device_cas(path: &Path) -> Result<Vec<(String, String)>, EmulatorError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    parse(path)?
        .device_cas
        .into_iter()
        .enumerate()
        .map(|(i, entry)| {
            if entry.trim_start().starts_with("-----BEGIN") {
                return Ok((format!("{} deviceCAs[{i}]", path.display()), entry));
            }
            let file = dir.join(&entry);
            let pem = std::fs::read_to_string(&file).map_err(|e| {
                EmulatorError::Config(format!(
                    "{} deviceCAs[{i}]: {}: {e}",
                    path.display(),
                    file.display()
                ))
            })?;
            Ok((file.display().to_string(), pem))
        })
        .collect()
}

/// Reads the seed file into device ids and keys.
pub(crate) fn read(path: &Path) -> Result<Vec<(String, SymmetricKey)>, EmulatorError> {
    parse(path)?
        .devices
        .into_iter()
        .map(|d| {
            for k in [&d.primary_key, &d.secondary_key].into_iter().flatten() {
                iot_common::connection_string::validate_key("primaryKey", k.expose())
                    .map_err(|e| EmulatorError::State(format!("{}: {e}", d.device_id)))?;
            }
            let keys = SymmetricKey::new(
                d.primary_key.unwrap_or_else(generate_key),
                d.secondary_key.unwrap_or_else(generate_key),
            );
            Ok((d.device_id, keys))
        })
        .collect()
}
