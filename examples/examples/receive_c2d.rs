//! Receives cloud-to-device messages on the device of `IOTHUB_DEVICE_CONNECTION_STRING` (the
//! emulator's `myDevice` when unset) and prints each as one JSON line (body as text, message id,
//! correlation id, application properties), acknowledging it to the hub; stops after `COUNT`
//! messages (default 1). Prints `ready` once subscribed, so a script can send then.
//! `cargo run --example receive_c2d -- [COUNT]`; the `c2d` example (or any service SDK) sends.

use iot_device::DeviceClient;
use iot_examples::settings;
use std::collections::BTreeMap;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let count: usize = std::env::args().nth(1).map_or(Ok(1), |a| a.parse())?;
    let device = DeviceClient::from_connection_string(
        &settings::device_connection_string(),
        settings::device_options()?,
    )
    .await?;
    let mut inbox = device.c2d_messages().await?;
    println!("ready");
    for _ in 0..count {
        let Some(message) = inbox.next().await else {
            break;
        };
        let properties: BTreeMap<_, _> = message.properties.custom.iter().cloned().collect();
        let line = serde_json::json!({
            "body": String::from_utf8_lossy(&message.body),
            "message_id": message.properties.message_id,
            "correlation_id": message.properties.correlation_id,
            "properties": properties,
        });
        println!("{line}");
    }
    drop(inbox);
    device.close().await?;
    Ok(())
}
