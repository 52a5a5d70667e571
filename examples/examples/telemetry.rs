//! Telemetry with properties, acknowledged by the hub, and a cloud-to-device message back.
//! Runs against an in-process emulator: `cargo run --example telemetry`.

use iot_device::{DeviceClient, DeviceClientOptions, Message, MessageProperties};
use iot_hub_emulator::Emulator;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hub = Emulator::builder().start().await?;
    let cs = hub.hub().create_device("sensor-1")?;
    let device = DeviceClient::from_connection_string(
        &cs,
        DeviceClientOptions::new().trust_ca_pem(hub.ca_pem())?,
    )
    .await?;
    let mut inbox = device.c2d_messages().await?;
    for i in 0..3 {
        let msg = Message::json(&serde_json::json!({ "temperature": 20.0 + f64::from(i) }))?
            .message_id(format!("reading-{i}"))
            .property("unit", "celsius");
        device.send_telemetry(msg).await?;
        println!("sent reading-{i} (acknowledged by the hub)");
    }
    for r in hub.hub().telemetry(Some("sensor-1")) {
        println!(
            "hub received {:?}: {}",
            r.properties.message_id,
            r.body_str().unwrap_or("(binary)")
        );
    }
    hub.hub().send_c2d(
        "sensor-1",
        "calibrate",
        MessageProperties::new().property("priority", "high"),
    )?;
    if let Some(m) = inbox.next().await {
        println!(
            "device got C2D {:?} with priority {:?}",
            String::from_utf8_lossy(&m.body),
            m.properties.get("priority")
        );
    }
    device.close().await?;
    Ok(())
}
