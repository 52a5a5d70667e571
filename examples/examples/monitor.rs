//! Prints device telemetry as it arrives, like `az iot hub monitor-events`: one JSON document
//! per event with its origin, payload, system properties and application properties.
//!
//! `cargo run --example monitor -- [--from-start] [--device ID] [--count N]`
//!
//! Reads `IOTHUB_EVENTHUB_CONNECTION_STRING` (the emulator prints it) or else the service
//! connection string `IOTHUB_CONNECTION_STRING` (the hub redirects to its Event Hub-compatible
//! endpoint), and `IOTHUB_CA_CERT`. Without `--from-start` only new events are shown.

use iot_examples::settings;
use iot_service::events::{EventReader, Position};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut from_start = false;
    let mut device = None;
    let mut count: Option<u64> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--from-start" => from_start = true,
            "--device" => device = args.next(),
            "--count" => count = args.next().map(|n| n.parse()).transpose()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let reader = EventReader::from_connection_string(
        &settings::event_hub_connection_string(),
        settings::event_reader_options()?,
    )
    .await?;
    eprintln!(
        "Monitoring {} ({} partitions); Ctrl-C to stop.",
        reader.event_hub_name(),
        reader.partition_ids().len()
    );
    let start = if from_start {
        Position::beginning()
    } else {
        Position::end()
    };
    let mut events = reader.read(start).await?;
    let mut shown = 0;
    loop {
        let event = tokio::select! {
            e = events.next_event() => match e {
                Some(e) => e?,
                None => break,
            },
            _ = tokio::signal::ctrl_c() => break,
        };
        if device.as_ref().is_some_and(|d| *d != event.device_id) {
            continue;
        }
        let payload = match serde_json::from_slice::<serde_json::Value>(&event.body) {
            Ok(json) => json,
            Err(_) => serde_json::Value::String(String::from_utf8_lossy(&event.body).into_owned()),
        };
        let doc = serde_json::json!({ "event": {
            "origin": event.device_id,
            "module": event.module_id.clone().unwrap_or_default(),
            "payload": payload,
            "enqueuedTime": event.enqueued_time,
            "partition": event.partition,
            "sequenceNumber": event.sequence_number,
            "properties": {
                "system": {
                    "messageId": event.system.message_id,
                    "correlationId": event.system.correlation_id,
                    "contentType": event.system.content_type,
                    "contentEncoding": event.system.content_encoding,
                },
                "application": event.properties.iter().map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str()))).collect::<serde_json::Map<_, _>>(),
            },
        }});
        println!("{}", serde_json::to_string_pretty(&doc)?);
        shown += 1;
        if count.is_some_and(|n| shown >= n) {
            break;
        }
    }
    events.close().await;
    Ok(())
}
