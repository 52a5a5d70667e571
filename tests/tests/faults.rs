//! Injected faults against the real clients: what is retried, what surfaces as an error, and
//! that nothing the client confirmed is lost.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use iot_common::{Backoff, ErrorCode};
use iot_device::{DeviceClient, DeviceClientOptions, Message, MethodError};
use iot_hub_emulator::{Emulator, FaultSettings, RunningEmulator};
use iot_service::{
    DirectMethodRequest, ErrorKind, RetryOptions, ServiceClient, ServiceClientOptions,
};
use serde_json::{Value, json};
use std::time::Duration;

async fn hub() -> RunningEmulator {
    Emulator::builder().start().await.unwrap()
}

fn service(hub: &RunningEmulator, retries: u32) -> ServiceClient {
    let retry = RetryOptions {
        max_retries: retries,
        backoff: Backoff::new(
            Duration::from_millis(10),
            Duration::from_millis(100),
            Duration::ZERO,
        ),
        max_elapsed: Duration::from_secs(30),
    };
    let o = ServiceClientOptions::new()
        .trust_ca_pem(hub.ca_pem())
        .unwrap()
        .retry(retry);
    ServiceClient::from_connection_string(&hub.service_connection_string(), o).unwrap()
}

async fn device(hub: &RunningEmulator, id: &str) -> DeviceClient {
    let o = DeviceClientOptions::new()
        .trust_ca_pem(hub.ca_pem())
        .unwrap()
        .operation_timeout(Duration::from_secs(10))
        .backoff(Backoff::new(
            Duration::from_millis(100),
            Duration::from_millis(500),
            Duration::from_millis(50),
        ));
    DeviceClient::from_connection_string(&hub.hub().create_device(id).unwrap(), o)
        .await
        .unwrap()
}

fn faults(f: impl FnOnce(&mut FaultSettings)) -> FaultSettings {
    let mut s = FaultSettings::default();
    f(&mut s);
    s
}

#[tokio::test]
async fn idempotent_calls_retry_429_and_503_honouring_retry_after() {
    let hub = hub().await;
    hub.hub().create_device("r").unwrap();
    let svc = service(&hub, 3);
    hub.faults().set(&faults(|f| {
        f.throttle_rest = Some(2);
        f.fail_rest = Some(1);
        f.retry_after_secs = Some(0);
    }));
    assert_eq!(svc.get_twin("r").await.unwrap().device_id, "r");
    assert_eq!(hub.faults().fired(), 3);
}

#[tokio::test]
async fn throttling_beyond_the_retry_budget_is_a_retryable_error() {
    let hub = hub().await;
    hub.hub().create_device("r").unwrap();
    let svc = service(&hub, 1);
    hub.faults().set(&faults(|f| {
        f.throttle_rest = Some(5);
        f.retry_after_secs = Some(0);
    }));
    let e = svc.get_twin("r").await.unwrap_err();
    assert_eq!(
        (e.kind(), e.status(), e.error_code()),
        (
            ErrorKind::Throttled,
            Some(429),
            Some(ErrorCode::ThrottlingException)
        )
    );
    assert!(e.is_retryable());
    assert_eq!(hub.faults().fired(), 2);
}

#[tokio::test]
async fn invoke_method_is_not_retried_once_sent() {
    let hub = hub().await;
    let dev = device(&hub, "m").await;
    dev.on_method("count", |_: Value| async { Ok::<_, MethodError>(json!(1)) })
        .await
        .unwrap();
    let svc = service(&hub, 3);
    hub.faults().set(&faults(|f| f.fail_rest = Some(1)));
    let e = svc
        .invoke_method("m", &DirectMethodRequest::new("count"))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(503));
    assert_eq!(
        hub.faults().fired(),
        1,
        "a non-idempotent call must not be repeated"
    );
    assert_eq!(
        svc.invoke_method("m", &DirectMethodRequest::new("count"))
            .await
            .unwrap()
            .status,
        200
    );
}

#[tokio::test]
async fn lost_and_delayed_method_answers() {
    let hub = hub().await;
    let dev = device(&hub, "m").await;
    dev.on_method("ping", |_: Value| async {
        Ok::<_, MethodError>(json!("pong"))
    })
    .await
    .unwrap();
    let svc = service(&hub, 0);
    let req = DirectMethodRequest::new("ping").response_timeout(Duration::from_secs(5));
    hub.faults().set(&faults(|f| f.method_delay_ms = Some(300)));
    let started = tokio::time::Instant::now();
    assert_eq!(
        svc.invoke_method("m", &req).await.unwrap().payload,
        json!("pong")
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    hub.faults().set(&faults(|f| {
        f.method_delay_ms = Some(0);
        f.drop_method_responses = Some(true);
    }));
    let e = svc.invoke_method("m", &req).await.unwrap_err();
    assert_eq!(
        (e.kind(), e.error_code()),
        (ErrorKind::Timeout, Some(ErrorCode::GatewayTimeout))
    );
}

#[tokio::test]
async fn devices_come_back_after_refused_connections() {
    let hub = hub().await;
    let dev = device(&hub, "back").await;
    hub.faults()
        .set(&faults(|f| f.refuse_connections_secs = Some(1)));
    hub.hub().disconnect("back", None);
    let mut status = dev.status_changes();
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if dev.stats().connects >= 2 {
                break;
            }
        }
    })
    .await
    .expect("the device reconnects once the hub accepts it again");
    status
        .wait_for(|s| *s == iot_device::ConnectionStatus::Connected)
        .await
        .unwrap();
    assert!(dev.stats().connection_losses >= 2, "{:?}", dev.stats());
    assert!(hub.faults().fired() >= 1);
    dev.update_reported(&json!({"ok": true})).await.unwrap();
}

#[tokio::test]
async fn telemetry_survives_an_mqtt_throttling_disconnect() {
    let hub = hub().await;
    let dev = device(&hub, "tel").await;
    hub.faults().set(&faults(|f| f.throttle_mqtt = Some(1)));
    // The hub drops the connection on this publish without acknowledging it; the client
    // resends it after reconnecting and resolves only on the PUBACK.
    dev.send_telemetry(Message::new("reading-1").message_id("1"))
        .await
        .unwrap();
    dev.send_telemetry(Message::new("reading-2").message_id("2"))
        .await
        .unwrap();
    let ids: Vec<_> = hub
        .hub()
        .telemetry(Some("tel"))
        .iter()
        .filter_map(|r| r.properties.message_id.clone())
        .collect();
    assert_eq!(ids, ["1", "2"]);
    assert!(dev.stats().connection_losses >= 1);
}

#[tokio::test]
async fn early_token_expiry_is_survived() {
    let hub = hub().await;
    let dev = device(&hub, "early").await;
    dev.on_method("ping", |_: Value| async {
        Ok::<_, MethodError>(json!("pong"))
    })
    .await
    .unwrap();
    hub.faults()
        .set(&faults(|f| f.connection_lifetime_secs = Some(1)));
    hub.hub().disconnect("early", None);
    tokio::time::sleep(Duration::from_secs(3)).await;
    hub.faults()
        .set(&faults(|f| f.connection_lifetime_secs = Some(0)));
    let svc = service(&hub, 0);
    let mut answered = None;
    for _ in 0..100 {
        match svc
            .invoke_method("early", &DirectMethodRequest::new("ping"))
            .await
        {
            Ok(r) => {
                answered = Some(r);
                break;
            }
            Err(e) if e.kind() == ErrorKind::DeviceNotOnline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(answered.unwrap().payload, json!("pong"));
    assert!(dev.stats().connects >= 3, "{:?}", dev.stats());
}
