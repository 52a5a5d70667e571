//! The seed file: devices to pre-register, as JSON.
//!
//! ```json
//! { "devices": [ { "deviceId": "sensor-1", "primaryKey": "<base64>", "secondaryKey": "<base64>" },
//!                { "deviceId": "sensor-2" } ] }
//! ```
//! Missing keys are generated.

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
struct Seed {
    #[serde(default)]
    devices: Vec<SeedDevice>,
}

/// Reads the seed file into device ids and keys.
pub(crate) fn read(path: &Path) -> Result<Vec<(String, SymmetricKey)>, EmulatorError> {
    let bytes = std::fs::read(path)?;
    let seed: Seed = serde_json::from_slice(&bytes)
        .map_err(|e| EmulatorError::State(format!("{}: {e}", path.display())))?;
    seed.devices
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
