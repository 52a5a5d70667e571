//! The telemetry reader against the in-process emulator's Event Hub-compatible endpoint, with
//! real devices (this workspace's `DeviceClient`) over TLS.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use iot_device::{DeviceClient, DeviceClientOptions, Message};
use iot_hub_emulator::{Emulator, RunningEmulator};
use iot_service::ErrorKind;
use iot_service::events::{EventReader, EventReaderOptions, EventStream, Position};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// How long one event may take to arrive before the test fails (not a timing assertion: a
/// bound so that a broken reader fails instead of hanging).
const WAIT: Duration = Duration::from_secs(20);

async fn device(hub: &RunningEmulator, id: &str) -> DeviceClient {
    let cs = hub.hub().create_device(id).unwrap();
    let options = DeviceClientOptions::new()
        .trust_ca_pem(hub.ca_pem())
        .unwrap();
    DeviceClient::from_connection_string(&cs, options)
        .await
        .unwrap()
}

fn options(hub: &RunningEmulator) -> EventReaderOptions {
    EventReaderOptions::new()
        .trust_ca_pem(hub.ca_pem())
        .unwrap()
        .amqp_port(hub.amqp_addr().port())
}

async fn send(dev: &DeviceClient, id: &str) {
    let msg = Message::new(format!("body of {id}"))
        .message_id(id)
        .correlation_id(format!("cid-{id}"))
        .content_type("text/plain")
        .content_encoding("utf-8")
        .property("kind", "test")
        .property("id", id);
    dev.send_telemetry(msg).await.unwrap();
}

async fn next(stream: &mut EventStream) -> iot_service::events::Event {
    tokio::time::timeout(WAIT, stream.next_event())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn the_hub_connection_string_reads_device_telemetry_with_its_properties() {
    let hub = Emulator::builder().start().await.unwrap();
    let dev = device(&hub, "reader-dev").await;
    for i in 0..3 {
        send(&dev, &format!("m{i}")).await;
    }
    // The hub's own connection string: the reader follows the hub's redirect.
    let reader =
        EventReader::from_connection_string(&hub.service_connection_string(), options(&hub))
            .await
            .unwrap();
    assert_eq!(reader.partition_ids(), ["0", "1", "2", "3"]);
    assert_eq!(reader.event_hub_name(), hub.event_hub_name());
    let mut stream = reader.read(Position::beginning()).await.unwrap();
    for i in 0..3 {
        let e = next(&mut stream).await;
        let id = format!("m{i}");
        assert_eq!(e.body_str(), Some(format!("body of {id}").as_str()));
        assert_eq!(e.device_id, "reader-dev");
        assert_eq!(e.module_id, None);
        assert_eq!(e.system.message_id.as_deref(), Some(id.as_str()));
        assert_eq!(e.system.correlation_id, Some(format!("cid-{id}")));
        assert_eq!(e.system.content_type.as_deref(), Some("text/plain"));
        assert_eq!(e.system.content_encoding.as_deref(), Some("utf-8"));
        assert_eq!(e.property("kind"), Some("test"));
        assert_eq!(e.property("id"), Some(id.as_str()));
        assert_eq!(e.sequence_number, i64::from(i));
        assert!(!e.enqueued_time.is_never());
        assert_eq!(
            stream.position().checkpoint(&e.partition),
            Some(e.sequence_number)
        );
    }
    // Live: a message sent now arrives on the open stream.
    send(&dev, "live").await;
    assert_eq!(
        next(&mut stream).await.system.message_id.as_deref(),
        Some("live")
    );
    stream.close().await;
    dev.close().await.unwrap();
    hub.shutdown().await.unwrap();
}

/// Ids of the events read until every id in `until` was seen, with how often each came.
async fn read_until(stream: &mut EventStream, until: &[String]) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..1000 {
        if until.iter().all(|u| seen.contains_key(u)) {
            return seen;
        }
        let e = next(stream).await;
        *seen.entry(e.system.message_id.unwrap()).or_insert(0) += 1;
    }
    panic!("the sentinels never came");
}

#[tokio::test]
async fn a_saved_position_resumes_without_losing_or_repeating_events() {
    let hub = Emulator::builder().start().await.unwrap();
    // Two devices, in two different partitions.
    let (a, b) = (device(&hub, "dev-a").await, device(&hub, "dev-b").await);
    let mut sent = Vec::new();
    for i in 0..5 {
        for (dev, name) in [(&a, "a"), (&b, "b")] {
            let id = format!("{name}{i}");
            send(dev, &id).await;
            sent.push(id);
        }
    }
    let cs = hub.event_hub_connection_string();
    let reader = EventReader::from_connection_string(&cs, options(&hub))
        .await
        .unwrap();
    let mut stream = reader.read(Position::beginning()).await.unwrap();
    let mut first = BTreeSet::new();
    for _ in 0..4 {
        first.insert(next(&mut stream).await.system.message_id.unwrap());
    }
    let saved = serde_json::to_string(stream.position()).unwrap();
    stream.close().await;

    for i in 5..8 {
        for (dev, name) in [(&a, "a"), (&b, "b")] {
            let id = format!("{name}{i}");
            send(dev, &id).await;
            sent.push(id);
        }
    }
    // A last message per device: within a partition events arrive in order, so a repeat or
    // a stray event would come before its partition's sentinel.
    let sentinels = vec!["a-end".to_owned(), "b-end".to_owned()];
    send(&a, "a-end").await;
    send(&b, "b-end").await;

    let position: Position = serde_json::from_str(&saved).unwrap();
    let reader = EventReader::from_connection_string(&cs, options(&hub))
        .await
        .unwrap();
    let mut stream = reader.read(position).await.unwrap();
    let rest = read_until(&mut stream, &sentinels).await;
    assert!(rest.values().all(|n| *n == 1), "repeated: {rest:?}");
    assert!(
        first.iter().all(|id| !rest.contains_key(id)),
        "read again: {first:?} / {rest:?}"
    );
    let mut all: BTreeSet<String> = first.into_iter().chain(rest.into_keys()).collect();
    for s in &sentinels {
        assert!(all.remove(s));
    }
    assert_eq!(
        all,
        sent.into_iter().collect::<BTreeSet<_>>(),
        "lost events"
    );
    stream.close().await;
    a.close().await.unwrap();
    b.close().await.unwrap();
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn reading_from_the_end_skips_what_was_sent_before() {
    let hub = Emulator::builder().start().await.unwrap();
    let dev = device(&hub, "dev-end").await;
    send(&dev, "old").await;
    let reader =
        EventReader::from_connection_string(&hub.event_hub_connection_string(), options(&hub))
            .await
            .unwrap();
    let mut stream = reader.read(Position::end()).await.unwrap();
    send(&dev, "new").await;
    assert_eq!(
        next(&mut stream).await.system.message_id.as_deref(),
        Some("new")
    );
    stream.close().await;
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_unknown_consumer_group_and_a_wrong_key_are_typed_errors() {
    let hub = Emulator::builder().start().await.unwrap();
    let reader = EventReader::from_connection_string(
        &hub.event_hub_connection_string(),
        options(&hub).consumer_group("nope"),
    )
    .await
    .unwrap();
    let mut stream = reader.read(Position::beginning()).await.unwrap();
    let err = tokio::time::timeout(WAIT, stream.next_event())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    stream.close().await;

    let wrong = hub
        .event_hub_connection_string()
        .replace("SharedAccessKey=", "SharedAccessKey=x");
    let err = EventReader::from_connection_string(&wrong, options(&hub))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized, "{err}");
    assert!(!format!("{err:?}").contains(&wrong), "the key leaked");
    hub.shutdown().await.unwrap();
}
