//! Start-up time and memory of the emulator with a large `--state`: the first start imports
//! N devices from a seed file into a fresh state directory, the second start (no seed) reads
//! them back from `state.db`; both are timed from spawn to "listening", and the emulator's RSS
//! is read once it answers.
//!
//! `cargo run --release -p iot-benches --bin state_startup -- --devices 100000`

use clap::Parser;
use iot_benches::emulator::EmulatorProcess;
use iot_benches::measure;
use serde_json::json;
use std::time::Instant;

#[derive(Parser, Debug)]
#[command(about = "Emulator start-up time and RSS with a large --state")]
struct Args {
    /// Devices in the state.
    #[arg(long, default_value_t = 100_000)]
    devices: usize,
    /// The state directory (emptied first).
    #[arg(long, default_value = "target/bench-state")]
    state: std::path::PathBuf,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let _ = std::fs::remove_dir_all(&args.state);
    let key = "SW9USHViRW11bGF0b3JEZXZlbG9wbWVudERldmljZTE=";
    let devices: Vec<_> = (0..args.devices)
        .map(|i| json!({ "deviceId": format!("d-{i}"), "primaryKey": key }))
        .collect();
    let seed = json!({ "devices": devices });
    // Make sure the binary is built before anything is timed.
    iot_benches::emulator::emulator_binary()?;
    let t = Instant::now();
    let emu = EmulatorProcess::spawn_with(Some(&seed), 0, Some(&args.state)).await?;
    let import_s = t.elapsed().as_secs_f64();
    let import_rss = measure::rss_kb(emu.pid());
    drop(emu);
    // Let the killed child go before the next one opens the same database.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let db = std::fs::metadata(args.state.join("state.db"))
        .map(|m| m.len())
        .unwrap_or(0);
    let t = Instant::now();
    let emu = EmulatorProcess::spawn_with(None, 0, Some(&args.state)).await?;
    let start_s = t.elapsed().as_secs_f64();
    let rss = measure::rss_kb(emu.pid());
    println!(
        "state with {} devices: first start (import from seed) {:.2} s, RSS {} MB; restart from state.db ({} MB) {:.2} s, RSS {} MB",
        args.devices,
        import_s,
        import_rss / 1024,
        db / (1024 * 1024),
        start_s,
        rss / 1024
    );
    Ok(())
}
