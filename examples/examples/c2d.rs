//! Cloud-to-device messages with feedback: the service sends a message asking for full
//! feedback, the device receives it (taking it from the stream completes it), and the service
//! reads the `Success` record from the feedback stream and completes the batch.
//!
//! `cargo run --example c2d` runs against an embedded emulator. With `IOTHUB_CONNECTION_STRING`
//! and `IOTHUB_DEVICE_CONNECTION_STRING` set (and `IOTHUB_CA_CERT` for a standalone emulator)
//! it runs against that hub instead, on its AMQP port 5671.

use iot_device::DeviceClient;
use iot_examples::settings;
use iot_hub_emulator::{Emulator, RunningEmulator};
use iot_service::{C2dMessage, FeedbackRequest, ServiceClient};
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Embedded only when no hub is configured; it stops when `_embedded` is dropped.
    let embedded: Option<RunningEmulator> = if std::env::var("IOTHUB_CONNECTION_STRING").is_ok() {
        None
    } else {
        Some(
            Emulator::builder()
                .mqtt_port(0)
                .https_port(0)
                .amqp_port(0)
                .start()
                .await?,
        )
    };
    let (service, device, device_id) = match &embedded {
        Some(hub) => {
            let id = "c2d-example";
            let service = ServiceClient::from_connection_string(
                &hub.service_connection_string(),
                iot_service::ServiceClientOptions::new()
                    .trust_ca_pem(hub.ca_pem())?
                    .amqp_port(hub.amqp_addr().port()),
            )?;
            let device = DeviceClient::from_connection_string(
                &hub.hub().create_device(id)?,
                iot_device::DeviceClientOptions::new().trust_ca_pem(hub.ca_pem())?,
            )
            .await?;
            (service, device, id.to_owned())
        }
        None => {
            let service = ServiceClient::from_connection_string(
                &settings::service_connection_string(),
                settings::service_options()?,
            )?;
            let device = DeviceClient::from_connection_string(
                &settings::device_connection_string(),
                settings::device_options()?,
            )
            .await?;
            (service, device, settings::device_id())
        }
    };
    let mut inbox = device.c2d_messages().await?;
    let mut feedback = service.feedback().await?;

    let id = format!("c2d-example-{}", std::process::id());
    service
        .send_c2d(
            &device_id,
            C2dMessage::new("turn the fan on")
                .message_id(&id)
                .content_type("text/plain")
                .property("command", "fan")
                .feedback(FeedbackRequest::Full),
        )
        .await?;
    println!("service: sent {id} to {device_id}");

    let wait = Duration::from_secs(60);
    let msg = tokio::time::timeout(wait, inbox.next())
        .await?
        .ok_or("the device's stream ended")?;
    println!(
        "device: received {:?} (id {:?}, properties {:?})",
        String::from_utf8_lossy(&msg.body),
        msg.properties.message_id,
        msg.properties.custom
    );

    // The real hub batches feedback for up to a minute; other records may come first.
    loop {
        let batch = tokio::time::timeout(wait * 2, feedback.next())
            .await?
            .ok_or("the feedback stream ended")??;
        let mine = batch.records().iter().any(|r| r.original_message_id == id);
        for r in batch.records() {
            println!(
                "service: feedback for {}: {:?} ({})",
                r.original_message_id, r.status, r.description
            );
        }
        batch.complete().await?;
        if mine {
            break;
        }
    }
    device.close().await?;
    Ok(())
}
