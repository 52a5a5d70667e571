//! The soak test program: `cargo run --release -p iot-benches --bin soak -- --devices 50 --seconds 120`.
//! Exits 1 when anything was lost.

use clap::Parser;
use iot_benches::soak::{SoakConfig, run};
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(about = "Soak test: load and faults, then the books are checked")]
struct Args {
    /// Devices.
    #[arg(long, default_value_t = 50)]
    devices: usize,
    /// Seconds of load and faults.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Seconds between two faults.
    #[arg(long, default_value_t = 3)]
    fault_every: u64,
    /// Concurrent method callers.
    #[arg(long, default_value_t = 16)]
    callers: usize,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let a = Args::parse();
    let report = run(SoakConfig {
        devices: a.devices,
        duration: Duration::from_secs(a.seconds),
        fault_every: Duration::from_secs(a.fault_every),
        callers: a.callers,
    })
    .await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    println!(
        "lost = {}, memory stable = {}",
        report.lost(),
        report.memory_stable()
    );
    if report.lost() > 0 || !report.memory_stable() {
        std::process::exit(1);
    }
    Ok(())
}
