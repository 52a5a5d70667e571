//! `iothub monitor`: follows device-to-cloud telemetry by polling the emulator's paged
//! `GET /emulator/telemetry` until `--count` messages, `--timeout` or Ctrl-C. The real hub
//! delivers telemetry through its Event Hub-compatible endpoint, which azure-iot-rs cannot read
//! yet, so against it this fails with exit code 5.

use crate::cli::MonitorArgs;
use crate::emulator_http::EmulatorHttp;
use crate::error::CliError;
use crate::hub::Hub;
use crate::output::Output;
use serde_json::Value;
use std::time::Duration;
use tokio::time::Instant;

/// Records asked per page (the emulator's maximum).
const PAGE: u32 = 1000;
/// Bound on the pages read to find the end of the buffer (it holds far fewer).
const MAX_SKIP_PAGES: u32 = 10_000;

/// Runs `monitor`.
///
/// # Cancel safety
/// Cancel-safe: it only reads the buffer, so dropping it loses nothing (messages stay
/// buffered); this is what Ctrl-C does. Bounded by `--timeout`/`--count` when given.
pub async fn run(hub: &Hub, out: &Output, a: MonitorArgs) -> Result<(), CliError> {
    let http = EmulatorHttp::new(hub)?;
    if !http.is_emulator().await? {
        return Err(CliError::Unsupported(format!(
            "monitor reads the emulator's telemetry buffer: {} is not the emulator, and a real \
             IoT Hub's telemetry is read from its Event Hub-compatible endpoint, which \
             azure-iot-rs cannot read yet",
            hub.connection.host_name
        )));
    }
    let device = a.device.as_deref();
    let deadline = a.timeout.map(|s| Instant::now() + Duration::from_secs(s));
    let stop = async move {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(stop);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut from = if a.from_start {
        0
    } else {
        tokio::select! {
            r = end_of_buffer(&http, device) => r?,
            _ = &mut stop => return timed_out(&a, 0),
            _ = &mut ctrl_c => return Ok(()),
        }
    };
    let mut seen = 0u64;
    let wanted = a.count.unwrap_or(u64::MAX);
    while seen < wanted {
        let (records, next) = tokio::select! {
            r = http.telemetry_page(device, from, PAGE) => r?,
            _ = &mut stop => return timed_out(&a, seen),
            _ = &mut ctrl_c => return Ok(()),
        };
        for r in records
            .iter()
            .take(usize::try_from(wanted - seen).unwrap_or(usize::MAX))
        {
            print(out, r);
            seen += 1;
            if let Some(n) = r.get("sequenceNumber").and_then(Value::as_u64) {
                from = n + 1;
            }
        }
        if next.is_none() && seen < wanted {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(a.interval_ms)) => {}
                _ = &mut stop => return timed_out(&a, seen),
                _ = &mut ctrl_c => return Ok(()),
            }
        }
    }
    Ok(())
}

/// Running into `--timeout` ends a plain follow normally, but is a failure when `--count`
/// messages were asked for and fewer came.
fn timed_out(a: &MonitorArgs, seen: u64) -> Result<(), CliError> {
    match a.count {
        Some(n) if seen < n => Err(CliError::Transport(format!(
            "received {seen} of {n} messages within {} s",
            a.timeout.unwrap_or_default()
        ))),
        _ => Ok(()),
    }
}

/// The sequence number after the newest buffered record: following starts there.
async fn end_of_buffer(http: &EmulatorHttp, device: Option<&str>) -> Result<u64, CliError> {
    let mut from = 0;
    for _ in 0..MAX_SKIP_PAGES {
        let (records, next) = http.telemetry_page(device, from, PAGE).await?;
        if let Some(n) = records
            .last()
            .and_then(|r| r.get("sequenceNumber"))
            .and_then(Value::as_u64)
        {
            from = n + 1;
        }
        if next.is_none() {
            break;
        }
    }
    Ok(from)
}

fn print(out: &Output, r: &Value) {
    if out.is_json() {
        return out.json_line(r);
    }
    let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or_default();
    let body = match r.get("body").and_then(Value::as_str) {
        Some(b) => b.to_owned(),
        None => format!("<binary, base64 {}>", s("bodyBase64")),
    };
    let props = match r.get("properties") {
        Some(p @ Value::Object(m)) if !m.is_empty() => format!(" {p}"),
        _ => String::new(),
    };
    out.line(&format!(
        "{} {}: {body}{props}",
        s("enqueuedTime"),
        s("deviceId")
    ));
}
