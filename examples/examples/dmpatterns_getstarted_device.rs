//! The tutorial's device app: connects, answers `rebootDevice` (simulated reboot, reports
//! `rebootTime`, replies 200), answers other methods 404, runs until Ctrl-C.
//!
//! `cargo run -p iot-examples --example dmpatterns_getstarted_device`
//! Environment: see `iot_examples::settings` (defaults: the local emulator's `myDevice`).
//! `REBOOT_DELAY_MS` sets how long the simulated reboot takes (default 3000).

use iot_device::DeviceClient;
use iot_examples::{settings, tutorial};
use std::time::Duration;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let delay = std::env::var("REBOOT_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let run = async {
        let client = DeviceClient::from_connection_string(
            &settings::device_connection_string(),
            settings::device_options()?,
        )
        .await?;
        println!(
            "device: connected as {}; waiting for rebootDevice (Ctrl-C to stop)",
            client.device_id()
        );
        tutorial::serve_reboot(&client, Duration::from_millis(delay)).await?;
        let _ = tokio::signal::ctrl_c().await;
        println!("device: shutting down");
        client.close().await
    };
    match run.await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("device: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
