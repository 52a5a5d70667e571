//! Desired properties: the service sets a configuration, the device applies it and reports
//! back; a change made while the device is offline arrives after it reconnects.
//! `cargo run --example desired_properties`.

use iot_device::{DeviceClient, DeviceClientOptions};
use iot_hub_emulator::Emulator;
use iot_service::{IfMatch, ServiceClient, ServiceClientOptions, TwinPatch};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hub = Emulator::builder().start().await?;
    let device = DeviceClient::from_connection_string(
        &hub.hub().create_device("thermostat")?,
        DeviceClientOptions::new().trust_ca_pem(hub.ca_pem())?,
    )
    .await?;
    let service = ServiceClient::from_connection_string(
        &hub.service_connection_string(),
        ServiceClientOptions::new().trust_ca_pem(hub.ca_pem())?,
    )?;
    let mut updates = device.desired_updates().await?;

    service
        .update_twin(
            "thermostat",
            &TwinPatch::new().desired("targetTemperature", json!(21)),
            IfMatch::Any,
        )
        .await?;
    // The stream starts with the current desired state as `Full`, then patches; read until
    // the new temperature shows up in either.
    let u = loop {
        let u = updates.next().await.ok_or("stream ended")?;
        println!(
            "device: desired v{} ({:?}): {:?}",
            u.version, u.kind, u.properties
        );
        if u.properties.contains_key("targetTemperature") {
            break u;
        }
    };
    let v = device
        .update_reported(&json!({ "targetTemperature": u.properties["targetTemperature"] }))
        .await?;
    println!("device: reported, reported version {v}");

    hub.hub().disconnect("thermostat", None);
    service
        .update_twin(
            "thermostat",
            &TwinPatch::new().desired("targetTemperature", json!(19)),
            IfMatch::Any,
        )
        .await?;
    let u = updates.next().await.ok_or("stream ended")?;
    println!(
        "device: after reconnect, desired v{} ({:?}): {:?}",
        u.version, u.kind, u.properties
    );
    device.close().await?;
    Ok(())
}
