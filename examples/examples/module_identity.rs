//! A module identity: its own connection, methods and twin. `cargo run --example module_identity`.

use iot_device::{DeviceClient, DeviceClientOptions, MethodError};
use iot_hub_emulator::Emulator;
use iot_service::{Device, DirectMethodRequest, Module, ServiceClient, ServiceClientOptions};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hub = Emulator::builder().start().await?;
    let service = ServiceClient::from_connection_string(
        &hub.service_connection_string(),
        ServiceClientOptions::new().trust_ca_pem(hub.ca_pem())?,
    )?;
    service.create_device(&Device::new("gateway", None)).await?;
    service
        .create_module(&Module::new("gateway", "filter", None))
        .await?;
    let cs = hub
        .module_connection_string("gateway", "filter")
        .ok_or("module missing")?;
    let module = DeviceClient::from_connection_string(
        &cs,
        DeviceClientOptions::new().trust_ca_pem(hub.ca_pem())?,
    )
    .await?;
    module
        .on_method("setThreshold", |v: serde_json::Value| async move {
            Ok::<_, MethodError>(json!({ "threshold": v }))
        })
        .await?;
    module
        .update_reported(&json!({ "status": "running" }))
        .await?;
    let r = service
        .invoke_module_method(
            "gateway",
            "filter",
            &DirectMethodRequest::new("setThreshold").payload(&42)?,
        )
        .await?;
    println!("module answered {}: {}", r.status, r.payload);
    let twin = service.get_module_twin("gateway", "filter").await?;
    println!(
        "module twin reported: {:?}",
        twin.properties.reported.properties
    );
    module.close().await?;
    Ok(())
}
