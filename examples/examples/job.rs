//! A scheduled job: reboot every device whose reported firmware is older than 2.0.
//! `cargo run --example job`.

use iot_device::{DeviceClient, DeviceClientOptions, MethodError};
use iot_hub_emulator::Emulator;
use iot_service::{
    DirectMethodRequest, JobSchedule, JobStatus, ServiceClient, ServiceClientOptions,
};
use serde_json::json;
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hub = Emulator::builder().start().await?;
    let mut devices = Vec::new();
    for (id, fw) in [("old-1", 1.2), ("old-2", 1.9), ("new-1", 2.1)] {
        let d = DeviceClient::from_connection_string(
            &hub.hub().create_device(id)?,
            DeviceClientOptions::new().trust_ca_pem(hub.ca_pem())?,
        )
        .await?;
        d.update_reported(&json!({ "firmware": fw })).await?;
        d.on_method("reboot", move |_: serde_json::Value| async move {
            println!("{id}: rebooting");
            Ok::<_, MethodError>(json!("rebooting"))
        })
        .await?;
        devices.push(d);
    }
    let service = ServiceClient::from_connection_string(
        &hub.service_connection_string(),
        ServiceClientOptions::new().trust_ca_pem(hub.ca_pem())?,
    )?;
    service
        .schedule_method_job(
            "reboot-old",
            "properties.reported.firmware < 2.0",
            &DirectMethodRequest::new("reboot"),
            JobSchedule::default(),
        )
        .await?;
    let job = loop {
        let j = service.get_job("reboot-old").await?;
        if !matches!(j.status, JobStatus::Scheduled | JobStatus::Running) {
            break j;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("job {:?}: {:?}", job.status, job.device_job_statistics);
    for row in service
        .query_raw("SELECT * FROM devices.jobs")
        .collect_all()
        .await?
    {
        println!("{} -> {}", row["deviceId"], row["status"]);
    }
    Ok(())
}
