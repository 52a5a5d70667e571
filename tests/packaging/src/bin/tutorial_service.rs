//! The tutorial's service half as a user writes it against the published crates: invoke
//! `rebootDevice`, then read `rebootTime` from the twin and from a query.
//!
//! Environment: `IOTHUB_CONNECTION_STRING` (or `IOTHUB_HOST_NAME` and `IOTHUB_SERVICE_KEY` for
//! the `iothubowner` policy), `IOTHUB_DEVICE_ID`, optional `IOTHUB_CA_CERT`.

use iot_service::{
    Backoff, DirectMethodRequest, RetryOptions, Secret, ServiceClient, ServiceClientOptions,
    ServiceConnectionString,
};
use std::time::Duration;

fn connection_string() -> Result<ServiceConnectionString, Box<dyn std::error::Error>> {
    if let Ok(cs) = std::env::var("IOTHUB_CONNECTION_STRING") {
        return Ok(cs.parse()?);
    }
    Ok(ServiceConnectionString::new(
        std::env::var("IOTHUB_HOST_NAME")?,
        "iothubowner",
        Secret::new(std::env::var("IOTHUB_SERVICE_KEY")?),
    ))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device_id = std::env::var("IOTHUB_DEVICE_ID").unwrap_or_else(|_| "myDevice".into());
    let mut options = ServiceClientOptions::new().retry(RetryOptions {
        max_retries: 3,
        backoff: Backoff::new(
            Duration::from_millis(200),
            Duration::from_secs(5),
            Duration::from_millis(100),
        ),
        max_elapsed: Duration::from_secs(30),
    });
    if let Ok(ca) = std::env::var("IOTHUB_CA_CERT") {
        options = options.trust_ca_file(ca)?;
    }
    let service = ServiceClient::new(connection_string()?, options)?;
    let request = DirectMethodRequest::new("rebootDevice")
        .payload(&serde_json::json!({ "delay": 1 }))?
        .response_timeout(Duration::from_secs(30));
    let answer = service.invoke_method(&device_id, &request).await?;
    println!("device answered {}: {}", answer.status, answer.payload);
    let twin = service.get_twin(&device_id).await?;
    let reboot_time: Option<u64> = twin.reported("rebootTime").transpose()?;
    println!("rebootTime from the twin: {reboot_time:?}");
    let mut rows = service
        .query("SELECT * FROM devices WHERE IS_DEFINED(properties.reported.rebootTime)");
    while let Some(twin) = rows.next().await {
        println!("{} has rebooted", twin?.device_id);
    }
    Ok(())
}
