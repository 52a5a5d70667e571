//! The soak test: devices doing method calls, reported patches and desired updates while the
//! emulator injects faults, then the books are checked: every call answered or failed with a
//! typed error (none hangs), every confirmed reported patch is in the twin, every desired
//! version reached each device once and in order, no client gave up, memory did not grow.

use crate::measure;
use iot_common::Backoff;
use iot_device::{ConnectionStatus, DeviceClient, DeviceClientOptions, MethodError};
use iot_hub_emulator::{Emulator, FaultSettings, RunningEmulator};
use iot_service::{
    DirectMethodRequest, IfMatch, RetryOptions, ServiceClient, ServiceClientOptions, TwinPatch,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// What to run.
#[derive(Debug, Clone, Copy)]
pub struct SoakConfig {
    /// Devices.
    pub devices: usize,
    /// How long the load and the faults run.
    pub duration: Duration,
    /// Time between two faults.
    pub fault_every: Duration,
    /// Concurrent method callers.
    pub callers: usize,
}

/// The books after a run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SoakReport {
    /// Devices.
    pub devices: usize,
    /// Seconds of load.
    pub seconds: f64,
    /// Faults the soak fired (one per round: drop one, drop all, refuse, throttle MQTT,
    /// throttle REST, delay methods, early expiry).
    pub faults_fired: u64,
    /// Individual fault events the emulator counted (each refused connection, throttled
    /// request, … counts).
    pub fault_events: u64,
    /// Method calls made.
    pub calls_made: u64,
    /// Calls the device answered (status 200, payload checked).
    pub calls_answered: u64,
    /// Calls that failed with a typed error, by kind.
    pub calls_failed: BTreeMap<String, u64>,
    /// Calls that neither answered nor failed in time (must be 0).
    pub calls_hung: u64,
    /// Reported patches the client reported as accepted.
    pub patches_confirmed: u64,
    /// Reported patches that failed with a typed error.
    pub patches_failed: u64,
    /// Devices whose twin lacks their last confirmed patch (must be 0).
    pub patches_lost: u64,
    /// Desired updates the service made.
    pub desired_updates: u64,
    /// Desired versions seen twice or out of order (must be 0).
    pub desired_disorders: u64,
    /// Devices whose last desired version never arrived (must be 0).
    pub desired_missing: u64,
    /// Devices not connected at the end (must be 0).
    pub clients_gave_up: u64,
    /// Reconnects, summed over devices.
    pub reconnects: u64,
    /// Resident memory a quarter into the run (after warm-up), kB.
    pub rss_start_kb: u64,
    /// Resident memory at the end, kB.
    pub rss_end_kb: u64,
}

impl SoakReport {
    /// Everything confirmed is accounted for.
    pub fn lost(&self) -> u64 {
        self.calls_hung
            + self.patches_lost
            + self.desired_disorders
            + self.desired_missing
            + self.clients_gave_up
    }

    /// `true` when memory at the end is within 25 % (plus 4 MB of slack) of the quarter mark.
    pub fn memory_stable(&self) -> bool {
        self.rss_end_kb <= self.rss_start_kb + self.rss_start_kb / 4 + 4096
    }
}

#[derive(Default)]
struct DeviceBooks {
    desired_seen: Vec<u64>,
    last_confirmed_patch: Option<u64>,
}

/// Runs the soak and returns the books.
///
/// # Errors
/// Set-up failures (the emulator or a client cannot start).
pub async fn run(cfg: SoakConfig) -> Result<SoakReport, Box<dyn std::error::Error + Send + Sync>> {
    let hub = Arc::new(Emulator::builder().start().await?);
    let retry = RetryOptions {
        max_retries: 5,
        backoff: Backoff::new(
            Duration::from_millis(20),
            Duration::from_millis(500),
            Duration::from_millis(20),
        ),
        max_elapsed: Duration::from_secs(20),
    };
    let service = ServiceClient::from_connection_string(
        &hub.service_connection_string(),
        ServiceClientOptions::new()
            .trust_ca_pem(hub.ca_pem())?
            .retry(retry),
    )?;
    let options = DeviceClientOptions::new()
        .trust_ca_pem(hub.ca_pem())?
        .operation_timeout(Duration::from_secs(5))
        .keep_alive(Duration::from_secs(5))
        .backoff(Backoff::new(
            Duration::from_millis(100),
            Duration::from_secs(2),
            Duration::from_millis(100),
        ));
    let books: Arc<Vec<Mutex<DeviceBooks>>> =
        Arc::new((0..cfg.devices).map(|_| Mutex::default()).collect());
    let mut devices = Vec::new();
    for i in 0..cfg.devices {
        let id = format!("soak-{i}");
        let d =
            DeviceClient::from_connection_string(&hub.hub().create_device(&id)?, options.clone())
                .await?;
        d.on_method("work", |v: Value| async move {
            Ok::<_, MethodError>(json!({ "echo": v }))
        })
        .await?;
        let mut desired = d.desired_updates().await?;
        let books = books.clone();
        tokio::spawn(async move {
            while let Some(u) = desired.next().await {
                books[i]
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .desired_seen
                    .push(u.version);
            }
        });
        devices.push(d);
    }
    let mut report = SoakReport {
        devices: cfg.devices,
        ..Default::default()
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let deadline = started + cfg.duration;
    let calls = Arc::new(Counters::default());

    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..cfg.callers {
        let (service, calls) = (service.clone(), calls.clone());
        let n = cfg.devices;
        tasks.spawn(async move {
            let mut k = c as u64;
            while Instant::now() < deadline {
                let device = format!("soak-{}", (k as usize) % n);
                let req = DirectMethodRequest::new("work")
                    .payload_json(json!(k))
                    .response_timeout(Duration::from_secs(5));
                calls.made.fetch_add(1, Ordering::Relaxed);
                match tokio::time::timeout(
                    Duration::from_secs(30),
                    service.invoke_method(&device, &req),
                )
                .await
                {
                    Ok(Ok(r)) if r.status == 200 && r.payload == json!({ "echo": k }) => {
                        calls.answered.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Ok(_)) => calls.record_error("wrong answer"),
                    Ok(Err(e)) => calls.record_error(&format!("{:?}", e.kind())),
                    Err(_) => {
                        calls.hung.fetch_add(1, Ordering::Relaxed);
                    }
                }
                k += cfg.callers as u64;
            }
        });
    }
    let patches = Arc::new(Counters::default());
    for (i, d) in devices.iter().enumerate() {
        let (d, books, patches) = (d.clone(), books.clone(), patches.clone());
        tasks.spawn(async move {
            let mut seq = 0u64;
            while Instant::now() < deadline {
                seq += 1;
                match d.update_reported(&json!({ "seq": seq })).await {
                    Ok(_) => {
                        patches.answered.fetch_add(1, Ordering::Relaxed);
                        books[i]
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .last_confirmed_patch = Some(seq);
                    }
                    Err(_) => patches.record_error("patch"),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }
    let desired = Arc::new(AtomicU64::new(0));
    {
        let (service, desired) = (service.clone(), desired.clone());
        let n = cfg.devices;
        tasks.spawn(async move {
            let mut k = 0u64;
            while Instant::now() < deadline {
                let device = format!("soak-{}", (k as usize) % n);
                let patch = TwinPatch::new().desired("setting", json!(k));
                if service
                    .update_twin(&device, &patch, IfMatch::Any)
                    .await
                    .is_ok()
                {
                    desired.fetch_add(1, Ordering::Relaxed);
                }
                k += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
    }
    let faults = tokio::spawn(fire_faults(
        hub.clone(),
        deadline,
        cfg.fault_every,
        cfg.devices,
    ));
    let mut rss_samples = Vec::new();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss_samples.push(measure::rss_kb(None));
    }
    tasks.join_all().await;
    report.faults_fired = faults.await.unwrap_or(0);
    hub.faults().set(&quiet());
    report.seconds = started.elapsed().as_secs_f64();
    report.fault_events = hub.faults().fired();
    report.rss_start_kb = rss_samples.get(rss_samples.len() / 4).copied().unwrap_or(0);

    // Let every client reconnect and resync, then check the books.
    let settle = Instant::now() + Duration::from_secs(20);
    while Instant::now() < settle
        && devices
            .iter()
            .any(|d| d.status() != ConnectionStatus::Connected)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (i, d) in devices.iter().enumerate() {
        if d.status() != ConnectionStatus::Connected {
            report.clients_gave_up += 1;
        }
        report.reconnects += d.stats().connects.saturating_sub(1);
        let twin = service.get_twin(&format!("soak-{i}")).await?;
        let b = books[i]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(seq) = b.last_confirmed_patch
            && twin
                .properties
                .reported
                .properties
                .get("seq")
                .and_then(Value::as_u64)
                < Some(seq)
        {
            report.patches_lost += 1;
        }
        if b.desired_seen.windows(2).any(|w| w[1] <= w[0]) {
            report.desired_disorders += 1;
        }
        let want = twin.properties.desired.version.unwrap_or(1);
        if want > 1 && b.desired_seen.last() != Some(&want) {
            report.desired_missing += 1;
        }
    }
    report.calls_made = calls.made.load(Ordering::Relaxed);
    report.calls_answered = calls.answered.load(Ordering::Relaxed);
    report.calls_failed = calls
        .errors
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    report.calls_hung = calls.hung.load(Ordering::Relaxed);
    report.patches_confirmed = patches.answered.load(Ordering::Relaxed);
    report.patches_failed = patches
        .errors
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .values()
        .sum();
    report.desired_updates = desired.load(Ordering::Relaxed);
    report.rss_end_kb = measure::rss_kb(None);
    for d in devices {
        let _ = d.close().await;
    }
    Ok(report)
}

#[derive(Default)]
struct Counters {
    made: AtomicU64,
    answered: AtomicU64,
    hung: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Counters {
    fn record_error(&self, kind: &str) {
        *self
            .errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(kind.to_owned())
            .or_default() += 1;
    }
}

fn quiet() -> FaultSettings {
    let mut f = FaultSettings::default();
    f.throttle_rest = Some(0);
    f.fail_rest = Some(0);
    f.refuse_connections_secs = Some(0);
    f.method_delay_ms = Some(0);
    f.drop_method_responses = Some(false);
    f.connection_lifetime_secs = Some(0);
    f.throttle_mqtt = Some(0);
    f.drop_all_every_secs = Some(0);
    f
}

/// Cycles through the fault kinds until the deadline.
async fn fire_faults(
    hub: Arc<RunningEmulator>,
    deadline: Instant,
    every: Duration,
    devices: usize,
) -> u64 {
    let mut round = 0usize;
    while Instant::now() + every < deadline {
        tokio::time::sleep(every).await;
        let mut f = quiet();
        match round % 7 {
            0 => {
                hub.hub()
                    .disconnect(&format!("soak-{}", rand::random_range(0..devices)), None);
            }
            1 => {
                hub.hub().disconnect_all();
            }
            2 => f.refuse_connections_secs = Some(1),
            3 => f.throttle_mqtt = Some(3),
            4 => {
                f.throttle_rest = Some(3);
                f.retry_after_secs = Some(0);
            }
            5 => f.method_delay_ms = Some(300),
            _ => f.connection_lifetime_secs = Some(2),
        }
        hub.faults().set(&f);
        round += 1;
    }
    round as u64
}
