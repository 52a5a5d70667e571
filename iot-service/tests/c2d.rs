//! Cloud-to-device sends and feedback over AMQP against the in-process emulator, delivered to
//! this workspace's device client over MQTT.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use iot_device::{DeviceClient, DeviceClientOptions};
use iot_hub_emulator::{Emulator, RunningEmulator};
use iot_service::{
    C2dMessage, ErrorCode, ErrorKind, FeedbackRequest, FeedbackStatus, FeedbackStream,
    ServiceClient, ServiceClientOptions,
};
use std::time::Duration;

/// Generous bound on waiting for something that should happen at once.
const WAIT: Duration = Duration::from_secs(30);

async fn hub() -> RunningEmulator {
    Emulator::builder().start().await.unwrap()
}

fn service(hub: &RunningEmulator) -> ServiceClient {
    let options = ServiceClientOptions::new()
        .trust_ca_pem(hub.ca_pem())
        .unwrap()
        .amqp_port(hub.amqp_addr().port());
    ServiceClient::from_connection_string(&hub.service_connection_string(), options).unwrap()
}

async fn device(hub: &RunningEmulator, id: &str) -> DeviceClient {
    let cs = hub.hub().create_device(id).unwrap();
    let options = DeviceClientOptions::new()
        .trust_ca_pem(hub.ca_pem())
        .unwrap();
    DeviceClient::from_connection_string(&cs, options)
        .await
        .unwrap()
}

async fn next_records(feedback: &mut FeedbackStream) -> Vec<iot_service::FeedbackRecord> {
    let batch = tokio::time::timeout(WAIT, feedback.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let records = batch.records().to_vec();
    batch.complete().await.unwrap();
    records
}

#[tokio::test]
async fn send_c2d_reaches_the_device_with_its_properties_and_success_feedback() {
    let hub = hub().await;
    let dev = device(&hub, "c2d-dev").await;
    let mut inbox = dev.c2d_messages().await.unwrap();
    let svc = service(&hub);
    let mut feedback = svc.feedback().await.unwrap();
    svc.send_c2d(
        "c2d-dev",
        C2dMessage::new("hello")
            .message_id("mid-1")
            .correlation_id("cid-1")
            .content_type("text/plain")
            .content_encoding("utf-8")
            .expires_at(std::time::SystemTime::now() + Duration::from_secs(600))
            .feedback(FeedbackRequest::Full)
            .property("color", "blue"),
    )
    .await
    .unwrap();
    let msg = tokio::time::timeout(WAIT, inbox.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&msg.body[..], b"hello");
    let p = &msg.properties;
    assert_eq!(p.message_id.as_deref(), Some("mid-1"));
    assert_eq!(p.correlation_id.as_deref(), Some("cid-1"));
    assert_eq!(p.content_type.as_deref(), Some("text/plain"));
    assert_eq!(p.content_encoding.as_deref(), Some("utf-8"));
    assert_eq!(p.ack.as_deref(), Some("full"));
    assert!(p.expiry_time.is_some());
    assert!(p.custom.iter().any(|(k, v)| k == "color" && v == "blue"));

    // Taking the message from the stream completes it (PUBACK): Success.
    let records = next_records(&mut feedback).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].original_message_id, "mid-1");
    assert_eq!(records[0].status, FeedbackStatus::Success);
    assert_eq!(records[0].device_id, "c2d-dev");
    assert_eq!(hub.hub().pending_feedback(), 0);
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn refusals_are_typed() {
    let hub = hub().await;
    let svc = service(&hub);
    let e = svc
        .send_c2d("nobody", C2dMessage::new("x"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert_eq!(e.error_code(), Some(ErrorCode::DeviceNotFound));
    assert_eq!(e.status(), Some(404));

    hub.hub().create_device("offline").unwrap();
    let e = svc
        .send_c2d("offline", C2dMessage::new(vec![0u8; 64 * 1024 + 1]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{e}");
    assert!(!e.is_retryable());

    for n in 0..50 {
        svc.send_c2d("offline", C2dMessage::new(format!("m{n}")))
            .await
            .unwrap();
    }
    let e = svc
        .send_c2d("offline", C2dMessage::new("51st"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::QueueFull, "{e}");
    assert_eq!(
        e.error_code(),
        Some(ErrorCode::DeviceMaximumQueueDepthExceeded)
    );
    assert_eq!(e.numeric_code(), Some(403004));
    assert!(e.is_retryable());

    let e = svc.send_c2d("a/b", C2dMessage::new("x")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_wrong_key_is_unauthorized() {
    let hub = hub().await;
    let cs = format!(
        "HostName={};SharedAccessKeyName=iothubowner;SharedAccessKey=d3Jvbmcta2V5LXdyb25nLWtleQ==",
        hub.service_connection_string()
            .split(';')
            .find_map(|p| p.strip_prefix("HostName="))
            .unwrap()
    );
    let options = ServiceClientOptions::new()
        .trust_ca_pem(hub.ca_pem())
        .unwrap()
        .amqp_port(hub.amqp_addr().port());
    let svc = ServiceClient::from_connection_string(&cs, options).unwrap();
    let e = svc
        .send_c2d("myDevice", C2dMessage::new("x"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
    // The key never shows in what the error prints.
    assert!(!format!("{e} {e:?}").contains("d3Jvbmcta2V5"));
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn expiry_gives_negative_feedback_and_abandoned_batches_come_back() {
    let hub = hub().await;
    hub.hub().create_device("sleeper").unwrap();
    let svc = service(&hub);
    let mut feedback = svc.feedback().await.unwrap();
    svc.send_c2d(
        "sleeper",
        C2dMessage::new("late")
            .message_id("mid-neg")
            .feedback(FeedbackRequest::Negative),
    )
    .await
    .unwrap();
    svc.send_c2d(
        "sleeper",
        C2dMessage::new("late too")
            .message_id("mid-pos")
            .feedback(FeedbackRequest::Positive),
    )
    .await
    .unwrap();
    // Past the hub's default time to live (1 h) by its clock.
    assert_eq!(
        hub.hub().advance_clock(Duration::from_secs(3601)).unwrap(),
        2
    );
    let batch = tokio::time::timeout(WAIT, feedback.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(batch.records().len(), 1);
    assert_eq!(batch.records()[0].original_message_id, "mid-neg");
    assert_eq!(batch.records()[0].status, FeedbackStatus::Expired);
    batch.abandon().await.unwrap();
    let records = next_records(&mut feedback).await;
    assert_eq!(records[0].original_message_id, "mid-neg");
    assert_eq!(hub.hub().pending_feedback(), 0);
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn sends_and_feedback_continue_after_the_connection_is_lost() {
    let hub = hub().await;
    let dev = device(&hub, "again").await;
    let mut inbox = dev.c2d_messages().await.unwrap();
    let svc = service(&hub);
    let mut feedback = svc.feedback().await.unwrap();
    svc.send_c2d("again", C2dMessage::new("one")).await.unwrap();
    assert_eq!(
        &tokio::time::timeout(WAIT, inbox.next())
            .await
            .unwrap()
            .unwrap()
            .body[..],
        b"one"
    );
    hub.hub().disconnect_amqp();
    // The send that finds the connection gone fails retryably (it is not sent twice
    // behind the caller's back); the next one opens a new connection.
    let mut delivered = false;
    for _ in 0..3 {
        match svc
            .send_c2d(
                "again",
                C2dMessage::new("two")
                    .message_id("mid-two")
                    .feedback(FeedbackRequest::Positive),
            )
            .await
        {
            Ok(()) => {
                delivered = true;
                break;
            }
            Err(e) => assert!(e.is_retryable(), "{e}"),
        }
    }
    assert!(delivered);
    assert_eq!(
        &tokio::time::timeout(WAIT, inbox.next())
            .await
            .unwrap()
            .unwrap()
            .body[..],
        b"two"
    );
    // The feedback receiver was attached again on the new connection.
    let records = next_records(&mut feedback).await;
    assert_eq!(records[0].original_message_id, "mid-two");
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn concurrent_sends_share_the_connection_and_all_arrive() {
    let hub = hub().await;
    let dev = device(&hub, "busy").await;
    let mut inbox = dev.c2d_messages().await.unwrap();
    let svc = service(&hub);
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..40 {
        let svc = svc.clone();
        sends.spawn(async move { svc.send_c2d("busy", C2dMessage::new(format!("m{i}"))).await });
    }
    for r in sends.join_all().await {
        r.unwrap();
    }
    let mut got = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let m = tokio::time::timeout(WAIT, inbox.next())
            .await
            .unwrap()
            .unwrap();
        got.insert(String::from_utf8(m.body.to_vec()).unwrap());
    }
    assert_eq!(got.len(), 40);
    hub.shutdown().await.unwrap();
}
