//! The tutorial's device half as a user writes it against the published crates: a
//! `rebootDevice` method that reports `rebootTime`, then waits for Ctrl-C.
//!
//! Environment: `IOTHUB_DEVICE_CONNECTION_STRING` (or `IOTHUB_HOST_NAME`, `IOTHUB_DEVICE_ID`,
//! `IOTHUB_DEVICE_KEY` to build one), optional `IOTHUB_CA_CERT` (the emulator's CA file).

use iot_device::{
    Backoff, DeviceClient, DeviceClientOptions, DeviceConnectionString, MethodError, Secret,
};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn connection_string() -> Result<DeviceConnectionString, Box<dyn std::error::Error>> {
    if let Ok(cs) = std::env::var("IOTHUB_DEVICE_CONNECTION_STRING") {
        return Ok(cs.parse()?);
    }
    Ok(DeviceConnectionString::with_key(
        std::env::var("IOTHUB_HOST_NAME")?,
        std::env::var("IOTHUB_DEVICE_ID")?,
        Secret::new(std::env::var("IOTHUB_DEVICE_KEY")?),
    ))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cs = connection_string()?;
    let mut options = DeviceClientOptions::new()
        .backoff(Backoff::new(
            Duration::from_secs(1),
            Duration::from_secs(30),
            Duration::from_secs(1),
        ))
        .retry_initial_connect(true);
    if let Ok(ca) = std::env::var("IOTHUB_CA_CERT") {
        options = options.trust_ca_file(ca)?;
    }
    let client = DeviceClient::connect(cs, options).await?;
    client
        .on_method_with_client(
            "rebootDevice",
            |client: DeviceClient, _: serde_json::Value| async move {
                let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
                let version = client
                    .update_reported(&serde_json::json!({ "rebootTime": now }))
                    .await?;
                Ok::<_, MethodError>(serde_json::json!({ "reportedVersion": version }))
            },
        )
        .await?;
    println!("{} is waiting for rebootDevice", client.device_id());
    tokio::signal::ctrl_c().await?;
    client.close().await?;
    Ok(())
}
