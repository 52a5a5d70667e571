//! The console's live stream (`GET /console/events`, server-sent events) with a real device:
//! the backlog a new reader gets, resuming after a given event id, and what a reader that fell
//! behind the bounded telemetry buffer is told.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use iot_device::{DeviceClient, DeviceClientOptions, Message};
use iot_hub_emulator::{Emulator, RunningEmulator};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn http(hub: &RunningEmulator) -> reqwest::Client {
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(hub.ca_pem().as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .unwrap()
}

/// Reads the stream until `done(text so far)` holds; fails after 10 s with what came.
async fn read_until(mut r: reqwest::Response, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut text = String::new();
    while !done(&text) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, r.chunk()).await {
            Ok(Ok(Some(c))) => text.push_str(&String::from_utf8_lossy(&c)),
            other => {
                panic!("the stream stopped ({other:?}) before it showed what was expected: {text}")
            }
        }
    }
    text
}

/// The `data:` lines of the events named `name`.
fn events<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.split("\n\n")
        .filter(|e| e.lines().any(|l| l == format!("event: {name}")))
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .collect()
}

async fn hub_with_30_messages() -> RunningEmulator {
    let hub = Emulator::builder()
        .telemetry_capacity(10)
        .start()
        .await
        .unwrap();
    let options = DeviceClientOptions::new()
        .trust_ca_pem(hub.ca_pem())
        .unwrap();
    let dev =
        DeviceClient::from_connection_string(&hub.hub().create_device("gauge").unwrap(), options)
            .await
            .unwrap();
    for i in 0..30 {
        dev.send_telemetry(Message::new(format!("m{i}")))
            .await
            .unwrap();
    }
    dev.close().await.unwrap();
    hub
}

#[tokio::test]
async fn a_new_reader_gets_the_connection_state_and_the_buffered_backlog() {
    let hub = hub_with_30_messages().await;
    let r = http(&hub)
        .get(format!("{}/console/events", hub.https_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = read_until(r, |t| t.contains("\"m29\"")).await;
    assert_eq!(events(&text, "devices").len(), 1);
    let bodies: Vec<String> = events(&text, "telemetry")
        .iter()
        .map(|d| {
            serde_json::from_str::<serde_json::Value>(d).unwrap()["body"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    // The buffer keeps 10: the stream starts with them, oldest first, and nothing is reported
    // lost to a reader that never saw the older ones.
    assert_eq!(
        bodies,
        (20..30).map(|i| format!("m{i}")).collect::<Vec<_>>()
    );
    assert!(events(&text, "dropped").is_empty());
}

#[tokio::test]
async fn a_reader_that_fell_behind_the_buffer_is_told_how_many_it_missed() {
    let hub = hub_with_30_messages().await;
    // As a browser reconnecting after event 0: messages 1..=19 are gone from the buffer.
    let r = http(&hub)
        .get(format!("{}/console/events", hub.https_url()))
        .header("last-event-id", "0")
        .send()
        .await
        .unwrap();
    let text = read_until(r, |t| t.contains("\"m29\"")).await;
    assert_eq!(events(&text, "dropped"), vec![r#"{"count":19}"#]);
    assert_eq!(events(&text, "telemetry").len(), 10);
    // A reader for one device sees its messages only: the other device's ten come first in
    // the buffer, so had they passed the filter they would be read before this one.
    let r = http(&hub)
        .get(format!("{}/console/events?deviceId=other", hub.https_url()))
        .send()
        .await
        .unwrap();
    let options = DeviceClientOptions::new()
        .trust_ca_pem(hub.ca_pem())
        .unwrap();
    let other =
        DeviceClient::from_connection_string(&hub.hub().create_device("other").unwrap(), options)
            .await
            .unwrap();
    other.send_telemetry(Message::new("mine")).await.unwrap();
    let text = read_until(r, |t| t.contains("\"mine\"")).await;
    assert_eq!(events(&text, "telemetry").len(), 1, "{text}");
    other.close().await.unwrap();
}
