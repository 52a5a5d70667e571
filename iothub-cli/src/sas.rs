//! `iothub sas-token`: a token for the connection string's policy, or for a device.

use crate::cli::SasArgs;
use crate::error::CliError;
use crate::hub::Hub;
use crate::output::Output;
use iot_common::SasToken;
use serde_json::json;
use std::time::{SystemTime, UNIX_EPOCH};

/// Runs `sas-token`.
///
/// # Cancel safety
/// Cancel-safe: it signs locally and at most reads the device's keys.
pub async fn run(hub: &Hub, out: &Output, a: SasArgs) -> Result<(), CliError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let expiry = now + a.ttl;
    let c = &hub.connection;
    let token = match &a.device {
        None => SasToken::for_service(&c.host_name, &c.key_name, &c.key, expiry),
        Some(id) => {
            let d = hub.client.get_device(id).await?;
            let keys = d.authentication.symmetric_key.as_ref();
            let key = if a.secondary {
                keys.and_then(|k| k.secondary_key.clone())
            } else {
                keys.and_then(|k| k.primary_key.clone())
            }
            .filter(|k| !k.is_empty())
            .ok_or_else(|| CliError::Usage(format!("device {id} has no symmetric key")))?;
            SasToken::for_device(hub.device_host(), id, &key, expiry)
        }
    }
    .map_err(|e| CliError::Usage(format!("cannot sign the token: {e}")))?;
    let wire = token.as_secret().expose();
    out.text_or_json(
        wire,
        &json!({
            "token": wire,
            "resource": token.resource(),
            "expiresAt": expiry,
            "policy": token.key_name(),
        }),
    );
    Ok(())
}
