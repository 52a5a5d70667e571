//! End-to-end benchmark: method round trip, method throughput, reported-property patches,
//! cloud-to-device messages (AMQP send to MQTT delivery), fleet scale and memory, against the emulator running as a child process; optionally the
//! official Python SDKs through the same emulator.
//!
//! `cargo run --release -p iot-benches --bin e2e -- --help`

use clap::Parser;
use iot_benches::emulator::EmulatorProcess;
use iot_benches::measure;
use iot_benches::stats::Latency;
use iot_device::{DeviceClient, DeviceClientOptions, MethodError};
use iot_service::{C2dMessage, DirectMethodRequest, ServiceClient, ServiceClientOptions};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const KEY: &str = "SW9USHViRW11bGF0b3JEZXZlbG9wbWVudERldmljZTE=";
/// The size of the floor's request and answer: about a direct method's JSON payload.
const FLOOR_PAYLOAD: usize = 200;

#[derive(Parser, Debug)]
#[command(about = "End-to-end benchmarks of azure-iot-rs against the emulator")]
struct Args {
    /// Scenarios to run: floor, roundtrip, reported, throughput, creates, c2d, fleet, query
    /// (comma-separated) or all. The floor (a bare TLS round trip) is measured whenever a
    /// round-trip figure is, so that each is also reported as a multiple of two floors.
    #[arg(long, default_value = "all")]
    scenarios: String,
    /// Sequential calls for the round trip and sequential patches.
    #[arg(long, default_value_t = 2000)]
    calls: usize,
    /// Total calls for the throughput scenarios.
    #[arg(long, default_value_t = 20_000)]
    total: usize,
    /// Concurrent callers.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Devices the throughput scenarios spread over.
    #[arg(long, default_value_t = 1000)]
    devices: usize,
    /// Device clients in the fleet scenario.
    #[arg(long, default_value_t = 10_000)]
    fleet: usize,
    /// Also measure the official Python SDKs (needs port 8883 free for the emulator).
    #[arg(long)]
    python: bool,
    /// Python clients in the Python fleet measurement.
    #[arg(long, default_value_t = 200)]
    python_fleet: usize,
    /// The Python interpreter with azure-iot-device and azure-iot-hub installed.
    #[arg(long, default_value = "target/sdk-venv/bin/python")]
    python_bin: String,
    /// Create that virtualenv and install the pinned SDKs (scripts/official-sdk/requirements.txt)
    /// first.
    #[arg(long)]
    install_python: bool,
    /// Keep the emulator's state in this directory (`--state`), created fresh for the run;
    /// without it the emulator keeps everything in memory.
    #[arg(long, value_name = "DIR")]
    state: Option<std::path::PathBuf>,
    /// Where to write the results as JSON.
    #[arg(long, default_value = "target/bench-results.json")]
    json: String,
}

struct Bench {
    emu: EmulatorProcess,
    service: ServiceClient,
    device_options: DeviceClientOptions,
}

impl Bench {
    async fn device(&self, id: &str) -> iot_device::Result<DeviceClient> {
        let cs = self.emu.device_connection_string(id, KEY);
        DeviceClient::from_connection_string(&cs, self.device_options.clone()).await
    }

    async fn echo_device(&self, id: &str) -> iot_device::Result<DeviceClient> {
        let d = self.device(id).await?;
        d.on_method("echo", |v: Value| async move { Ok::<_, MethodError>(v) })
            .await?;
        Ok(d)
    }

    async fn connect_many(
        &self,
        prefix: &str,
        n: usize,
        parallel: usize,
        echo: bool,
    ) -> Vec<DeviceClient> {
        let sem = Arc::new(tokio::sync::Semaphore::new(parallel));
        let mut set = tokio::task::JoinSet::new();
        for i in 0..n {
            let sem = sem.clone();
            let id = format!("{prefix}-{i}");
            let cs = self.emu.device_connection_string(&id, KEY);
            let opts = self.device_options.clone();
            set.spawn(async move {
                let _permit = sem.acquire_owned().await;
                for attempt in 0..5 {
                    match DeviceClient::from_connection_string(&cs, opts.clone()).await {
                        Ok(d) => {
                            if echo {
                                d.on_method(
                                    "echo",
                                    |v: Value| async move { Ok::<_, MethodError>(v) },
                                )
                                .await
                                .ok()?;
                            }
                            return Some((i, d));
                        }
                        Err(e) if attempt < 4 => {
                            eprintln!("{id}: {e}; retrying");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        Err(e) => eprintln!("{id}: {e}"),
                    }
                }
                None
            });
        }
        let mut out: Vec<(usize, DeviceClient)> =
            set.join_all().await.into_iter().flatten().collect();
        out.sort_by_key(|(i, _)| *i);
        out.into_iter().map(|(_, d)| d).collect()
    }
}

fn seed(args: &Args) -> Value {
    let mut devices = vec![json!({"deviceId": "rt-0", "primaryKey": KEY})];
    for prefix_n in [
        ("tp", args.devices),
        ("c2d", args.devices.min(100)),
        ("fleet", args.fleet.max(args.python_fleet)),
    ] {
        for i in 0..prefix_n.1 {
            devices.push(json!({"deviceId": format!("{}-{i}", prefix_n.0), "primaryKey": KEY}));
        }
    }
    json!({ "devices": devices })
}

async fn roundtrip(b: &Bench, n: usize) -> Result<Value, Box<dyn std::error::Error>> {
    let _d = b.echo_device("rt-0").await?;
    let req = |i: usize| DirectMethodRequest::new("echo").payload_json(json!({ "i": i }));
    for i in 0..100 {
        b.service.invoke_method("rt-0", &req(i)).await?;
    }
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        let r = b.service.invoke_method("rt-0", &req(i)).await?;
        samples.push(t.elapsed());
        assert_eq!(r.status, 200);
    }
    let l = Latency::of(&mut samples);
    println!(
        "method round trip, sequential, TLS: {} calls  p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
        l.count, l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms
    );
    Ok(json!(l))
}

/// Twice the floor's median: what a direct method (two round trips) cannot beat.
fn two_floors(results: &serde_json::Map<String, Value>) -> Option<f64> {
    results.get("floor")?["two_floors_ms"].as_f64()
}

/// `latency`'s percentiles as multiples of `two_floors_ms`, printed and returned.
fn versus_floor(what: &str, latency: &Value, two_floors_ms: f64) -> Value {
    let x = |k: &str| latency[k].as_f64().unwrap_or(f64::NAN) / two_floors_ms;
    println!(
        "{what} as multiples of two floors ({two_floors_ms:.3} ms): p50 {:.2}x  p90 {:.2}x  p99 {:.2}x",
        x("p50_ms"),
        x("p90_ms"),
        x("p99_ms")
    );
    json!({ "p50": x("p50_ms"), "p90": x("p90_ms"), "p99": x("p99_ms") })
}

async fn floor(n: usize) -> Result<Value, Box<dyn std::error::Error>> {
    let l = iot_benches::floor::tls_round_trip(n, FLOOR_PAYLOAD)
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "floor: bare TLS round trip, {FLOOR_PAYLOAD} bytes each way, loopback, one process: {} trips  p50 {:.3} ms  p99 {:.3} ms; two floors {:.3} ms",
        l.count,
        l.p50_ms,
        l.p99_ms,
        2.0 * l.p50_ms
    );
    Ok(
        json!({ "tls_round_trip": l, "payload_bytes": FLOOR_PAYLOAD, "two_floors_ms": 2.0 * l.p50_ms }),
    )
}

async fn concurrent<F, Fut>(total: usize, concurrency: usize, op: F) -> (Latency, f64, usize)
where
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (next, op) = (next.clone(), op.clone());
        set.spawn(async move {
            let mut samples = Vec::new();
            let mut failures = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return (samples, failures);
                }
                let t = Instant::now();
                if op(i).await {
                    samples.push(t.elapsed());
                } else {
                    failures += 1;
                }
            }
        });
    }
    let mut all = Vec::with_capacity(total);
    let mut failures = 0;
    for (s, f) in set.join_all().await {
        all.extend(s);
        failures += f;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let ok = all.len();
    (Latency::of(&mut all), ok as f64 / elapsed, failures)
}

async fn throughput(b: &Bench, args: &Args) -> Result<Value, Box<dyn std::error::Error>> {
    let t = Instant::now();
    let devices = b.connect_many("tp", args.devices, 100, true).await;
    println!(
        "throughput setup: {} devices connected in {:.1} s",
        devices.len(),
        t.elapsed().as_secs_f64()
    );
    let svc = b.service.clone();
    let d = devices.len();
    let cpu0 = (
        measure::cpu_seconds(None),
        measure::cpu_seconds(b.emu.pid()),
    );
    let (l, rate, failures) = concurrent(args.total, args.concurrency, move |i| {
        let svc = svc.clone();
        async move {
            let req = DirectMethodRequest::new("echo").payload_json(json!({ "i": i }));
            svc.invoke_method(&format!("tp-{}", i % d), &req)
                .await
                .is_ok()
        }
    })
    .await;
    let per_call_us = |before: f64, after: f64| (after - before) * 1e6 / args.total as f64;
    let cpu_clients = per_call_us(cpu0.0, measure::cpu_seconds(None));
    let cpu_emulator = per_call_us(cpu0.1, measure::cpu_seconds(b.emu.pid()));
    println!(
        "method throughput: {} calls, {} callers over {} devices: {:.0} calls/s  p50 {:.2} ms  p99 {:.2} ms  failures {}; CPU per call: clients {:.0} µs, emulator {:.0} µs",
        args.total,
        args.concurrency,
        d,
        rate,
        l.p50_ms,
        l.p99_ms,
        failures,
        cpu_clients,
        cpu_emulator
    );
    let devices = Arc::new(devices);
    let ds = devices.clone();
    let (pl, prate, pfail) = concurrent(args.total, args.concurrency, move |i| {
        let ds = ds.clone();
        async move {
            ds[i % ds.len()]
                .update_reported(&json!({ "n": i }))
                .await
                .is_ok()
        }
    })
    .await;
    println!(
        "reported patches, concurrent: {} patches, {} callers over {} devices: {:.0} patches/s  p50 {:.2} ms  p99 {:.2} ms  failures {}",
        args.total, args.concurrency, d, prate, pl.p50_ms, pl.p99_ms, pfail
    );
    Ok(json!({
        "methods": { "calls": args.total, "concurrency": args.concurrency, "devices": d, "calls_per_s": rate, "latency": l, "failures": failures,
                     "cpu_us_per_call": { "clients": cpu_clients, "emulator": cpu_emulator } },
        "reported": { "patches": args.total, "concurrency": args.concurrency, "devices": d, "patches_per_s": prate, "latency": pl, "failures": pfail },
    }))
}

/// Cloud-to-device messages end to end: concurrent `send_c2d` calls (one AMQP connection)
/// spread over connected devices that take them from their streams (MQTT PUBACK). Messages
/// per second count from the first send to the last message received by a device.
async fn c2d(b: &Bench, args: &Args) -> Result<Value, Box<dyn std::error::Error>> {
    let n_devices = args.devices.min(100);
    let devices = b.connect_many("c2d", n_devices, 100, false).await;
    let d = devices.len();
    let received = Arc::new(AtomicUsize::new(0));
    let all_in = Arc::new(tokio::sync::Notify::new());
    let total = args.total;
    let mut readers = tokio::task::JoinSet::new();
    for dev in &devices {
        let mut inbox = dev.c2d_messages().await?;
        let (received, all_in) = (received.clone(), all_in.clone());
        readers.spawn(async move {
            while inbox.next().await.is_some() {
                if received.fetch_add(1, Ordering::Relaxed) + 1 == total {
                    all_in.notify_one();
                }
            }
        });
    }
    // One send first, so that the AMQP connection's opening is not in the figures.
    b.service
        .send_c2d("c2d-0", C2dMessage::new("warm-up"))
        .await?;
    while received.load(Ordering::Relaxed) < 1 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    received.store(0, Ordering::Relaxed);
    let started = Instant::now();
    let svc = b.service.clone();
    let (l, send_rate, failures) = concurrent(total, args.concurrency, move |i| {
        let svc = svc.clone();
        async move {
            svc.send_c2d(&format!("c2d-{}", i % d), C2dMessage::new(format!("m{i}")))
                .await
                .is_ok()
        }
    })
    .await;
    let expected = total - failures;
    let complete = if received.load(Ordering::Relaxed) >= expected {
        true
    } else {
        tokio::time::timeout(Duration::from_secs(120), all_in.notified())
            .await
            .is_ok()
    };
    let elapsed = started.elapsed().as_secs_f64();
    let got = received.load(Ordering::Relaxed);
    let e2e_rate = got as f64 / elapsed;
    readers.abort_all();
    println!(
        "c2d: {total} messages, {} senders over {d} devices: sends {send_rate:.0}/s  p50 {:.2} ms  p99 {:.2} ms  failures {failures}; end to end {e2e_rate:.0} messages/s ({got} received{})",
        args.concurrency,
        l.p50_ms,
        l.p99_ms,
        if complete { "" } else { ", not all" }
    );
    Ok(json!({
        "messages": total, "concurrency": args.concurrency, "devices": d,
        "sends_per_s": send_rate, "send_latency": l, "failures": failures,
        "received": got, "end_to_end_messages_per_s": e2e_rate,
    }))
}

/// Registry creates from concurrent service callers: each a new device, answered once stored.
async fn creates(b: &Bench, args: &Args) -> Result<Value, Box<dyn std::error::Error>> {
    let svc = b.service.clone();
    let run = std::process::id();
    let (l, rate, failures) = concurrent(args.total, args.concurrency, move |i| {
        let svc = svc.clone();
        async move {
            let d = iot_service::Device::new(format!("create-{run}-{i}"), None);
            svc.create_device(&d).await.is_ok()
        }
    })
    .await;
    println!(
        "registry creates, concurrent: {} creates, {} callers: {:.0} creates/s  p50 {:.2} ms  p99 {:.2} ms  failures {}",
        args.total, args.concurrency, rate, l.p50_ms, l.p99_ms, failures
    );
    Ok(
        json!({ "creates": args.total, "concurrency": args.concurrency, "creates_per_s": rate, "latency": l, "failures": failures }),
    )
}

async fn reported_sequential(b: &Bench, n: usize) -> Result<Value, Box<dyn std::error::Error>> {
    let d = b.device("rt-0").await?;
    for i in 0..50 {
        d.update_reported(&json!({ "warm": i })).await?;
    }
    let mut samples = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        d.update_reported(&json!({ "n": i, "status": "ok" }))
            .await?;
        samples.push(t.elapsed());
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let l = Latency::of(&mut samples);
    println!(
        "reported patch, sequential: {} patches  {:.0} patches/s  p50 {:.3} ms  p99 {:.3} ms",
        n, rate, l.p50_ms, l.p99_ms
    );
    Ok(json!({ "patches_per_s": rate, "latency": l }))
}

async fn fleet(b: &Bench, k: usize) -> Result<Value, Box<dyn std::error::Error>> {
    let pid = b.emu.pid();
    let (rss0, threads0) = (measure::rss_kb(None), measure::threads(None));
    let emu_rss0 = measure::rss_kb(pid);
    let tasks0 = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let t = Instant::now();
    let devices = b.connect_many("fleet", k, 256, false).await;
    let connect_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(256));
    let mut set = tokio::task::JoinSet::new();
    for d in &devices {
        let (d, sem) = (d.clone(), sem.clone());
        set.spawn(async move {
            let _p = sem.acquire_owned().await;
            d.on_method("echo", |v: Value| async move { Ok::<_, MethodError>(v) })
                .await
                .is_ok()
        });
    }
    let subscribed = set.join_all().await.into_iter().filter(|ok| *ok).count();
    let subscribe_s = t.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let n = devices.len().max(1) as f64;
    let rss_per_client = (measure::rss_kb(None).saturating_sub(rss0)) as f64 / n;
    let threads = measure::threads(None).saturating_sub(threads0);
    let tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
        .saturating_sub(tasks0);
    let emu_per_device = (measure::rss_kb(pid).saturating_sub(emu_rss0)) as f64 / n;
    println!(
        "fleet: {} of {} clients connected in {:.1} s, methods subscribed in {:.1} s; {:.1} KB RSS per client, {} tasks and {} extra threads for all; emulator {:.1} KB per device",
        devices.len(),
        k,
        connect_s,
        subscribe_s,
        rss_per_client,
        tasks,
        threads,
        emu_per_device
    );
    let svc = b.service.clone();
    let count = devices.len();
    let (l, rate, failures) = concurrent(count, 64, move |i| {
        let svc = svc.clone();
        async move {
            svc.invoke_method(&format!("fleet-{i}"), &DirectMethodRequest::new("echo"))
                .await
                .is_ok_and(|r| r.status == 200)
        }
    })
    .await;
    println!(
        "fleet: one method call to each of {} devices: {} answered, {} failed, {:.0} calls/s, p99 {:.2} ms",
        count, l.count, failures, rate, l.p99_ms
    );
    Ok(json!({
        "clients": k, "connected": devices.len(), "connect_all_s": connect_s, "subscribe_all_s": subscribe_s,
        "rss_per_client_kb": rss_per_client, "tasks_for_all": tasks, "extra_threads_for_all": threads,
        "emulator_rss_per_device_kb": emu_per_device, "subscribed": subscribed,
        "method_to_each": { "answered": l.count, "failed": failures, "calls_per_s": rate, "latency": l },
    }))
}

async fn query(b: &Bench, k: usize) -> Result<Value, Box<dyn std::error::Error>> {
    let mut out = serde_json::Map::new();
    for (name, sql) in [
        (
            "point",
            format!("SELECT * FROM devices WHERE deviceId = 'fleet-{}'", k / 2),
        ),
        // The same point query forced to scan (the planner cannot plan `1 = 0`, so the OR is
        // not planned): what every point query cost before the emulator's indexes.
        (
            "point_scan",
            format!(
                "SELECT * FROM devices WHERE deviceId = 'fleet-{}' OR 1 = 0",
                k / 2
            ),
        ),
        (
            "count",
            "SELECT COUNT() AS n FROM devices WHERE STARTSWITH(deviceId, 'fleet-')".to_owned(),
        ),
        (
            "group_by",
            "SELECT status, COUNT() AS n FROM devices GROUP BY status".to_owned(),
        ),
    ] {
        let mut samples = Vec::new();
        for _ in 0..50 {
            let t = Instant::now();
            let rows = b.service.query_raw(sql.clone()).collect_all().await?;
            samples.push(t.elapsed());
            assert!(!rows.is_empty());
        }
        let l = Latency::of(&mut samples);
        println!(
            "query over {k}+ twins via REST, {name}: p50 {:.2} ms  p99 {:.2} ms",
            l.p50_ms, l.p99_ms
        );
        out.insert(name.into(), json!(l));
    }
    let t = Instant::now();
    let all = b
        .service
        .query("SELECT * FROM devices WHERE STARTSWITH(deviceId, 'fleet-')")
        .page_size(1000)
        .collect_all()
        .await?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "query: all {} twins in pages of 1000 in {:.0} ms",
        all.len(),
        secs * 1000.0
    );
    out.insert(
        "all_twins_paged".into(),
        json!({ "twins": all.len(), "page_size": 1000, "seconds": secs }),
    );
    Ok(Value::Object(out))
}

async fn python(
    b: &Bench,
    args: &Args,
    mode: &str,
    n: usize,
) -> Result<Value, Box<dyn std::error::Error>> {
    let out = tokio::process::Command::new(&args.python_bin)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/python/bench.py"))
        .args([mode, &n.to_string()])
        .env(
            "IOTHUB_CONNECTION_STRING",
            &b.emu.env["IOTHUB_CONNECTION_STRING"],
        )
        .env("IOTHUB_CA_CERT", &b.emu.env["IOTHUB_CA_CERT"])
        .env("REQUESTS_CA_BUNDLE", &b.emu.env["IOTHUB_CA_CERT"])
        .env("BENCH_DEVICE_KEY", KEY)
        .output()
        .await?;
    if !out.status.success() {
        return Err(format!(
            "python {mode} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().ok_or("python printed nothing")?;
    Ok(serde_json::from_str(last)?)
}

/// `python3 -m venv` next to `python_bin` and `pip install -r requirements.txt`.
fn install_python(python_bin: &str) -> Result<(), Box<dyn std::error::Error>> {
    let venv = std::path::Path::new(python_bin)
        .parent()
        .and_then(|bin| bin.parent())
        .ok_or("--python-bin must look like VENV/bin/python")?;
    let requirements = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/official-sdk/requirements.txt"
    );
    let ok = std::process::Command::new("python3")
        .arg("-m")
        .arg("venv")
        .arg(venv)
        .status()?
        .success()
        && std::process::Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "-r", requirements])
            .status()?
            .success();
    if ok {
        Ok(())
    } else {
        Err("installing the Python SDKs failed".into())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if args.install_python {
        install_python(&args.python_bin)?;
    }
    let fd_limit = measure::raise_fd_limit();
    let want =
        |s: &str| args.scenarios == "all" || args.scenarios.split(',').any(|x| x.trim() == s);
    if let Some(dir) = &args.state {
        // A fresh state each run: the figures must not depend on what an earlier run left.
        let _ = std::fs::remove_dir_all(dir);
    }
    let emu = EmulatorProcess::spawn_with(
        Some(&seed(&args)),
        if args.python { 8883 } else { 0 },
        args.state.as_deref(),
    )
    .await?;
    let ca = emu.env["IOTHUB_CA_CERT"].clone();
    let service = ServiceClient::from_connection_string(
        &emu.env["IOTHUB_CONNECTION_STRING"],
        ServiceClientOptions::new()
            .trust_ca_file(&ca)?
            .amqp_port(emu.amqp_port),
    )?;
    let device_options = DeviceClientOptions::new().trust_ca_file(&ca)?;
    let b = Bench {
        emu,
        service,
        device_options,
    };
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "machine: {cpus} cores; open-file limit {fd_limit}; emulator pid {:?}",
        b.emu.pid()
    );
    let mut results = serde_json::Map::new();
    results.insert(
        "machine".into(),
        json!({ "cores": cpus, "fd_limit": fd_limit }),
    );
    if want("floor") || want("roundtrip") || want("throughput") || args.python {
        results.insert("floor".into(), floor(args.calls).await?);
    }
    if want("roundtrip") {
        let rt = roundtrip(&b, args.calls).await?;
        if let Some(two) = two_floors(&results) {
            results.insert(
                "roundtrip_x_two_floors".into(),
                versus_floor("method round trip", &rt, two),
            );
        }
        results.insert("roundtrip".into(), rt);
    }
    if want("reported") {
        results.insert(
            "reported_sequential".into(),
            reported_sequential(&b, args.calls).await?,
        );
    }
    if want("throughput") {
        let tp = throughput(&b, &args).await?;
        if let Some(two) = two_floors(&results) {
            results.insert(
                "throughput_methods_x_two_floors".into(),
                versus_floor("method under load", &tp["methods"]["latency"], two),
            );
        }
        results.insert("throughput".into(), tp);
    }
    if want("creates") {
        results.insert("creates".into(), creates(&b, &args).await?);
    }
    if want("c2d") {
        results.insert("c2d".into(), c2d(&b, &args).await?);
    }
    if want("fleet") {
        results.insert("fleet".into(), fleet(&b, args.fleet).await?);
    }
    if want("query") {
        results.insert("query".into(), query(&b, args.fleet).await?);
    }
    if args.python {
        let py_rt = python(&b, &args, "roundtrip", args.calls.min(1000)).await?;
        println!("python SDKs round trip: {py_rt}");
        if let Some(two) = two_floors(&results) {
            results.insert(
                "python_roundtrip_x_two_floors".into(),
                versus_floor("python SDKs round trip", &py_rt, two),
            );
        }
        let py_fleet = python(&b, &args, "fleet", args.python_fleet).await?;
        println!("python SDK fleet: {py_fleet}");
        if let Some(rust) = results.get("roundtrip") {
            let ratio = py_rt["p50_ms"].as_f64().unwrap_or(0.0)
                / rust["p50_ms"].as_f64().unwrap_or(f64::NAN);
            println!("ratio python/rust, round trip p50: {ratio:.1}x");
            results.insert("ratio_roundtrip_p50".into(), json!(ratio));
        }
        if let Some(rust) = results.get("fleet") {
            let ratio = py_fleet["rss_per_client_kb"].as_f64().unwrap_or(0.0)
                / rust["rss_per_client_kb"].as_f64().unwrap_or(f64::NAN);
            println!("ratio python/rust, memory per client: {ratio:.1}x");
            results.insert("ratio_memory_per_client".into(), json!(ratio));
        }
        results.insert(
            "python".into(),
            json!({ "roundtrip": py_rt, "fleet": py_fleet }),
        );
    }
    std::fs::write(
        &args.json,
        serde_json::to_vec_pretty(&Value::Object(results))?,
    )?;
    println!("results written to {}", args.json);
    Ok(())
}
