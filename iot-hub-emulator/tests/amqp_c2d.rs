//! The AMQP service plane over real TLS sockets, driven by a fe2o3-amqp client: CBS
//! put-token, then cloud-to-device sends that reach an MQTT device.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::link::{Receiver, Sender};
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::definitions::{AmqpError, ErrorCondition};
use fe2o3_amqp::types::messaging::{
    ApplicationProperties, Body, Message, MessageId, Outcome, Properties,
};
use fe2o3_amqp::types::primitives::{Binary, SimpleValue, Symbol, Value};
use fe2o3_amqp::{Connection, Session};
use iot_common::{SasToken, Secret};
use iot_hub_emulator::{Emulator, RunningEmulator, dev_keys};
use rumqttc::QoS;
use std::sync::Arc;
use support::{WAIT, connack, device, far, next_publish, roots};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

async fn emulator() -> RunningEmulator {
    Emulator::builder().start().await.unwrap()
}

/// An AMQP connection over TLS trusting the emulator's CA; `sasl` picks `AMQP 3 1 0 0`
/// (SASL ANONYMOUS, like uamqp) or `AMQP 0 1 0 0` (no SASL, like rhea).
async fn connect(emu: &RunningEmulator, sasl: bool) -> ConnectionHandle<()> {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots(emu))
    .with_no_client_auth();
    let tcp = TcpStream::connect(emu.amqp_addr()).await.unwrap();
    let tls = TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let builder = Connection::builder()
        .container_id("amqp-c2d-test")
        .hostname("localhost");
    let opened = if sasl {
        builder
            .sasl_profile(SaslProfile::Anonymous)
            .open_with_stream(tls)
            .await
    } else {
        builder.open_with_stream(tls).await
    };
    opened.unwrap()
}

fn service_token(key: &str) -> String {
    SasToken::for_service("localhost", "iothubowner", &Secret::new(key), far())
        .unwrap()
        .as_secret()
        .expose()
        .to_owned()
}

/// Puts `token` on `$cbs`: the answer's status code and correlation id.
async fn put_token(
    session: &mut SessionHandle<()>,
    message_id: MessageId,
    name: &str,
    token: String,
) -> (i32, Option<MessageId>) {
    let mut tx = Sender::attach(session, "cbs-sender", "$cbs").await.unwrap();
    let mut rx = Receiver::attach(session, "cbs-receiver", "$cbs")
        .await
        .unwrap();
    let request = Message::builder()
        .properties(Properties {
            message_id: Some(message_id),
            ..Default::default()
        })
        .application_properties(
            ApplicationProperties::builder()
                .insert("operation", SimpleValue::String("put-token".into()))
                .insert(
                    "type",
                    SimpleValue::String("servicebus.windows.net:sastoken".into()),
                )
                .insert("name", SimpleValue::String(name.into()))
                .build(),
        )
        .value(token)
        .build();
    tx.send(request).await.unwrap();
    let answer = tokio::time::timeout(WAIT, rx.recv::<Body<Value>>())
        .await
        .unwrap()
        .unwrap();
    rx.accept(&answer).await.unwrap();
    let msg = answer.into_message();
    let status = match msg.application_properties.unwrap().0.get("status-code") {
        Some(SimpleValue::Int(n)) => *n,
        other => panic!("status-code {other:?}"),
    };
    tx.close().await.unwrap();
    rx.close().await.unwrap();
    (status, msg.properties.and_then(|p| p.correlation_id))
}

fn c2d(device_id: &str, body: Vec<u8>) -> Message<fe2o3_amqp::types::messaging::Data> {
    Message::builder()
        .properties(Properties {
            to: Some(format!("/devices/{device_id}/messages/devicebound")),
            message_id: Some(MessageId::String("mid-1".into())),
            correlation_id: Some(MessageId::String("cid-1".into())),
            content_type: Some(Symbol::from("text/plain")),
            ..Default::default()
        })
        .application_properties(
            ApplicationProperties::builder()
                .insert("myprop", SimpleValue::String("v1".into()))
                .insert("iothub-ack", SimpleValue::String("full".into()))
                .build(),
        )
        .data(Binary::from(body))
        .build()
}

fn rejected_with(outcome: Outcome) -> fe2o3_amqp::types::definitions::Error {
    match outcome {
        Outcome::Rejected(r) => r.error.unwrap(),
        other => panic!("expected rejected, got {other:?}"),
    }
}

#[tokio::test]
async fn cbs_answers_good_and_bad_tokens_with_the_request_id_type() {
    let emu = emulator().await;
    for sasl in [true, false] {
        let mut conn = connect(&emu, sasl).await;
        let mut session = Session::begin(&mut conn).await.unwrap();
        let bad = service_token("c2VjcmV0LWJ1dC13cm9uZy1rZXk=");
        let (status, cid) =
            put_token(&mut session, MessageId::Ulong(0), "https://localhost", bad).await;
        assert_eq!((status, cid), (401, Some(MessageId::Ulong(0))));
        let good = service_token(dev_keys::DEV_POLICY_PRIMARY_KEY);
        let id = MessageId::String("rhea-style".into());
        let (status, cid) = put_token(&mut session, id.clone(), "localhost", good).await;
        assert_eq!((status, cid), (200, Some(id)));
        session.end().await.unwrap();
        conn.close().await.unwrap();
    }
    emu.shutdown().await.unwrap();
}

#[tokio::test]
async fn devicebound_link_is_refused_before_a_token() {
    let emu = emulator().await;
    let mut conn = connect(&emu, true).await;
    let mut session = Session::begin(&mut conn).await.unwrap();
    let refused = match Sender::attach(&mut session, "early", "/messages/devicebound").await {
        Err(e) => format!("{e:?}"),
        Ok(mut s) => format!(
            "{:?}",
            s.send(c2d("myDevice", b"x".to_vec())).await.unwrap_err()
        ),
    };
    assert!(refused.contains("UnauthorizedAccess"), "{refused}");
    emu.shutdown().await.unwrap();
}

#[tokio::test]
async fn c2d_send_reaches_an_mqtt_device_and_bad_sends_are_rejected() {
    let emu = emulator().await;
    let id = dev_keys::DEV_DEVICE_ID;
    let password = SasToken::for_device(
        "localhost",
        id,
        &Secret::new(dev_keys::DEV_DEVICE_PRIMARY_KEY),
        far(),
    )
    .unwrap();
    let (dev, mut ev) = device(&emu, id, None, password.as_secret().expose());
    connack(&mut ev).await;
    dev.subscribe(
        format!("devices/{id}/messages/devicebound/#"),
        QoS::AtLeastOnce,
    )
    .await
    .unwrap();

    let mut conn = connect(&emu, true).await;
    let mut session = Session::begin(&mut conn).await.unwrap();
    let good = service_token(dev_keys::DEV_POLICY_PRIMARY_KEY);
    let (status, _) = put_token(&mut session, MessageId::Ulong(0), "https://localhost", good).await;
    assert_eq!(status, 200);
    // uamqp's form of the target, with scheme and host.
    let mut tx = Sender::attach(
        &mut session,
        "c2d",
        "amqps://localhost/messages/devicebound",
    )
    .await
    .unwrap();

    let outcome = tx.send(c2d(id, b"hello".to_vec())).await.unwrap();
    assert!(matches!(outcome, Outcome::Accepted(_)), "{outcome:?}");
    let publish = next_publish(&mut ev).await;
    assert_eq!(&publish.payload[..], b"hello");
    let topic = publish.topic.clone();
    for part in [
        "myprop=v1",
        "iothub-ack=full",
        "%24.mid=mid-1",
        "%24.cid=cid-1",
    ] {
        assert!(topic.contains(part), "{part} missing from {topic}");
    }

    let e = rejected_with(tx.send(c2d("nobody", b"x".to_vec())).await.unwrap());
    assert_eq!(e.condition, ErrorCondition::AmqpError(AmqpError::NotFound));

    let e = rejected_with(tx.send(c2d(id, vec![0; 64 * 1024 + 1])).await.unwrap());
    assert_eq!(e.description.as_deref(), Some("MessageTooLarge"));

    emu.hub().create_device("offline").unwrap();
    for _ in 0..50 {
        let outcome = tx.send(c2d("offline", b"q".to_vec())).await.unwrap();
        assert!(matches!(outcome, Outcome::Accepted(_)), "{outcome:?}");
    }
    let e = rejected_with(tx.send(c2d("offline", b"q".to_vec())).await.unwrap());
    assert_eq!(
        e.description.as_deref(),
        Some("DeviceMaximumQueueDepthExceeded")
    );

    tx.close().await.unwrap();
    session.end().await.unwrap();
    conn.close().await.unwrap();
    emu.shutdown().await.unwrap();
}

/// Opens an authorised session and a receiver on the feedback node (lower-case, as the docs
/// write it; the Node SDK writes `serviceBound`).
async fn feedback_receiver(
    emu: &RunningEmulator,
) -> (ConnectionHandle<()>, SessionHandle<()>, Receiver) {
    let mut conn = connect(emu, false).await;
    let mut session = Session::begin(&mut conn).await.unwrap();
    let good = service_token(dev_keys::DEV_POLICY_PRIMARY_KEY);
    let (status, _) = put_token(&mut session, MessageId::Ulong(1), "localhost", good).await;
    assert_eq!(status, 200);
    let rx = Receiver::attach(&mut session, "fb", "/messages/servicebound/feedback")
        .await
        .unwrap();
    (conn, session, rx)
}

/// The next feedback batch: the message and its records.
async fn next_batch(
    rx: &mut Receiver,
) -> (
    fe2o3_amqp::link::delivery::Delivery<Body<Value>>,
    Vec<serde_json::Value>,
) {
    let d = tokio::time::timeout(WAIT, rx.recv::<Body<Value>>())
        .await
        .unwrap()
        .unwrap();
    let props = d.message().properties.clone().unwrap();
    assert_eq!(
        props.content_type.unwrap().as_str(),
        "application/vnd.microsoft.iothub.feedback.json"
    );
    assert_eq!(props.user_id.unwrap().to_vec(), b"localhost".to_vec());
    let body = match &d.message().body {
        Body::Data(batch) => batch.iter().flat_map(|d| d.0.to_vec()).collect::<Vec<u8>>(),
        other => panic!("feedback body {other:?}"),
    };
    let records: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
    (d, records)
}

async fn send_c2d_with_ack(session: &mut SessionHandle<()>, device_id: &str, mid: &str, ack: &str) {
    let mut tx = Sender::attach(session, format!("c2d-{mid}"), "/messages/devicebound")
        .await
        .unwrap();
    let mut msg = c2d(device_id, b"fb".to_vec());
    msg.properties.as_mut().unwrap().message_id = Some(MessageId::String(mid.into()));
    msg.application_properties
        .as_mut()
        .unwrap()
        .0
        .insert("iothub-ack".into(), SimpleValue::String(ack.into()));
    let outcome = tx.send(msg).await.unwrap();
    assert!(matches!(outcome, Outcome::Accepted(_)), "{outcome:?}");
    tx.close().await.unwrap();
}

#[tokio::test]
async fn completion_gives_success_feedback_redelivered_until_accepted() {
    let emu = emulator().await;
    let id = dev_keys::DEV_DEVICE_ID;
    let password = SasToken::for_device(
        "localhost",
        id,
        &Secret::new(dev_keys::DEV_DEVICE_PRIMARY_KEY),
        far(),
    )
    .unwrap();
    let (dev, mut ev) = device(&emu, id, None, password.as_secret().expose());
    connack(&mut ev).await;
    dev.subscribe(
        format!("devices/{id}/messages/devicebound/#"),
        QoS::AtLeastOnce,
    )
    .await
    .unwrap();
    let (mut conn, mut session, mut rx) = feedback_receiver(&emu).await;
    send_c2d_with_ack(&mut session, id, "mid-positive", "positive").await;
    // rumqttc acknowledges (PUBACK) the message as it keeps polling.
    assert_eq!(&next_publish(&mut ev).await.payload[..], b"fb");
    let pump = tokio::spawn(async move {
        for _ in 0..1000 {
            if ev.poll().await.is_err() {
                break;
            }
        }
    });

    let (d, records) = next_batch(&mut rx).await;
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r["originalMessageId"], "mid-positive");
    assert_eq!(r["statusCode"], "Success");
    assert_eq!(r["description"], "Success");
    assert_eq!(r["deviceId"], id);
    assert!(r["enqueuedTimeUtc"].as_str().unwrap().ends_with('Z'));
    assert!(!r["deviceGenerationId"].as_str().unwrap().is_empty());
    // Released: the same record comes again.
    rx.release(&d).await.unwrap();
    let (d, again) = next_batch(&mut rx).await;
    assert_eq!(again, records);
    rx.accept(&d).await.unwrap();
    rx.close().await.unwrap();
    assert_eq!(emu.hub().pending_feedback(), 0);

    pump.abort();
    session.end().await.unwrap();
    conn.close().await.unwrap();
    emu.shutdown().await.unwrap();
}

#[tokio::test]
async fn expiry_by_the_hub_clock_gives_negative_feedback_only_when_asked() {
    let emu = emulator().await;
    emu.hub().create_device("sleeper").unwrap();
    let (mut conn, mut session, mut rx) = feedback_receiver(&emu).await;
    send_c2d_with_ack(&mut session, "sleeper", "mid-positive-only", "positive").await;
    send_c2d_with_ack(&mut session, "sleeper", "mid-negative", "negative").await;
    // The hub's default time to live is one hour.
    assert_eq!(
        emu.hub()
            .advance_clock(std::time::Duration::from_secs(3601))
            .unwrap(),
        2
    );
    let (d, records) = next_batch(&mut rx).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["originalMessageId"], "mid-negative");
    assert_eq!(records[0]["statusCode"], "Expired");
    rx.accept(&d).await.unwrap();
    // Both left the queue: nothing more expires.
    assert_eq!(
        emu.hub()
            .advance_clock(std::time::Duration::from_secs(3601))
            .unwrap(),
        0
    );
    rx.close().await.unwrap();
    session.end().await.unwrap();
    conn.close().await.unwrap();
    emu.shutdown().await.unwrap();
}

#[tokio::test]
async fn feedback_link_is_refused_before_a_token() {
    let emu = emulator().await;
    let mut conn = connect(&emu, false).await;
    let mut session = Session::begin(&mut conn).await.unwrap();
    let refused =
        match Receiver::attach(&mut session, "fb", "/messages/serviceBound/feedback").await {
            Err(e) => format!("{e:?}"),
            Ok(mut r) => format!("{:?}", r.recv::<Body<Value>>().await.unwrap_err()),
        };
    assert!(refused.contains("UnauthorizedAccess"), "{refused}");
    emu.shutdown().await.unwrap();
}

#[tokio::test]
async fn feedback_waiting_in_state_survives_a_restart() {
    let dir = std::env::temp_dir().join(format!("iot-emu-feedback-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let start = || {
        Emulator::builder()
            .state_dir(dir.join("state"))
            .cert_dir(dir.join("certs"))
            .start()
    };
    let emu = start().await.unwrap();
    emu.hub().create_device("sleeper").unwrap();
    {
        let mut conn = connect(&emu, true).await;
        let mut session = Session::begin(&mut conn).await.unwrap();
        let good = service_token(dev_keys::DEV_POLICY_PRIMARY_KEY);
        let (status, _) = put_token(&mut session, MessageId::Ulong(0), "localhost", good).await;
        assert_eq!(status, 200);
        send_c2d_with_ack(&mut session, "sleeper", "mid-durable", "full").await;
        session.end().await.unwrap();
        conn.close().await.unwrap();
    }
    let one_hour = std::time::Duration::from_secs(3601);
    assert_eq!(emu.hub().advance_clock(one_hour).unwrap(), 1);
    assert_eq!(emu.hub().pending_feedback(), 1);
    emu.shutdown().await.unwrap();

    let emu = start().await.unwrap();
    assert_eq!(emu.hub().pending_feedback(), 1);
    let (mut conn, mut session, mut rx) = feedback_receiver(&emu).await;
    let (d, records) = next_batch(&mut rx).await;
    assert_eq!(records[0]["originalMessageId"], "mid-durable");
    assert_eq!(records[0]["statusCode"], "Expired");
    rx.accept(&d).await.unwrap();
    rx.close().await.unwrap();
    session.end().await.unwrap();
    conn.close().await.unwrap();
    emu.shutdown().await.unwrap();

    // Accepted is forgotten in the state too.
    let emu = start().await.unwrap();
    assert_eq!(emu.hub().pending_feedback(), 0);
    emu.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
