//! The whole tutorial in one process against an in-process emulator: nothing else to run.
//!
//! `cargo run --example getstarted` (or `-- --reboot-delay-ms 2000` for a slower reboot).

use iot_device::{DeviceClient, DeviceClientOptions};
use iot_examples::tutorial;
use iot_hub_emulator::{Emulator, dev_keys};
use iot_service::{ServiceClient, ServiceClientOptions};
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let delay = args
        .iter()
        .position(|a| a == "--reboot-delay-ms")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let hub = Emulator::builder().start().await?;
    println!(
        "emulator: MQTT on {}, HTTPS on {}",
        hub.mqtt_addr(),
        hub.https_addr()
    );

    let device_cs = hub
        .device_connection_string(dev_keys::DEV_DEVICE_ID)
        .ok_or("the development device is missing")?;
    let device = DeviceClient::from_connection_string(
        &device_cs,
        DeviceClientOptions::new().trust_ca_pem(hub.ca_pem())?,
    )
    .await?;
    println!("device: connected as {}", device.device_id());
    tutorial::serve_reboot(&device, Duration::from_millis(delay)).await?;

    let service = ServiceClient::from_connection_string(
        &hub.service_connection_string(),
        ServiceClientOptions::new().trust_ca_pem(hub.ca_pem())?,
    )?;
    let reboot_time = tutorial::reboot_device(&service, device.device_id())
        .await
        .map_err(|e| e.to_string())?;
    println!("done: {} rebooted at {reboot_time}", device.device_id());
    device.close().await?;
    hub.shutdown().await?;
    Ok(())
}
