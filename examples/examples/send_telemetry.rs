//! Sends telemetry from the device of `IOTHUB_DEVICE_CONNECTION_STRING` (the emulator's
//! `myDevice` when unset): `COUNT` messages (default 3) `{"n": i}` with message id
//! `{PREFIX}-{i}`, content type `application/json`, encoding `utf-8` and properties
//! `source=rust` and `index={i}`, each acknowledged by the hub.
//! `cargo run --example send_telemetry -- [COUNT] [PREFIX]`; the `monitor` example (or any Event
//! Hubs client) reads them back.

use iot_device::{DeviceClient, Message};
use iot_examples::settings;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let count: u32 = args.next().map_or(Ok(3), |a| a.parse())?;
    let prefix = args.next().unwrap_or_else(|| "rust".to_owned());
    let device = DeviceClient::from_connection_string(
        &settings::device_connection_string(),
        settings::device_options()?,
    )
    .await?;
    for i in 0..count {
        let msg = Message::json(&serde_json::json!({ "n": i }))?
            .message_id(format!("{prefix}-{i}"))
            .content_type("application/json")
            .content_encoding("utf-8")
            .property("source", "rust")
            .property("index", i.to_string());
        device.send_telemetry(msg).await?;
        println!("sent {prefix}-{i}");
    }
    device.close().await?;
    Ok(())
}
