//! The Event Hub-compatible endpoint over real TLS sockets, read with a fe2o3-amqp client as
//! azure-eventhub reads it: CBS with the `sb://` audience, partition receivers with selector
//! filters and epochs, `$management` READ, retention and `--state`.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::link::{Receiver, RecvError, Sender};
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::definitions::{ErrorCondition, LinkError};
use fe2o3_amqp::types::messaging::annotations::OwnedKey;
use fe2o3_amqp::types::messaging::map_builder::MapBuilder;
use fe2o3_amqp::types::messaging::{
    ApplicationProperties, Body, Message, MessageId, Properties, Source,
};
use fe2o3_amqp::types::primitives::{OrderedMap, SimpleValue, Symbol, Value};
use fe2o3_amqp::{Connection, Session};
use iot_common::{SasToken, Secret};
use iot_hub_emulator::{Emulator, RunningEmulator, dev_keys};
use rumqttc::{Event, Packet, QoS};
use serde_amqp::described::Described;
use serde_amqp::descriptor::Descriptor;
use std::sync::Arc;
use support::{EVENTS, WAIT, connack, device, far, roots};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A key for the test devices (base64 of 32 bytes).
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// A session authorised on `$cbs` as azure-eventhub does it: audience `sb://{host}/{entity}`,
/// token scoped to the URL-encoded `sb://` URI of the entity.
struct Client {
    conn: ConnectionHandle<()>,
    session: SessionHandle<()>,
}

impl Client {
    async fn open(emu: &RunningEmulator) -> Self {
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
        let mut conn = Connection::builder()
            .container_id("event-hub-test")
            .hostname("localhost")
            .sasl_profile(SaslProfile::Anonymous)
            .open_with_stream(tls)
            .await
            .unwrap();
        let mut session = Session::begin(&mut conn).await.unwrap();
        let audience = format!("sb://localhost/{}", emu.event_hub_name());
        let token = SasToken::for_event_hub(
            &audience,
            "iothubowner",
            &Secret::new(dev_keys::DEV_POLICY_PRIMARY_KEY),
            far(),
        )
        .unwrap();
        let answer = request(
            &mut session,
            "$cbs",
            ApplicationProperties::builder()
                .insert("operation", SimpleValue::String("put-token".into()))
                .insert(
                    "type",
                    SimpleValue::String("servicebus.windows.net:sastoken".into()),
                )
                .insert("name", SimpleValue::String(audience)),
            Value::String(token.as_secret().expose().to_owned()),
        )
        .await;
        assert_eq!(answer.0, 200, "put-token");
        Self { conn, session }
    }

    async fn receiver(
        &mut self,
        emu: &RunningEmulator,
        partition: u32,
        filter: Option<&str>,
        epoch: Option<i64>,
    ) -> Result<Receiver, String> {
        let address = format!(
            "amqps://localhost/{}/ConsumerGroups/$Default/Partitions/{partition}",
            emu.event_hub_name()
        );
        let mut source = Source::builder().address(address);
        if let Some(f) = filter {
            let mut set = OrderedMap::new();
            set.insert(
                Symbol::from("apache.org:selector-filter:string"),
                Value::Described(Box::new(Described {
                    descriptor: Descriptor::Name(Symbol::from("apache.org:selector-filter:string")),
                    value: Value::String(f.to_owned()),
                })),
            );
            source = source.filter(set);
        }
        let mut b = Receiver::builder()
            .name(format!("receiver-{partition}-{epoch:?}-{filter:?}"))
            .source(source.build())
            .target("receiver-link");
        if let Some(e) = epoch {
            let mut props = OrderedMap::new();
            props.insert(Symbol::from("com.microsoft:epoch"), Value::Long(e));
            b = b.properties(props);
        }
        b.attach(&mut self.session)
            .await
            .map_err(|e| format!("{e:?}"))
    }

    async fn close(mut self) {
        let _ = self.session.end().await;
        let _ = self.conn.close().await;
    }
}

/// Sends one request on `node` (a sender and a receiver link, as the SDKs pair them) and
/// returns the answer's status code and body.
async fn request(
    session: &mut SessionHandle<()>,
    node: &str,
    app: MapBuilder<String, SimpleValue, ApplicationProperties>,
    body: Value,
) -> (i32, Value) {
    let mut tx = Sender::attach(session, format!("{node}-sender"), node)
        .await
        .unwrap();
    let mut rx = Receiver::attach(session, format!("{node}-receiver"), node)
        .await
        .unwrap();
    let id = MessageId::Uuid(fe2o3_amqp::types::primitives::Uuid::from([7u8; 16]));
    let msg = Message::builder()
        .properties(Properties {
            message_id: Some(id.clone()),
            ..Default::default()
        })
        .application_properties(app.build())
        .value(body)
        .build();
    tx.send(msg).await.unwrap();
    let answer = tokio::time::timeout(WAIT, rx.recv::<Body<Value>>())
        .await
        .unwrap()
        .unwrap();
    rx.accept(&answer).await.unwrap();
    let msg = answer.into_message();
    assert_eq!(msg.properties.as_ref().unwrap().correlation_id, Some(id));
    let status = match msg.application_properties.unwrap().0.get("status-code") {
        Some(SimpleValue::Int(n)) => *n,
        other => panic!("status-code {other:?}"),
    };
    let body = match msg.body {
        Body::Value(v) => v.0,
        other => panic!("body {other:?}"),
    };
    tx.close().await.unwrap();
    rx.close().await.unwrap();
    (status, body)
}

/// Publishes `n` telemetry messages (QoS 1, each acknowledged) from `device_id` with
/// property bag `bag`; bodies are `{prefix}-{i}`.
async fn send(emu: &RunningEmulator, device_id: &str, bag: &str, prefix: &str, n: usize) {
    let password = SasToken::for_device("localhost", device_id, &Secret::new(KEY), far()).unwrap();
    let (dev, mut ev) = device(emu, device_id, None, password.as_secret().expose());
    connack(&mut ev).await;
    for i in 0..n {
        dev.publish(
            format!("devices/{device_id}/messages/events/{bag}"),
            QoS::AtLeastOnce,
            false,
            format!("{prefix}-{i}"),
        )
        .await
        .unwrap();
        let mut acked = false;
        for _ in 0..EVENTS {
            let e = tokio::time::timeout(WAIT, ev.poll())
                .await
                .unwrap()
                .unwrap();
            if let Event::Incoming(Packet::PubAck(_)) = e {
                acked = true;
                break;
            }
        }
        assert!(acked, "no PUBACK");
    }
    dev.disconnect().await.unwrap();
    for _ in 0..EVENTS {
        if tokio::time::timeout(WAIT, ev.poll())
            .await
            .unwrap()
            .is_err()
        {
            break;
        }
    }
}

/// The device's partition: the emulator's documented hash (FNV-1a 32 of the id, mod 4).
fn partition_of(device_id: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in device_id.as_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % 4
}

async fn next(rx: &mut Receiver) -> Message<Body<Value>> {
    tokio::time::timeout(WAIT, rx.recv::<Body<Value>>())
        .await
        .unwrap()
        .unwrap()
        .into_message()
}

fn body(m: &Message<Body<Value>>) -> String {
    match &m.body {
        Body::Data(d) => String::from_utf8(d.iter().flat_map(|d| d.0.to_vec()).collect()).unwrap(),
        other => panic!("body {other:?}"),
    }
}

fn annotation<'m>(m: &'m Message<Body<Value>>, key: &str) -> &'m Value {
    m.message_annotations
        .as_ref()
        .unwrap()
        .0
        .get(&OwnedKey::from(Symbol::from(key)))
        .unwrap_or_else(|| panic!("no annotation {key}"))
}

fn seq(m: &Message<Body<Value>>) -> i64 {
    match annotation(m, "x-opt-sequence-number") {
        Value::Long(n) => *n,
        other => panic!("sequence number {other:?}"),
    }
}

async fn emulator() -> RunningEmulator {
    Emulator::builder()
        .device("dev-a", Some(Secret::new(KEY)))
        .device("dev-b", Some(Secret::new(KEY)))
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn events_carry_the_hubs_annotations_and_the_property_bag() {
    let emu = emulator().await;
    let bag = "%24.mid=mid-1&%24.cid=cid-1&%24.ct=application%2Fjson&%24.ce=utf-8&alert=true&my%20prop=v%201";
    send(&emu, "dev-a", bag, "hello", 2).await;
    let mut client = Client::open(&emu).await;
    let mut rx = client
        .receiver(
            &emu,
            partition_of("dev-a"),
            Some("amqp.annotation.x-opt-offset > '-1'"),
            None,
        )
        .await
        .unwrap();
    let m = next(&mut rx).await;
    assert_eq!(body(&m), "hello-0");
    assert_eq!(
        annotation(&m, "iothub-connection-device-id"),
        &Value::String("dev-a".into())
    );
    assert_eq!(
        annotation(&m, "iothub-message-source"),
        &Value::String("Telemetry".into())
    );
    assert_eq!(seq(&m), 0);
    assert_eq!(annotation(&m, "x-opt-offset"), &Value::String("0".into()));
    assert!(matches!(
        annotation(&m, "x-opt-enqueued-time"),
        Value::Timestamp(_)
    ));
    assert!(matches!(
        annotation(&m, "iothub-enqueuedtime"),
        Value::Timestamp(_)
    ));
    let auth = annotation(&m, "iothub-connection-auth-method");
    assert!(
        matches!(auth, Value::String(s) if s.contains(r#""type":"sas""#)),
        "{auth:?}"
    );
    let p = m.properties.as_ref().unwrap();
    assert_eq!(p.message_id, Some(MessageId::String("mid-1".into())));
    assert_eq!(p.correlation_id, Some(MessageId::String("cid-1".into())));
    assert_eq!(
        p.content_type.as_ref().map(Symbol::as_str),
        Some("application/json")
    );
    assert_eq!(
        p.content_encoding.as_ref().map(Symbol::as_str),
        Some("utf-8")
    );
    let app = &m.application_properties.as_ref().unwrap().0;
    assert_eq!(app.get("alert"), Some(&SimpleValue::String("true".into())));
    assert_eq!(app.get("my prop"), Some(&SimpleValue::String("v 1".into())));
    assert_eq!(seq(&next(&mut rx).await), 1);

    // Live tailing: an event sent now arrives on the open link.
    send(&emu, "dev-a", "", "live", 1).await;
    let m = next(&mut rx).await;
    assert_eq!((body(&m), seq(&m)), ("live-0".to_owned(), 2));
    rx.close().await.unwrap();
    client.close().await;
    emu.shutdown().await.unwrap();
}

#[tokio::test]
async fn receivers_start_at_offset_sequence_number_time_or_the_end() {
    let emu = emulator().await;
    send(&emu, "dev-b", "", "m", 4).await;
    let p = partition_of("dev-b");
    let mut client = Client::open(&emu).await;
    let mut all = client.receiver(&emu, p, None, None).await.unwrap();
    let mut events = Vec::new();
    for _ in 0..4 {
        events.push(next(&mut all).await);
    }
    all.close().await.unwrap();
    let offset = |m: &Message<Body<Value>>| match annotation(m, "x-opt-offset") {
        Value::String(s) => s.clone(),
        other => panic!("{other:?}"),
    };
    let time = |m: &Message<Body<Value>>| match annotation(m, "x-opt-enqueued-time") {
        Value::Timestamp(t) => t.milliseconds(),
        other => panic!("{other:?}"),
    };
    let cases = [
        (
            format!("amqp.annotation.x-opt-offset > '{}'", offset(&events[1])),
            2,
        ),
        (
            format!("amqp.annotation.x-opt-offset >= '{}'", offset(&events[1])),
            1,
        ),
        ("amqp.annotation.x-opt-sequence-number > '2'".to_owned(), 3),
        ("amqp.annotation.x-opt-sequence-number >= '2'".to_owned(), 2),
        (
            format!(
                "amqp.annotation.x-opt-enqueued-time >= '{}'",
                time(&events[0])
            ),
            0,
        ),
    ];
    for (filter, first) in cases {
        let mut rx = client.receiver(&emu, p, Some(&filter), None).await.unwrap();
        assert_eq!(seq(&next(&mut rx).await), first, "{filter}");
        rx.close().await.unwrap();
    }
    // From the end: only what is sent after the attach.
    let mut latest = client
        .receiver(
            &emu,
            p,
            Some("amqp.annotation.x-opt-offset > '@latest'"),
            None,
        )
        .await
        .unwrap();
    send(&emu, "dev-b", "", "after", 1).await;
    let m = next(&mut latest).await;
    assert_eq!((body(&m), seq(&m)), ("after-0".to_owned(), 4));
    latest.close().await.unwrap();
    client.close().await;
    emu.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_higher_epoch_receiver_takes_the_partition() {
    let emu = emulator().await;
    let mut client = Client::open(&emu).await;
    let mut low = client.receiver(&emu, 0, None, Some(1)).await.unwrap();
    // A receiver without an epoch may not join an epoch receiver.
    let refused = client.receiver(&emu, 0, None, None).await;
    let refused = match refused {
        Err(e) => e,
        Ok(mut r) => format!("{:?}", r.recv::<Body<Value>>().await.unwrap_err()),
    };
    assert!(refused.contains("Stolen"), "{refused}");
    let _high = client.receiver(&emu, 0, None, Some(2)).await.unwrap();
    let kicked = tokio::time::timeout(WAIT, low.recv::<Body<Value>>())
        .await
        .unwrap();
    match kicked {
        Err(RecvError::LinkStateError(e)) => {
            let text = format!("{e:?}");
            assert!(
                text.contains("Stolen") && text.contains("higher epoch"),
                "{text}"
            );
        }
        Err(e) => {
            let text = format!("{e:?}");
            assert!(text.contains("Stolen"), "{text}");
        }
        Ok(d) => panic!("expected a detach, got {d:?}"),
    }
    let _ = ErrorCondition::LinkError(LinkError::Stolen);
    client.close().await;
    emu.shutdown().await.unwrap();
}

fn map_get<'v>(v: &'v Value, key: &str) -> &'v Value {
    match v {
        Value::Map(m) => m
            .get(&Value::String(key.into()))
            .unwrap_or_else(|| panic!("no {key} in {m:?}")),
        other => panic!("not a map: {other:?}"),
    }
}

#[tokio::test]
async fn management_reads_hub_and_partition_information() {
    let emu = emulator().await;
    send(&emu, "dev-a", "", "x", 2).await;
    let mut client = Client::open(&emu).await;
    let read = |kind: &str, partition: Option<u32>| {
        let mut app = ApplicationProperties::builder()
            .insert("operation", SimpleValue::String("READ".into()))
            .insert("type", SimpleValue::String(kind.into()))
            .insert("name", SimpleValue::String(emu.event_hub_name().into()));
        if let Some(p) = partition {
            app = app.insert("partition", SimpleValue::String(p.to_string()));
        }
        app
    };
    let (status, hub) = request(
        &mut client.session,
        "$management",
        read("com.microsoft:eventhub", None),
        Value::Null,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        map_get(&hub, "name"),
        &Value::String(emu.event_hub_name().into())
    );
    assert!(matches!(map_get(&hub, "created_at"), Value::Timestamp(_)));
    let ids = match map_get(&hub, "partition_ids") {
        Value::Array(a) => a.iter().cloned().collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(ids, ["0", "1", "2", "3"].map(|s| Value::String(s.into())));

    let p = partition_of("dev-a");
    let (status, info) = request(
        &mut client.session,
        "$management",
        read("com.microsoft:partition", Some(p)),
        Value::Null,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(map_get(&info, "partition"), &Value::String(p.to_string()));
    assert_eq!(map_get(&info, "begin_sequence_number"), &Value::Long(0));
    assert_eq!(
        map_get(&info, "last_enqueued_sequence_number"),
        &Value::Long(1)
    );
    assert!(matches!(map_get(&info, "last_enqueued_offset"), Value::String(s) if s != "0"));
    assert!(matches!(
        map_get(&info, "last_enqueued_time_utc"),
        Value::Timestamp(_)
    ));
    assert_eq!(map_get(&info, "is_partition_empty"), &Value::Bool(false));

    let empty = (0..4)
        .find(|q| *q != p && *q != partition_of("dev-b"))
        .unwrap();
    let (_, info) = request(
        &mut client.session,
        "$management",
        read("com.microsoft:partition", Some(empty)),
        Value::Null,
    )
    .await;
    assert_eq!(map_get(&info, "is_partition_empty"), &Value::Bool(true));
    client.close().await;
    emu.shutdown().await.unwrap();
}

#[tokio::test]
async fn retention_drops_the_oldest_events_and_state_keeps_the_rest() {
    let dir = support::TempDir::new("event-hub-state");
    let start = || {
        Emulator::builder()
            .device("dev-a", Some(Secret::new(KEY)))
            .event_retention_bytes(2000)
            .state_dir(dir.0.clone())
            .start()
    };
    let emu = start().await.unwrap();
    send(&emu, "dev-a", "", "r", 20).await;
    let p = partition_of("dev-a");
    let mut client = Client::open(&emu).await;
    let mut rx = client.receiver(&emu, p, None, None).await.unwrap();
    let first = next(&mut rx).await;
    let begin = seq(&first);
    assert!(begin > 0, "the oldest events were dropped");
    rx.close().await.unwrap();
    client.close().await;
    emu.shutdown().await.unwrap();

    // After a restart the same events are there with the same numbers, and numbering goes on.
    let emu = start().await.unwrap();
    let mut client = Client::open(&emu).await;
    let mut rx = client.receiver(&emu, p, None, None).await.unwrap();
    let m = next(&mut rx).await;
    assert_eq!((seq(&m), body(&m)), (begin, body(&first)));
    send(&emu, "dev-a", "", "again", 1).await;
    let mut last = m;
    while body(&last) != "again-0" {
        last = next(&mut rx).await;
    }
    assert_eq!(seq(&last), 20);
    rx.close().await.unwrap();
    client.close().await;
    emu.shutdown().await.unwrap();
}

#[tokio::test]
async fn declared_consumer_groups_read_and_unknown_ones_are_refused() {
    let emu = Emulator::builder()
        .device("dev-a", Some(Secret::new(KEY)))
        .consumer_group("dashboard")
        .start()
        .await
        .unwrap();
    let p = partition_of("dev-a");
    let mut client = Client::open(&emu).await;
    let address = |group: &str| {
        format!(
            "amqps://localhost/{}/ConsumerGroups/{group}/Partitions/{p}",
            emu.event_hub_name()
        )
    };
    let mut dashboard = Receiver::attach(&mut client.session, "dash", address("Dashboard"))
        .await
        .unwrap();
    send(&emu, "dev-a", "", "g", 1).await;
    assert_eq!(body(&next(&mut dashboard).await), "g-0");
    let refused = match Receiver::attach(&mut client.session, "nope", address("nope")).await {
        Err(e) => format!("{e:?}"),
        Ok(mut rx) => format!("{:?}", rx.recv::<Body<Value>>().await.unwrap_err()),
    };
    assert!(refused.contains("NotFound"), "{refused}");
    client.close().await;
    emu.shutdown().await.unwrap();
}
