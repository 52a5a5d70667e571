//! `iothub device …`: the identity registry.

use crate::cli::DeviceCommand;
use crate::error::CliError;
use crate::hub::Hub;
use crate::output::{Column, Output};
use iot_common::DeviceConnectionString;
use iot_service::{Device, IfMatch, Secret, SymmetricKey};
use serde_json::{Value, json};

const COLUMNS: &[Column] = &[
    Column("Device", "/deviceId"),
    Column("Status", "/status"),
    Column("Connection", "/connectionState"),
    Column("Last activity", "/lastActivityTime"),
    Column("C2D queued", "/cloudToDeviceMessageCount"),
    Column("Auth", "/authentication/type"),
];

/// Runs one `device` subcommand.
///
/// # Cancel safety
/// Reads are safe to drop; a dropped create or delete may or may not have been applied
/// (`device show` tells). Each call is bounded by the service client's timeout.
pub async fn run(hub: &Hub, out: &Output, cmd: DeviceCommand) -> Result<(), CliError> {
    match cmd {
        DeviceCommand::List { top } => {
            let devices = {
                let _s = out.spinner("listing devices");
                hub.client.list_devices(top).await?
            };
            let rows = devices
                .iter()
                .map(redacted)
                .collect::<Result<Vec<_>, _>>()?;
            out.rows(&rows, COLUMNS);
        }
        DeviceCommand::Show { device_id } => {
            let d = hub.client.get_device(&device_id).await?;
            out.object(&redacted(&d)?);
        }
        DeviceCommand::Create {
            count: Some(count),
            prefix,
            ..
        } => create_many(hub, out, count, &prefix.unwrap_or_default()).await?,
        DeviceCommand::Create {
            device_id,
            primary_key,
            secondary_key,
            ..
        } => {
            let device_id =
                device_id.ok_or_else(|| CliError::Usage("give a device id or --count".into()))?;
            let keys = match (primary_key, secondary_key) {
                (Some(p), Some(s)) => Some(SymmetricKey::new(Secret::new(p), Secret::new(s))),
                _ => None,
            };
            let d = hub
                .client
                .create_device(&Device::new(device_id, keys))
                .await?;
            out.object(&redacted(&d)?);
        }
        DeviceCommand::Delete { device_id, etag } => {
            let if_match = etag.map_or(IfMatch::Any, IfMatch::Etag);
            hub.client.delete_device(&device_id, if_match).await?;
            out.text_or_json(
                &format!("deleted device {device_id}"),
                &json!({ "deleted": device_id }),
            );
        }
        DeviceCommand::ConnectionString {
            device_id,
            secondary,
            gateway_host_name,
        } => {
            let d = hub.client.get_device(&device_id).await?;
            let keys = d.authentication.symmetric_key.as_ref();
            let key = if secondary {
                keys.and_then(|k| k.secondary_key.clone())
            } else {
                keys.and_then(|k| k.primary_key.clone())
            };
            let key = key.filter(|k| !k.is_empty()).ok_or_else(|| {
                CliError::Usage(format!(
                    "device {device_id} has no symmetric key (it authenticates with {})",
                    d.authentication.kind
                ))
            })?;
            let mut cs = DeviceConnectionString::with_key(hub.device_host(), &device_id, key);
            if let Some(g) = gateway_host_name {
                cs = cs.gateway(g);
            }
            let cs = cs.to_string();
            out.text_or_json(
                &cs,
                &json!({ "deviceId": device_id, "connectionString": cs }),
            );
        }
    }
    Ok(())
}

/// The ids `device create --count` makes: `{prefix}{n}`, n from 1, zero-padded to the
/// width of `count` so that they sort in creation order.
fn bulk_ids(prefix: &str, count: u32) -> impl Iterator<Item = String> + '_ {
    let width = count.to_string().len();
    (1..=count).map(move |n| format!("{prefix}{n:0width$}"))
}

/// `device create --count N --prefix P`: one request per device, in order, with a progress
/// bar on a terminal. A device that cannot be created (it exists, a bad id…) is reported
/// and the rest go on; the exit code is then the first failure's.
async fn create_many(hub: &Hub, out: &Output, count: u32, prefix: &str) -> Result<(), CliError> {
    let progress = out.progress(u64::from(count), format!("creating {prefix}…"));
    let mut created = Vec::new();
    let mut failed = Vec::new();
    let mut first_error = None;
    for id in bulk_ids(prefix, count) {
        match hub
            .client
            .create_device(&Device::new(id.clone(), None))
            .await
        {
            Ok(_) => created.push(id),
            Err(e) => {
                let e = CliError::from(e);
                let line = e.to_string().replace(['\n', '\r'], " ");
                if !out.is_json() {
                    progress.println(&format!("{id}: {line}"));
                }
                failed.push(json!({ "deviceId": id, "error": line }));
                first_error.get_or_insert(e);
            }
        }
        progress.inc();
    }
    drop(progress);
    let summary = match (created.first(), created.last()) {
        (Some(a), Some(b)) if a != b => format!("created {} devices, {a} … {b}", created.len()),
        (Some(a), _) => format!("created 1 device, {a}"),
        _ => "created no device".to_owned(),
    };
    let summary = if failed.is_empty() {
        summary
    } else {
        format!("{summary}; {} failed", failed.len())
    };
    out.text_or_json(&summary, &json!({ "created": created, "failed": failed }));
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The device as JSON with its keys replaced: listings end up in terminals, logs and CI
/// output, so only `connection-string` and `sas-token` print key material, on request.
fn redacted(d: &Device) -> Result<Value, CliError> {
    let mut v = serde_json::to_value(d)
        .map_err(|e| CliError::Unexpected(format!("cannot show the device: {e}")))?;
    if let Some(Value::Object(keys)) = v.pointer_mut("/authentication/symmetricKey") {
        for k in keys.values_mut().filter(|k| !k.is_null()) {
            *k = Value::from("<redacted>");
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_ids_are_numbered_from_one_and_padded_to_the_count() {
        assert_eq!(
            bulk_ids("s-", 10).collect::<Vec<_>>(),
            [
                "s-01", "s-02", "s-03", "s-04", "s-05", "s-06", "s-07", "s-08", "s-09", "s-10"
            ]
        );
        assert_eq!(bulk_ids("x", 1).collect::<Vec<_>>(), ["x1"]);
    }

    #[test]
    fn keys_are_redacted() {
        let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let d = Device::new(
            "d1",
            Some(SymmetricKey::new(Secret::new(key), Secret::new(key))),
        );
        let v = redacted(&d).ok().unwrap_or_default();
        assert!(!v.to_string().contains(key), "{v}");
        assert_eq!(
            v["authentication"]["symmetricKey"]["primaryKey"],
            "<redacted>"
        );
    }
}
