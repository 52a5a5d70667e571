//! Session tests: synthetic time, no sockets, no tokio.

use super::*;
use crate::twin::DesiredKind;
use serde_json::json;

fn limits() -> Limits {
    Limits {
        backoff: Backoff {
            min: Duration::from_secs(1),
            max: Duration::from_secs(100),
            max_jitter: Duration::from_secs(5),
        },
        max_reconnect_attempts: None,
        retry_initial_connect: false,
        queue_messages: 3,
        queue_bytes: 1 << 20,
        queue_policy: QueueFullPolicy::Reject,
        desired_capacity: 4,
        c2d_capacity: 2,
        renewable: true,
        resync_timeout: Duration::from_secs(10),
    }
}

fn session(l: Limits) -> DeviceSession {
    DeviceSession::new(l, "dev".into(), None)
}

fn actions(s: &mut DeviceSession) -> Vec<Action> {
    std::iter::from_fn(|| s.poll_action()).collect()
}

/// Hands everything that may go now to a pretend rumqttc and returns it.
fn transmit(s: &mut DeviceSession) -> Vec<Transmit> {
    let mut out = Vec::new();
    while let Some(t) = s.poll_transmit() {
        s.handed();
        out.push(t);
        assert!(out.len() < 1000, "poll_transmit must run dry");
    }
    out
}

/// A connected session whose first SUBSCRIBE (twin responses) was acknowledged.
fn connected(l: Limits) -> (DeviceSession, Instant) {
    let now = Instant::now();
    let mut s = session(l);
    s.on_connack(false, now);
    assert_eq!(
        transmit(&mut s),
        [Transmit::Subscribe {
            filters: vec![topic::TWIN_RESPONSE_FILTER.to_owned()]
        }]
    );
    s.on_outgoing_subscribe(1);
    s.on_suback(1, true);
    actions(&mut s);
    (s, now)
}

fn telemetry(s: &mut DeviceSession, n: u8) -> Result<OpId, QueueFull> {
    s.submit_telemetry("devices/dev/messages/events/".into(), Bytes::from(vec![n]))
}

fn twin_json(version: u64, desired: Value) -> Bytes {
    let mut d = desired;
    d["$version"] = json!(version);
    Bytes::from(serde_json::to_vec(&json!({"desired": d, "reported": {"$version": 1}})).unwrap())
}

fn rid_of(t: &Transmit) -> String {
    let Transmit::Publish { topic, .. } = t else {
        panic!("not a publish: {t:?}")
    };
    topic.split("$rid=").nth(1).unwrap().to_owned()
}

fn patch(s: &mut DeviceSession, version: u64, body: Value, pkid: u16) {
    s.on_publish(
        &topic::desired_patch_topic(version),
        Bytes::from(serde_json::to_vec(&body).unwrap()),
        pkid,
    );
}

fn desired_versions(s: &mut DeviceSession) -> Vec<(u64, DesiredKind)> {
    std::iter::from_fn(|| s.take_desired())
        .map(|u| (u.version, u.kind))
        .collect()
}

#[test]
fn reconnect_backoff_grows_within_jitter_bounds() {
    let (mut s, _) = connected(limits());
    let mut delays = Vec::new();
    for (i, jitter) in [0.0, 1.0, 0.5, 0.0, 1.0, 0.0, 0.0, 0.0]
        .into_iter()
        .enumerate()
    {
        s.on_connection_lost(Loss::Transient, jitter);
        let a = actions(&mut s);
        assert_eq!(
            a[0],
            Action::Status(ConnectionStatus::Disconnected {
                reason: DisconnectReason::ConnectionLost,
                attempt: i as u32
            })
        );
        let Action::Reconnect(d) = a[1] else {
            panic!("{a:?}")
        };
        delays.push(d);
    }
    let secs: Vec<f64> = delays.iter().map(Duration::as_secs_f64).collect();
    assert_eq!(secs, [1.0, 7.0, 6.5, 8.0, 21.0, 32.0, 64.0, 100.0]);
    // A successful CONNACK starts the backoff again.
    s.on_connack(true, Instant::now());
    s.on_connection_lost(Loss::Transient, 0.0);
    assert!(actions(&mut s).contains(&Action::Reconnect(Duration::from_secs(1))));
}

#[test]
fn gives_up_after_max_attempts_and_on_second_refusal() {
    let mut l = limits();
    l.max_reconnect_attempts = Some(2);
    let (mut s, _) = connected(l);
    s.on_connection_lost(Loss::Transient, 0.0);
    s.on_connection_lost(Loss::Transient, 0.0);
    s.on_connection_lost(Loss::Transient, 0.0);
    assert!(actions(&mut s).contains(&Action::Close(CloseReason::RetriesExhausted)));

    let (mut s, _) = connected(limits());
    s.on_connection_lost(Loss::Refused, 0.0);
    assert!(!s.is_closed(), "one retry with a fresh token");
    s.on_connection_lost(Loss::Refused, 0.0);
    assert!(actions(&mut s).contains(&Action::Close(CloseReason::Unauthorized)));
}

#[test]
fn first_connect_failure_is_final_unless_retrying() {
    let mut s = session(limits());
    s.on_connection_lost(Loss::Transient, 0.0);
    assert!(s.is_closed());
    let mut l = limits();
    l.retry_initial_connect = true;
    let mut s = session(l);
    s.on_connection_lost(Loss::Transient, 0.0);
    assert!(!s.is_closed());
}

#[test]
fn an_untrusted_certificate_is_final_even_when_retrying() {
    let mut l = limits();
    l.retry_initial_connect = true;
    let mut s = session(l.clone());
    s.on_connection_lost(Loss::Certificate, 0.0);
    assert!(actions(&mut s).contains(&Action::Close(CloseReason::Certificate)));
    let mut s = session(l.clone());
    s.on_connection_lost(Loss::Refused, 0.0);
    assert!(actions(&mut s).contains(&Action::Close(CloseReason::Unauthorized)));
    // After a connection, too: retrying cannot make the certificate trusted.
    let (mut s, _) = connected(l);
    s.on_connection_lost(Loss::Certificate, 0.0);
    assert!(actions(&mut s).contains(&Action::Close(CloseReason::Certificate)));
}

#[test]
fn resubscribes_after_reconnect_without_session_first() {
    let (mut s, now) = connected(limits());
    assert_eq!(s.want(sub::METHODS | sub::MESSAGES).map(|_| ()), Some(()));
    transmit(&mut s);
    s.on_outgoing_subscribe(2);
    s.on_suback(2, true);
    s.on_connection_lost(Loss::Transient, 0.0);
    let t = telemetry(&mut s, 1).unwrap();
    assert!(
        transmit(&mut s).is_empty(),
        "nothing goes out while disconnected"
    );

    // The hub kept the session: no SUBSCRIBE.
    s.on_connack(true, now);
    assert!(matches!(transmit(&mut s)[..], [Transmit::Publish { .. }]));
    s.on_outgoing_publish(3);
    s.on_puback(3);
    assert!(actions(&mut s).contains(&Action::Complete(t, Outcome::Acked)));

    // It did not: every wanted filter again, before the queued telemetry.
    s.on_connection_lost(Loss::Transient, 0.0);
    telemetry(&mut s, 2).unwrap();
    s.on_connack(false, now);
    let sent = transmit(&mut s);
    assert_eq!(
        sent[0],
        Transmit::Subscribe {
            filters: vec![
                topic::TWIN_RESPONSE_FILTER.to_owned(),
                topic::METHODS_FILTER.to_owned(),
                topic::c2d_filter("dev"),
            ]
        }
    );
    assert!(matches!(sent[1], Transmit::Publish { .. }));
}

#[test]
fn token_renewal_at_85_percent_or_two_keep_alives_early() {
    let (mut s, now) = connected(limits());
    s.on_token(now, Duration::from_secs(3600), Duration::from_secs(60));
    assert_eq!(s.poll_timeout(), Some(now + Duration::from_secs(3060)));
    s.handle_timeout(now + Duration::from_secs(3059));
    assert!(actions(&mut s).is_empty());
    let sent = telemetry(&mut s, 1).unwrap();
    transmit(&mut s);
    s.handle_timeout(now + Duration::from_secs(3060));
    assert_eq!(
        actions(&mut s),
        [
            Action::Status(ConnectionStatus::Disconnected {
                reason: DisconnectReason::TokenRenewal,
                attempt: 0
            }),
            Action::RenewToken
        ]
    );
    assert_eq!(s.poll_timeout(), None);
    // The unacknowledged message goes out again on the renewed connection.
    s.on_connack(true, now);
    assert_eq!(transmit(&mut s).len(), 1);
    s.on_outgoing_publish(9);
    s.on_puback(9);
    assert!(actions(&mut s).contains(&Action::Complete(sent, Outcome::Acked)));

    // A short lifetime: two keep-alives and a second of margin, but never before half.
    s.on_token(now, Duration::from_secs(60), Duration::from_secs(6));
    assert_eq!(s.poll_timeout(), Some(now + Duration::from_secs(47)));
    s.on_token(now, Duration::from_secs(10), Duration::from_secs(6));
    assert_eq!(s.poll_timeout(), Some(now + Duration::from_secs(5)));
}

#[test]
fn cancelled_call_never_takes_another_calls_ack() {
    let (mut s, _) = connected(limits());
    let a = telemetry(&mut s, 1).unwrap();
    let b = telemetry(&mut s, 2).unwrap();
    let c = telemetry(&mut s, 3).unwrap();
    // `a` handed to rumqttc, then cancelled before its packet id is known.
    assert!(s.poll_transmit().is_some());
    s.handed();
    s.cancel(a);
    // `b` cancelled while still queued: it never goes out.
    s.cancel(b);
    assert_eq!(
        transmit(&mut s),
        [Transmit::Publish {
            topic: "devices/dev/messages/events/".into(),
            payload: Bytes::from(vec![3])
        }]
    );
    s.on_outgoing_publish(5); // a's packet
    s.on_outgoing_publish(6); // c's packet
    s.on_puback(6);
    assert_eq!(actions(&mut s), [Action::Complete(c, Outcome::Acked)]);
    s.on_puback(5);
    assert!(
        actions(&mut s).is_empty(),
        "a was cancelled: nobody to resolve"
    );
    assert_eq!(s.pending_ops(), 0);
}

#[test]
fn cancelled_twin_request_ignores_its_late_answer() {
    let (mut s, _) = connected(limits());
    let a = s.submit_twin(None);
    let b = s.submit_twin(None);
    let sent = transmit(&mut s);
    s.cancel(a);
    s.on_outgoing_publish(2);
    s.on_outgoing_publish(3);
    s.on_puback(2);
    s.on_puback(3);
    let body = twin_json(1, json!({}));
    s.on_publish(
        &topic::twin_response_topic(200, &rid_of(&sent[0]), None),
        body.clone(),
        4,
    );
    assert!(actions(&mut s).is_empty());
    s.on_publish(
        &topic::twin_response_topic(200, &rid_of(&sent[1]), None),
        body.clone(),
        5,
    );
    assert_eq!(
        actions(&mut s),
        [Action::Complete(b, Outcome::Twin(200, None, body))]
    );
}

#[test]
fn queue_full_rejects_by_count_and_bytes() {
    let (mut s, _) = connected(limits());
    s.on_connection_lost(Loss::Transient, 0.0);
    actions(&mut s);
    for n in 0..3 {
        telemetry(&mut s, n).unwrap();
    }
    assert_eq!(telemetry(&mut s, 9), Err(QueueFull));
    assert_eq!(s.queued().0, 3);

    let mut l = limits();
    l.queue_messages = 100;
    l.queue_bytes = 100;
    let mut s = session(l);
    let topic = "devices/dev/messages/events/".to_owned(); // 28 bytes
    s.submit_telemetry(topic.clone(), Bytes::from(vec![0; 40]))
        .unwrap();
    assert_eq!(
        s.submit_telemetry(topic.clone(), Bytes::from(vec![0; 40])),
        Err(QueueFull)
    );
    assert_eq!(
        s.submit_telemetry(topic, Bytes::from(vec![0; 200])),
        Err(QueueFull),
        "larger than the whole queue"
    );
}

#[test]
fn queue_full_drops_oldest_and_counts() {
    let mut l = limits();
    l.queue_policy = QueueFullPolicy::DropOldest;
    let mut s = session(l);
    let ids: Vec<OpId> = (0..5).map(|n| telemetry(&mut s, n).unwrap()).collect();
    assert_eq!(s.dropped(), 2);
    assert_eq!(
        actions(&mut s),
        [
            Action::Complete(ids[0], Outcome::Dropped),
            Action::Complete(ids[1], Outcome::Dropped)
        ]
    );
    s.on_connack(false, Instant::now());
    let sent = transmit(&mut s);
    let bodies: Vec<u8> = sent
        .iter()
        .filter_map(|t| match t {
            Transmit::Publish { payload, .. } => Some(payload[0]),
            _ => None,
        })
        .collect();
    assert_eq!(bodies, [2, 3, 4], "the newest three, in order");
}

#[test]
fn late_start_gets_full_first_then_patches_in_order() {
    let (mut s, _) = connected(limits());
    s.want(sub::DESIRED).unwrap();
    let sent = transmit(&mut s);
    assert!(matches!(sent[0], Transmit::Subscribe { .. }));
    // A patch that races the GET is held and delivered after the Full, once.
    patch(&mut s, 8, json!({"b": 2}), 7);
    s.on_publish(
        &topic::twin_response_topic(200, &rid_of(&sent[1]), None),
        twin_json(7, json!({"a": 1})),
        8,
    );
    patch(&mut s, 8, json!({"b": 2}), 9);
    patch(&mut s, 9, json!({"c": 3}), 10);
    let first = s.take_desired().unwrap();
    assert_eq!((first.version, first.kind), (7, DesiredKind::Full));
    assert_eq!(Value::Object(first.properties), json!({"a": 1}));
    assert_eq!(
        desired_versions(&mut s),
        [(8, DesiredKind::Patch), (9, DesiredKind::Patch)]
    );
}

#[test]
fn missed_versions_come_once_in_order() {
    let (mut s, now) = connected(limits());
    s.want(sub::DESIRED).unwrap();
    let sent = transmit(&mut s);
    s.on_publish(
        &topic::twin_response_topic(200, &rid_of(&sent[1]), None),
        twin_json(1, json!({})),
        2,
    );
    patch(&mut s, 2, json!({"x": 1}), 3);
    assert_eq!(
        desired_versions(&mut s),
        [(1, DesiredKind::Full), (2, DesiredKind::Patch)]
    );
    // Version 3 is lost; 4 reveals the gap and triggers a GET.
    patch(&mut s, 4, json!({"x": 3}), 4);
    let get = transmit(&mut s);
    assert_eq!(get.len(), 4, "three acks and the resync GET: {get:?}");
    patch(&mut s, 5, json!({"y": 5}), 5);
    s.on_publish(
        &topic::twin_response_topic(200, &rid_of(&get[3]), None),
        twin_json(4, json!({"x": 3})),
        6,
    );
    assert_eq!(
        desired_versions(&mut s),
        [(4, DesiredKind::Full), (5, DesiredKind::Patch)]
    );
    // A reconnect: Full only when something changed while away.
    s.on_connection_lost(Loss::Transient, 0.0);
    s.on_connack(true, now);
    let get = transmit(&mut s);
    s.on_publish(
        &topic::twin_response_topic(200, &rid_of(get.last().unwrap()), None),
        twin_json(5, json!({"x": 3, "y": 5})),
        7,
    );
    assert!(desired_versions(&mut s).is_empty());
    s.on_connection_lost(Loss::Transient, 0.0);
    s.on_connack(true, now);
    let get = transmit(&mut s);
    s.on_publish(
        &topic::twin_response_topic(200, &rid_of(get.last().unwrap()), None),
        twin_json(7, json!({"x": 7})),
        8,
    );
    patch(&mut s, 7, json!({"x": 7}), 9);
    assert_eq!(desired_versions(&mut s), [(7, DesiredKind::Full)]);
}

#[test]
fn slow_desired_consumer_coalesces_into_one_full() {
    let (mut s, _) = connected(limits());
    s.want(sub::DESIRED).unwrap();
    let sent = transmit(&mut s);
    s.on_publish(
        &topic::twin_response_topic(200, &rid_of(&sent[1]), None),
        twin_json(1, json!({})),
        1,
    );
    for v in 2..=10_000u64 {
        patch(&mut s, v, json!({ format!("k{}", v % 3): v }), 2);
        assert!(s.desired_backlog().0 <= 4, "bounded by the capacity");
        transmit(&mut s);
    }
    let only = s.take_desired().unwrap();
    assert_eq!((only.version, only.kind), (10_000, DesiredKind::Full));
    assert_eq!(
        Value::Object(only.properties),
        json!({"k0": 9999, "k1": 10_000, "k2": 9998})
    );
    assert!(s.take_desired().is_none());
    patch(&mut s, 10_001, json!({"k0": null}), 3);
    assert_eq!(desired_versions(&mut s), [(10_001, DesiredKind::Patch)]);
}

#[test]
fn c2d_is_acked_only_when_taken_and_bounded() {
    let (mut s, _) = connected(limits());
    s.want(sub::MESSAGES).unwrap();
    transmit(&mut s);
    let t = topic::c2d_topic("dev", &iot_common::MessageProperties::new());
    for pkid in [11, 12, 13] {
        s.on_publish(&t, Bytes::from_static(b"m"), pkid);
    }
    assert!(transmit(&mut s).is_empty(), "nothing acknowledged yet");
    assert_eq!(s.c2d_backlog(), 2, "the third is left to the hub");
    assert!(s.take_c2d().is_some());
    assert_eq!(transmit(&mut s), [Transmit::Ack { pkid: 11 }]);
}

#[test]
fn close_fails_everything_pending() {
    let (mut s, _) = connected(limits());
    let a = telemetry(&mut s, 1).unwrap();
    let b = s.submit_twin(None);
    transmit(&mut s);
    s.close(CloseReason::ClientClosed);
    let a2 = actions(&mut s);
    assert!(a2.contains(&Action::Complete(a, Outcome::Closed)));
    assert!(a2.contains(&Action::Complete(b, Outcome::Closed)));
    assert!(a2.contains(&Action::Close(CloseReason::ClientClosed)));
}

#[test]
fn a_lost_resync_answer_is_asked_again() {
    let (mut s, now) = connected(limits());
    s.want(sub::DESIRED).unwrap();
    let sent = transmit(&mut s);
    s.handle_timeout(now);
    assert_eq!(s.poll_timeout(), Some(now + Duration::from_secs(10)));
    s.handle_timeout(now + Duration::from_secs(9));
    assert!(transmit(&mut s).is_empty());
    s.handle_timeout(now + Duration::from_secs(10));
    let again = transmit(&mut s);
    assert_eq!(again.len(), 1);
    assert_ne!(rid_of(&again[0]), rid_of(&sent[1]));
    // The first answer comes late: ignored; the second one counts.
    s.on_publish(
        &topic::twin_response_topic(200, &rid_of(&sent[1]), None),
        twin_json(3, json!({})),
        0,
    );
    assert!(s.take_desired().is_none());
    s.on_publish(
        &topic::twin_response_topic(200, &rid_of(&again[0]), None),
        twin_json(3, json!({})),
        0,
    );
    assert_eq!(desired_versions(&mut s), [(3, DesiredKind::Full)]);
}
