//! The device client against the in-process emulator, over real TLS sockets on loopback.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use iot_common::{Backoff, ErrorCode, MessageProperties, MethodInvocation, MethodResponse};
use iot_device::{
    ConnectionStatus, DesiredKind, DeviceClient, DeviceClientOptions, DisconnectReason, ErrorKind,
    Message, MethodError,
};
use iot_hub_emulator::{Emulator, RunningEmulator};
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

async fn hub() -> RunningEmulator {
    Emulator::builder().start().await.expect("emulator starts")
}

fn options(hub: &RunningEmulator) -> DeviceClientOptions {
    DeviceClientOptions::new()
        .trust_ca_pem(hub.ca_pem())
        .unwrap()
        .operation_timeout(Duration::from_secs(10))
        .backoff(Backoff::new(
            Duration::from_millis(100),
            Duration::from_secs(1),
            Duration::from_millis(50),
        ))
}

async fn connect(hub: &RunningEmulator, id: &str) -> DeviceClient {
    let cs = hub.hub().create_device(id).unwrap();
    DeviceClient::from_connection_string(&cs, options(hub))
        .await
        .expect("device connects")
}

fn call(name: &str, payload: Value) -> MethodInvocation {
    let mut m = MethodInvocation::new(name, payload);
    m.response_timeout_in_seconds = Some(10);
    m
}

async fn wait_status(
    client: &DeviceClient,
    pred: impl FnMut(&ConnectionStatus) -> bool,
) -> ConnectionStatus {
    let mut changes = client.status_changes();
    tokio::time::timeout(WAIT, changes.wait_for(pred))
        .await
        .expect("status reached")
        .expect("client alive")
}

#[tokio::test]
async fn method_round_trip_with_typed_payloads() {
    let hub = hub().await;
    let client = connect(&hub, "m1").await;
    #[derive(serde::Deserialize)]
    struct Req {
        a: i64,
        b: i64,
    }
    #[derive(serde::Serialize)]
    struct Resp {
        sum: i64,
    }
    client
        .on_method("add", |r: Req| async move {
            Ok::<_, MethodError>(Resp { sum: r.a + r.b })
        })
        .await
        .unwrap();
    let r = hub
        .hub()
        .invoke_method("m1", None, call("add", json!({"a": 2, "b": 3})))
        .await
        .unwrap();
    assert_eq!((r.status, r.payload), (200, json!({"sum": 5})));
    let bad = hub
        .hub()
        .invoke_method("m1", None, call("add", json!("nope")))
        .await
        .unwrap();
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn unknown_method_is_answered_404() {
    let hub = hub().await;
    let client = connect(&hub, "m2").await;
    client
        .on_method("known", |_: Value| async {
            Ok::<_, MethodError>(json!(null))
        })
        .await
        .unwrap();
    let r = hub
        .hub()
        .invoke_method("m2", None, call("unknown", Value::Null))
        .await
        .unwrap();
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn method_before_subscription_is_device_not_online() {
    let hub = hub().await;
    let _client = connect(&hub, "m3").await;
    let e = hub
        .hub()
        .invoke_method("m3", None, call("x", Value::Null))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::DeviceNotOnline);
}

#[tokio::test]
async fn handler_panic_answers_500_and_the_client_keeps_running() {
    let hub = hub().await;
    let client = connect(&hub, "p1").await;
    client
        .on_method_raw("boom", |_req| async move {
            if true {
                panic!("handler bug");
            }
            MethodResponse::empty(200)
        })
        .await
        .unwrap();
    client
        .on_method("ok", |_: Value| async {
            Ok::<_, MethodError>(json!("fine"))
        })
        .await
        .unwrap();
    let r = hub
        .hub()
        .invoke_method("p1", None, call("boom", Value::Null))
        .await
        .unwrap();
    assert_eq!(r.status, 500);
    let r = hub
        .hub()
        .invoke_method("p1", None, call("ok", Value::Null))
        .await
        .unwrap();
    assert_eq!((r.status, r.payload), (200, json!("fine")));
    assert_eq!(client.status(), ConnectionStatus::Connected);
}

#[tokio::test]
async fn handler_error_maps_to_its_status() {
    let hub = hub().await;
    let client = connect(&hub, "p2").await;
    client
        .on_method("fail", |_: Value| async {
            Err::<Value, _>(MethodError::new(409, "busy"))
        })
        .await
        .unwrap();
    let r = hub
        .hub()
        .invoke_method("p2", None, call("fail", Value::Null))
        .await
        .unwrap();
    assert_eq!((r.status, r.payload), (409, json!({"message": "busy"})));
}

#[tokio::test]
async fn reported_patch_returns_the_new_version_and_reaches_the_service_twin() {
    let hub = hub().await;
    let client = connect(&hub, "r1").await;
    let v1 = client
        .update_reported(&json!({"fw": "1.0", "nested": {"a": 1}}))
        .await
        .unwrap();
    let v2 = client
        .update_reported(&json!({"nested": {"a": null, "b": 2}}))
        .await
        .unwrap();
    assert_eq!((v1, v2), (2, 3));
    let twin = hub.hub().get_twin("r1", None).unwrap();
    assert_eq!(twin.properties.reported.version, Some(3));
    assert_eq!(
        twin.properties.reported.properties["nested"],
        json!({"b": 2})
    );
    let device_view = client.get_twin().await.unwrap();
    assert_eq!(device_view.reported.properties["fw"], "1.0");
}

#[tokio::test]
async fn invalid_input_is_refused_before_sending() {
    let hub = hub().await;
    let client = connect(&hub, "r2").await;
    let e = client
        .update_reported(&json!({"a.b": 1}))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let e = client.update_reported(&json!([1, 2])).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let e = client
        .send_telemetry(Message::new(vec![0u8; 256 * 1024 + 1]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(!e.is_retryable());
}

#[tokio::test]
async fn desired_update_while_connected() {
    let hub = hub().await;
    let client = connect(&hub, "d1").await;
    let mut updates = client.desired_updates().await.unwrap();
    hub.hub()
        .update_twin(
            "d1",
            None,
            &json!({"properties": {"desired": {"interval": 5}}}),
            false,
        )
        .unwrap();
    // First the current state as Full (version 1, before the change)...
    let first = tokio::time::timeout(WAIT, updates.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.kind, DesiredKind::Full);
    // ...unless the change won the race with the GET, then the patch.
    let u = if first.version == 1 {
        tokio::time::timeout(WAIT, updates.next())
            .await
            .unwrap()
            .unwrap()
    } else {
        first
    };
    assert_eq!(u.version, 2);
    assert_eq!(u.properties["interval"], 5);
    assert!(!u.properties.contains_key("$version"));
}

#[tokio::test]
async fn desired_update_missed_while_disconnected_is_delivered_after_reconnect() {
    let hub = hub().await;
    let cs = hub.hub().create_device("d2").unwrap();
    let opts = options(&hub).backoff(Backoff::new(
        Duration::from_millis(500),
        Duration::from_secs(1),
        Duration::ZERO,
    ));
    let client = DeviceClient::from_connection_string(&cs, opts)
        .await
        .unwrap();
    let mut updates = client.desired_updates().await.unwrap();
    assert!(hub.hub().disconnect("d2", None));
    wait_status(&client, |s| {
        matches!(s, ConnectionStatus::Disconnected { .. })
    })
    .await;
    hub.hub()
        .update_twin(
            "d2",
            None,
            &json!({"properties": {"desired": {"mode": "eco"}}}),
            false,
        )
        .unwrap();
    hub.hub()
        .update_twin(
            "d2",
            None,
            &json!({"properties": {"desired": {"level": 3}}}),
            false,
        )
        .unwrap();
    let mut u = tokio::time::timeout(WAIT, updates.next())
        .await
        .unwrap()
        .unwrap();
    if u.version == 1 {
        // The current state when the stream started, before the changes.
        assert_eq!(u.kind, DesiredKind::Full);
        u = tokio::time::timeout(WAIT, updates.next())
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!((u.version, u.kind), (3, DesiredKind::Full));
    assert_eq!(
        Value::Object(u.properties),
        json!({"mode": "eco", "level": 3})
    );
    // Nothing is delivered twice: the next update is the next version.
    hub.hub()
        .update_twin(
            "d2",
            None,
            &json!({"properties": {"desired": {"level": 4}}}),
            false,
        )
        .unwrap();
    let u = tokio::time::timeout(WAIT, updates.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((u.version, u.kind), (4, DesiredKind::Patch));
}

#[tokio::test]
async fn reconnects_after_the_emulator_drops_the_connection() {
    let hub = hub().await;
    let client = connect(&hub, "c1").await;
    client
        .on_method("ping", |_: Value| async {
            Ok::<_, MethodError>(json!("pong"))
        })
        .await
        .unwrap();
    assert!(hub.hub().disconnect("c1", None));
    wait_status(&client, |s| {
        matches!(
            s,
            ConnectionStatus::Disconnected {
                reason: DisconnectReason::ConnectionLost,
                ..
            }
        )
    })
    .await;
    wait_status(&client, |s| *s == ConnectionStatus::Connected).await;
    let mut attempts = 0;
    let r = loop {
        match hub
            .hub()
            .invoke_method("c1", None, call("ping", Value::Null))
            .await
        {
            Ok(r) => break r,
            Err(e) if e.code == ErrorCode::DeviceNotOnline && attempts < 50 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(r.payload, json!("pong"));
}

#[tokio::test]
async fn token_renewal_with_a_short_time_to_live() {
    let hub = hub().await;
    let cs = hub.hub().create_device("t1").unwrap();
    let client = DeviceClient::from_connection_string(
        &cs,
        options(&hub).sas_token_ttl(Duration::from_secs(6)),
    )
    .await
    .unwrap();
    client
        .on_method("ping", |_: Value| async {
            Ok::<_, MethodError>(json!("pong"))
        })
        .await
        .unwrap();
    // The first token expires within 6 s; renewal comes before the hub would close the
    // connection. Wait past the expiry.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let stats = client.stats();
    assert!(stats.token_renewals >= 1, "{stats:?}");
    assert_eq!(stats.connection_losses, 0, "{stats:?}");
    assert_eq!(stats.connects, 1 + stats.token_renewals, "{stats:?}");
    let r = hub
        .hub()
        .invoke_method("t1", None, call("ping", Value::Null))
        .await
        .unwrap();
    assert_eq!(r.payload, json!("pong"));
}

#[tokio::test]
async fn telemetry_with_properties_is_acknowledged_and_stored() {
    let hub = hub().await;
    let client = connect(&hub, "tel").await;
    let msg = Message::json(&json!({"t": 21.5}))
        .unwrap()
        .message_id("m-1")
        .correlation_id("c-1")
        .property("alert", "a/b c");
    client.send_telemetry(msg).await.unwrap();
    let got = hub.hub().telemetry(Some("tel"));
    assert_eq!(got.len(), 1);
    let p = &got[0].properties;
    assert_eq!(p.message_id.as_deref(), Some("m-1"));
    assert_eq!(p.correlation_id.as_deref(), Some("c-1"));
    assert_eq!(p.content_type.as_deref(), Some("application/json"));
    assert_eq!(p.get("alert"), Some("a/b c"));
    assert_eq!(got[0].body, r#"{"t":21.5}"#);
}

#[tokio::test]
async fn cloud_to_device_messages_arrive_on_the_stream() {
    let hub = hub().await;
    let client = connect(&hub, "c2d").await;
    hub.hub()
        .send_c2d(
            "c2d",
            "queued before subscribing",
            MessageProperties::new().message_id("early"),
        )
        .unwrap();
    let mut messages = client.c2d_messages().await.unwrap();
    hub.hub()
        .send_c2d("c2d", "hello", MessageProperties::new().property("k", "v"))
        .unwrap();
    let first = tokio::time::timeout(WAIT, messages.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.properties.message_id.as_deref(), Some("early"));
    let second = tokio::time::timeout(WAIT, messages.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&second.body[..], b"hello");
    assert_eq!(second.properties.get("k"), Some("v"));
}

#[tokio::test]
async fn module_identity_methods_and_twin() {
    let hub = hub().await;
    hub.hub().create_device("edge").unwrap();
    let cs = hub.hub().create_module("edge", "filter").unwrap();
    let client = DeviceClient::from_connection_string(&cs, options(&hub))
        .await
        .unwrap();
    assert_eq!(client.module_id(), Some("filter"));
    client
        .on_method("status", |_: Value| async {
            Ok::<_, MethodError>(json!("module ok"))
        })
        .await
        .unwrap();
    let r = hub
        .hub()
        .invoke_method("edge", Some("filter"), call("status", Value::Null))
        .await
        .unwrap();
    assert_eq!(r.payload, json!("module ok"));
    client
        .update_reported(&json!({"threshold": 7}))
        .await
        .unwrap();
    let twin = hub.hub().get_twin("edge", Some("filter")).unwrap();
    assert_eq!(twin.module_id.as_deref(), Some("filter"));
    assert_eq!(twin.properties.reported.properties["threshold"], 7);
    assert!(
        hub.hub()
            .get_twin("edge", None)
            .unwrap()
            .properties
            .reported
            .properties
            .is_empty()
    );
}

#[tokio::test]
async fn wrong_key_is_unauthorized_and_never_echoed() {
    let hub = hub().await;
    hub.hub().create_device("k1").unwrap();
    let cs = "HostName=localhost;DeviceId=k1;SharedAccessKey=d3Jvbmd3cm9uZ3dyb25nd3Jvbmd3cm9uZ3dyb25nMDA=;GatewayHostName=localhost:"
        .to_owned()
        + &hub.mqtt_addr().port().to_string();
    let e = DeviceClient::from_connection_string(&cs, options(&hub))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized);
    assert!(!e.is_retryable());
    assert!(!format!("{e} {e:?}").contains("d3Jvbmd3"));
}

#[tokio::test]
async fn malformed_connection_string_names_the_field_not_the_key() {
    let e = DeviceClient::from_connection_string(
        "HostName=h;SharedAccessKey=c2VjcmV0a2V5",
        DeviceClientOptions::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Configuration);
    assert!(e.to_string().contains("DeviceId"), "{e}");
    assert!(!format!("{e} {e:?}").contains("c2VjcmV0a2V5"));
}

#[tokio::test]
async fn debug_output_holds_no_secret() {
    let hub = hub().await;
    let cs = hub.hub().create_device("dbg").unwrap();
    let key = cs
        .split("SharedAccessKey=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let client = DeviceClient::from_connection_string(&cs, options(&hub))
        .await
        .unwrap();
    for out in [
        format!("{client:?}"),
        format!("{client:#?}"),
        format!("{:?}", options(&hub)),
    ] {
        assert!(!out.contains(&key), "{out}");
        assert!(!out.contains("SharedAccessSignature"), "{out}");
    }
}

#[tokio::test]
async fn operations_while_disconnected_fail_with_a_retryable_error() {
    let hub = hub().await;
    let cs = hub.hub().create_device("off").unwrap();
    let opts = options(&hub)
        .operation_timeout(Duration::from_millis(500))
        .backoff(Backoff::new(
            Duration::from_secs(60),
            Duration::from_secs(60),
            Duration::ZERO,
        ));
    let client = DeviceClient::from_connection_string(&cs, opts)
        .await
        .unwrap();
    assert!(hub.hub().disconnect("off", None));
    wait_status(&client, |s| {
        matches!(s, ConnectionStatus::Disconnected { .. })
    })
    .await;
    let e = client.get_twin().await.unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    assert!(matches!(
        e.kind(),
        ErrorKind::Connection | ErrorKind::Timeout
    ));
}

#[tokio::test]
async fn close_stops_the_client() {
    let hub = hub().await;
    let client = connect(&hub, "bye").await;
    let other = client.clone();
    client.close().await.unwrap();
    assert!(matches!(other.status(), ConnectionStatus::Closed { .. }));
    assert_eq!(
        other.get_twin().await.unwrap_err().kind(),
        ErrorKind::Closed
    );
}

#[tokio::test]
async fn method_request_stream_and_dropped_requests() {
    let hub = hub().await;
    let client = connect(&hub, "stream").await;
    let mut requests = client.method_requests().await.unwrap();
    let responder = tokio::spawn(async move {
        let first = requests.next().await.unwrap();
        assert_eq!(first.request().name, "first");
        first
            .respond(MethodResponse::ok(&json!("answered")))
            .await
            .unwrap();
        let second = requests.next().await.unwrap();
        drop(second);
    });
    let r = hub
        .hub()
        .invoke_method("stream", None, call("first", Value::Null))
        .await
        .unwrap();
    assert_eq!((r.status, r.payload), (200, json!("answered")));
    let r = hub
        .hub()
        .invoke_method("stream", None, call("second", Value::Null))
        .await
        .unwrap();
    assert_eq!(r.status, 500);
    responder.await.unwrap();
}

#[tokio::test]
async fn status_changes_is_a_stream_that_ends_with_the_client() {
    use futures_util::StreamExt as _;
    let hub = hub().await;
    let client = connect(&hub, "status-stream").await;
    let changes = client.status_changes();
    let watcher = tokio::spawn(changes.collect::<Vec<_>>());
    assert!(hub.hub().disconnect("status-stream", None));
    wait_status(&client, |s| *s == ConnectionStatus::Connected).await;
    client.close().await.unwrap();
    let seen = tokio::time::timeout(WAIT, watcher)
        .await
        .expect("the stream ends once the client is gone")
        .unwrap();
    assert_eq!(seen.first(), Some(&ConnectionStatus::Connected), "{seen:?}");
    assert!(
        matches!(seen.last(), Some(ConnectionStatus::Closed { .. })),
        "{seen:?}"
    );
}

/// A message taken right before `close` is acknowledged before the client disconnects: the
/// hub records its delivery (`Success` feedback) and never redelivers it. Two workers, so the
/// application's close can land while the connection task is busy with another event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_c2d_message_taken_just_before_close_is_acknowledged() {
    let hub = hub().await;
    let cs = hub.hub().create_device("ack-close").unwrap();
    const ROUNDS: usize = 30;
    for round in 0..ROUNDS {
        let client = DeviceClient::from_connection_string(&cs, options(&hub))
            .await
            .unwrap();
        let mut inbox = client.c2d_messages().await.unwrap();
        let mut properties = MessageProperties::new().message_id(format!("m{round}"));
        properties.ack = Some("full".into());
        hub.hub().send_c2d("ack-close", "x", properties).unwrap();
        let got = tokio::time::timeout(WAIT, inbox.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            got.properties.message_id.as_deref(),
            Some(format!("m{round}").as_str()),
            "a message taken before an earlier close came back"
        );
        drop(inbox);
        client.close().await.unwrap();
        let delivered = tokio::time::timeout(WAIT, async {
            while hub.hub().pending_feedback() < round + 1 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(delivered.is_ok(), "round {round}: no Success feedback");
    }
}
