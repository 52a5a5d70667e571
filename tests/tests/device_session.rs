//! The device session against the in-process emulator: outages, cancelled calls, a desired
//! consumer that does not read, and a late-starting device.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use iot_common::Backoff;
use iot_device::{
    ConnectionStatus, DesiredKind, DeviceClient, DeviceClientOptions, ErrorKind, Message,
};
use iot_hub_emulator::{Emulator, FaultSettings, RunningEmulator};
use serde_json::json;
use std::time::{Duration, Instant};

async fn hub() -> RunningEmulator {
    Emulator::builder().start().await.unwrap()
}

fn options(hub: &RunningEmulator, timeout: Duration) -> DeviceClientOptions {
    DeviceClientOptions::new()
        .trust_ca_pem(hub.ca_pem())
        .unwrap()
        .operation_timeout(timeout)
        .backoff(Backoff::new(
            Duration::from_millis(100),
            Duration::from_millis(500),
            Duration::from_millis(50),
        ))
}

async fn device(hub: &RunningEmulator, id: &str, timeout: Duration) -> DeviceClient {
    DeviceClient::from_connection_string(
        &hub.hub().create_device(id).unwrap(),
        options(hub, timeout),
    )
    .await
    .unwrap()
}

fn refuse(hub: &RunningEmulator, secs: u64) {
    let mut f = FaultSettings::default();
    f.refuse_connections_secs = Some(secs);
    hub.faults().set(&f);
}

/// Takes the hub away from `dev` until [`refuse`]`(hub, 0)`.
async fn hub_down(hub: &RunningEmulator, dev: &DeviceClient, id: &str) {
    refuse(hub, 3600);
    hub.hub().disconnect(id, None);
    let mut status = dev.status_changes();
    tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|s| matches!(s, ConnectionStatus::Disconnected { .. })),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn with_the_hub_down_200_sends_all_resolve_within_their_timeout() {
    let hub = hub().await;
    let dev = device(&hub, "down", Duration::from_secs(5)).await;
    hub_down(&hub, &dev, "down").await;
    let started = Instant::now();
    let sends: Vec<_> = (0..200)
        .map(|i| {
            let dev = dev.clone();
            tokio::spawn(async move { dev.send_telemetry(Message::new(format!("m{i}"))).await })
        })
        .collect();
    let mut kinds = Vec::new();
    for s in sends {
        kinds.push(s.await.unwrap().unwrap_err().kind());
    }
    let elapsed = started.elapsed();
    // The bound the issue asks for: a 5 s operation timeout, queue wait included.
    assert!(elapsed < Duration::from_secs(6), "took {elapsed:?}");
    assert!(
        kinds.iter().all(|k| *k == ErrorKind::Connection),
        "{kinds:?}"
    );
    assert_eq!(
        dev.stats().telemetry_queued,
        0,
        "timed-out sends left the queue"
    );
}

#[tokio::test]
async fn cancelled_sends_do_not_confuse_the_next_ones() {
    let hub = hub().await;
    let dev = device(&hub, "cancel", Duration::from_secs(10)).await;
    hub_down(&hub, &dev, "cancel").await;
    let pending: Vec<_> = (0..50)
        .map(|i| {
            let dev = dev.clone();
            tokio::spawn(async move { dev.send_telemetry(Message::new(format!("c{i}"))).await })
        })
        .collect();
    // Let all 50 reach the queue, then cancel them.
    for _ in 0..100 {
        if dev.stats().telemetry_queued == 50 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(dev.stats().telemetry_queued, 50);
    for p in &pending {
        p.abort();
    }
    for p in pending {
        assert!(p.await.unwrap_err().is_cancelled());
    }
    assert_eq!(dev.stats().telemetry_queued, 0);

    refuse(&hub, 0);
    let mut status = dev.status_changes();
    tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|s| *s == ConnectionStatus::Connected),
    )
    .await
    .unwrap();
    let sends: Vec<_> = (0..100)
        .map(|i| {
            let dev = dev.clone();
            tokio::spawn(async move {
                dev.send_telemetry(Message::new(format!("n{i}")).message_id(format!("n{i}")))
                    .await
            })
        })
        .collect();
    for s in sends {
        s.await.unwrap().unwrap();
    }
    let got = hub.hub().telemetry(Some("cancel"));
    assert!(
        got.iter().all(|r| r
            .properties
            .message_id
            .as_deref()
            .is_some_and(|m| m.starts_with('n'))),
        "a cancelled message was sent"
    );
    assert_eq!(got.len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_desired_consumer_that_does_not_read_keeps_memory_bounded() {
    let hub = hub().await;
    let o = options(&hub, Duration::from_secs(10)).desired_capacity(16);
    let dev = DeviceClient::from_connection_string(&hub.hub().create_device("slow").unwrap(), o)
        .await
        .unwrap();
    let mut updates = dev.desired_updates().await.unwrap();
    let mut most_waiting = 0;
    for i in 0..10_000u64 {
        hub.hub()
            .update_twin(
                "slow",
                None,
                &json!({"properties": {"desired": {"n": i, format!("k{}", i % 4): i}}}),
                false,
            )
            .unwrap();
        if i % 500 == 0 {
            most_waiting = most_waiting.max(dev.stats().desired_waiting);
        }
        if i % 16 == 0 {
            // Let the device keep up with the hub (the emulator drops what does not fit in
            // its queue towards the device).
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    // If the emulator still dropped patches, one more patch after the burst reveals the gap
    // and the client resyncs.
    tokio::time::sleep(Duration::from_millis(500)).await;
    hub.hub()
        .update_twin(
            "slow",
            None,
            &json!({"properties": {"desired": {"done": true}}}),
            false,
        )
        .unwrap();
    let last = hub
        .hub()
        .get_twin("slow", None)
        .unwrap()
        .properties
        .desired
        .version
        .unwrap();
    let mut reads = 0;
    let mut version = 0;
    let mut state = serde_json::Map::new();
    while version < last {
        let u = tokio::time::timeout(Duration::from_secs(30), updates.next())
            .await
            .unwrap_or_else(|_| panic!("stuck at {version} of {last}: {:?}", dev.stats()))
            .unwrap();
        reads += 1;
        most_waiting = most_waiting.max(dev.stats().desired_waiting);
        assert!(u.version > version, "versions go up");
        version = u.version;
        if u.kind == DesiredKind::Full {
            state.clear();
        }
        state.extend(u.properties);
    }
    // The bound: `desired_capacity` updates (16) plus one coalesced Full.
    assert!(most_waiting <= 17, "{most_waiting} updates waited");
    assert!(reads <= 18, "{reads} reads for 10,001 patches");
    assert_eq!(state["n"], json!(9999));
    assert_eq!(state["k3"], json!(9999));
    assert_eq!(state["k0"], json!(9996));
    assert_eq!(state["done"], json!(true));
}

#[tokio::test]
async fn a_late_starting_device_gets_its_desired_state_first_as_full() {
    let hub = hub().await;
    let cs = hub.hub().create_device("late").unwrap();
    hub.hub()
        .update_twin(
            "late",
            None,
            &json!({"properties": {"desired": {"interval": 30}}}),
            false,
        )
        .unwrap();
    let dev = DeviceClient::from_connection_string(&cs, options(&hub, Duration::from_secs(10)))
        .await
        .unwrap();
    let mut updates = dev.desired_updates().await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), updates.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.kind, DesiredKind::Full);
    assert_eq!(first.properties["interval"], json!(30));
    hub.hub()
        .update_twin(
            "late",
            None,
            &json!({"properties": {"desired": {"interval": 60}}}),
            false,
        )
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), updates.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (next.kind, next.version),
        (DesiredKind::Patch, first.version + 1)
    );
    assert_eq!(next.properties["interval"], json!(60));
}

#[tokio::test]
async fn handlers_get_the_client_and_do_not_keep_it_alive() {
    let hub = hub().await;
    let dev = device(&hub, "ctx", Duration::from_secs(10)).await;
    dev.on_method_with_client(
        "report",
        |client: DeviceClient, v: serde_json::Value| async move {
            let version = client.update_reported(&json!({ "got": v })).await?;
            Ok::<_, iot_device::MethodError>(json!({ "version": version }))
        },
    )
    .await
    .unwrap();
    let mut call = iot_common::MethodInvocation::new("report", json!(5));
    call.response_timeout_in_seconds = Some(10);
    let answer = hub.hub().invoke_method("ctx", None, call).await.unwrap();
    assert_eq!(answer.status, 200);
    let twin = hub.hub().get_twin("ctx", None).unwrap();
    assert_eq!(twin.properties.reported.properties["got"], json!(5));
    let mut status = dev.status_changes();
    drop(dev);
    tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|s| matches!(s, ConnectionStatus::Closed { .. })),
    )
    .await
    .unwrap();
}
