//! Telemetry throughput through the Event Hub-compatible endpoint: N devices (this crate's
//! `DeviceClient`, MQTT over TLS) each send M messages at once while one `EventReader` reads
//! every partition; reports events per second from the first send to the last event read,
//! and the send rate alone. The emulator runs in-process (the library), so it shares the
//! machine with the clients.
//!
//! `cargo run --release -p iot-benches --bin telemetry -- --devices 1000 --messages 20`

use clap::Parser;
use iot_device::{DeviceClient, DeviceClientOptions, Message};
use iot_hub_emulator::Emulator;
use iot_service::events::{EventReader, EventReaderOptions, Position};
use std::time::{Duration, Instant};

const KEY: &str = "SW9USHViRW11bGF0b3JEZXZlbG9wbWVudERldmljZTE=";

#[derive(Parser, Debug)]
#[command(about = "Telemetry events per second through the Event Hub-compatible endpoint")]
struct Args {
    /// Devices sending.
    #[arg(long, default_value_t = 1000)]
    devices: usize,
    /// Messages per device.
    #[arg(long, default_value_t = 20)]
    messages: usize,
    /// Body size in bytes.
    #[arg(long, default_value_t = 200)]
    body: usize,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    iot_benches::measure::raise_fd_limit();
    let mut b = Emulator::builder();
    for i in 0..args.devices {
        b = b.device(format!("tm-{i}"), Some(iot_common::Secret::new(KEY)));
    }
    let emu = b.start().await?;
    let options = DeviceClientOptions::new().trust_ca_pem(emu.ca_pem())?;
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(100));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..args.devices {
        let cs = emu
            .device_connection_string(&format!("tm-{i}"))
            .ok_or("no device")?;
        let (o, sem) = (options.clone(), sem.clone());
        set.spawn(async move {
            let _p = sem.acquire_owned().await;
            DeviceClient::from_connection_string(&cs, o).await
        });
    }
    let mut devices = Vec::new();
    for d in set.join_all().await {
        devices.push(d?);
    }
    let reader = EventReader::from_connection_string(
        &emu.event_hub_connection_string(),
        EventReaderOptions::new()
            .trust_ca_pem(emu.ca_pem())?
            .prefetch(300),
    )
    .await?;
    let mut events = reader.read(Position::end()).await?;
    let total = args.devices * args.messages;
    let body = "x".repeat(args.body);
    let start = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for d in &devices {
        let (d, n, body) = (d.clone(), args.messages, body.clone());
        senders.spawn(async move {
            for i in 0..n {
                d.send_telemetry(Message::new(body.clone()).property("i", i.to_string()))
                    .await?;
            }
            Ok::<_, iot_device::Error>(())
        });
    }
    let sending = tokio::spawn(async move {
        let mut failed = 0;
        for r in senders.join_all().await {
            failed += usize::from(r.is_err());
        }
        (start.elapsed(), failed)
    });
    let mut read = 0;
    while read < total {
        match tokio::time::timeout(Duration::from_secs(60), events.next_event()).await {
            Ok(Some(Ok(_))) => read += 1,
            Ok(Some(Err(e))) => return Err(e.into()),
            Ok(None) | Err(_) => break,
        }
    }
    let elapsed = start.elapsed();
    let (sent_in, failed) = sending.await?;
    println!(
        "telemetry: {} devices x {} messages ({} B): {} of {} read in {:.2} s = {:.0} events/s through the reader; sent in {:.2} s = {:.0} messages/s acknowledged; {} senders failed",
        args.devices,
        args.messages,
        args.body,
        read,
        total,
        elapsed.as_secs_f64(),
        read as f64 / elapsed.as_secs_f64(),
        sent_in.as_secs_f64(),
        total as f64 / sent_in.as_secs_f64(),
        failed
    );
    events.close().await;
    for d in devices {
        let _ = d.close().await;
    }
    emu.shutdown().await?;
    Ok(())
}
