//! Property tests: build-then-parse round-trips, and no parser panics on arbitrary input.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use iot_common::mqtt;
use iot_common::topic::{self, DeviceTopic, Inbound, Subscription};
use iot_common::twin::{self, TwinSection};
use iot_common::{
    Backoff, DeviceConnectionString, HubErrorBody, MessageProperties, SasToken, Secret,
    ServiceConnectionString,
};
use proptest::prelude::*;
use std::time::Duration;

fn id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9_.:@!*()=-]{0,40}"
}

fn key() -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<u8>(), 1..64).prop_map(|b| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(b)
    })
}

fn props() -> impl Strategy<Value = MessageProperties> {
    (
        proptest::option::of(".{0,20}"),
        proptest::option::of(".{0,20}"),
        proptest::option::of("[a-z/]{1,20}"),
        proptest::collection::vec(("[^$].{0,12}", ".{0,20}"), 0..5),
    )
        .prop_map(|(mid, cid, ct, custom)| {
            let mut p = MessageProperties::new();
            p.message_id = mid;
            p.correlation_id = cid;
            p.content_type = ct;
            p.custom = custom;
            p
        })
}

proptest! {
    #[test]
    fn property_bags_round_trip(p in props()) {
        prop_assert_eq!(MessageProperties::decode(&p.encode()).unwrap(), p);
    }

    #[test]
    fn telemetry_topics_round_trip(d in id(), m in proptest::option::of(id()), p in props()) {
        let t = topic::telemetry_topic(&d, m.as_deref(), &p);
        prop_assert_eq!(
            DeviceTopic::parse(&t, &d, m.as_deref()).unwrap(),
            DeviceTopic::Telemetry { properties: p }
        );
    }

    #[test]
    fn request_topics_round_trip(name in "[A-Za-z0-9_*-]{1,30}", rid in "[A-Za-z0-9-]{1,36}", status in 100u16..600, v in any::<u64>()) {
        let t = topic::method_request_topic(&name, &rid);
        prop_assert_eq!(Inbound::parse(&t).unwrap(), Inbound::MethodRequest { name: &name, rid: &rid });
        let t = topic::twin_response_topic(status, &rid, Some(v));
        prop_assert_eq!(Inbound::parse(&t).unwrap(), Inbound::TwinResponse { status, rid: &rid, version: Some(v) });
        let t = topic::desired_patch_topic(v);
        prop_assert_eq!(Inbound::parse(&t).unwrap(), Inbound::DesiredPatch { version: Some(v) });
        let t = topic::method_response_topic(i32::from(status), &rid);
        prop_assert_eq!(
            DeviceTopic::parse(&t, "d", None).unwrap(),
            DeviceTopic::MethodResponse { status: i32::from(status), rid: rid.clone() }
        );
        let t = topic::twin_patch_reported_topic(&rid);
        prop_assert_eq!(DeviceTopic::parse(&t, "d", None).unwrap(), DeviceTopic::TwinPatchReported { rid });
    }

    #[test]
    fn connection_strings_round_trip(host in "[a-z0-9]{1,20}\\.[a-z]{2,10}(:[0-9]{2,5})?", d in id(), m in proptest::option::of(id()), k in key()) {
        let mut cs = DeviceConnectionString::with_key(host.clone(), d, Secret::new(k.clone()));
        if let Some(m) = m { cs = cs.module(m); }
        let parsed: DeviceConnectionString = cs.to_string().parse().unwrap();
        prop_assert_eq!(&parsed, &cs);
        let dbg = format!("{:?}", parsed);
        prop_assert!(!dbg.contains(&k));
        let sc = ServiceConnectionString::new(host, "iothubowner", Secret::new(k));
        prop_assert_eq!(sc.to_string().parse::<ServiceConnectionString>().unwrap(), sc);
    }

    #[test]
    fn tokens_round_trip_and_verify(host in "[a-z0-9.]{1,30}", d in id(), k in key(), se in 0u64..4_000_000_000) {
        let key = Secret::new(k);
        let t = SasToken::for_device(&host, &d, &key, se).unwrap();
        let parsed = SasToken::parse(t.as_secret().expose()).unwrap();
        prop_assert_eq!(parsed.expires_at(), se);
        prop_assert_eq!(parsed.resource(), format!("{host}/devices/{d}"));
        prop_assert!(parsed.verify(&key).is_ok());
    }

    #[test]
    fn usernames_round_trip(host in "[a-z0-9.]{1,30}", d in id(), ct in ".{0,40}") {
        let u = mqtt::username(&host, &d, None, mqtt::API_VERSION, &ct, None);
        let info = mqtt::parse_username(&u, &d).unwrap();
        prop_assert_eq!(info.client_type.as_deref(), Some(ct.as_str()));
        prop_assert_eq!(info.host, host);
    }

    #[test]
    fn parsers_never_panic(s in ".{0,200}") {
        let _ = s.parse::<DeviceConnectionString>();
        let _ = s.parse::<ServiceConnectionString>();
        let _ = SasToken::parse(&s).map(|t| t.verify(&Secret::new("AAAA")));
        let _ = Inbound::parse(&s);
        let _ = DeviceTopic::parse(&s, "d", None);
        let _ = Subscription::parse(&s, "d", Some("m"));
        let _ = MessageProperties::decode(&s);
        let _ = mqtt::parse_username(&s, "d");
        let _ = HubErrorBody::parse(&s, None);
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&s) {
            let _ = twin::validate_patch(TwinSection::Reported, &v);
        }
    }

    #[test]
    fn backoff_is_monotonic_and_bounded(a in 0u32..64, j in 0.0f64..=1.0) {
        let b = Backoff::new(Duration::from_millis(10), Duration::from_secs(60), Duration::from_secs(1));
        prop_assert!(b.delay(a, 0.0) <= b.delay(a + 1, 0.0));
        prop_assert!(b.delay(a, j) <= Duration::from_secs(60));
    }

    #[test]
    fn merge_patch_null_deletes_and_is_idempotent(keys in proptest::collection::vec("[a-z]{1,4}", 1..6), vals in proptest::collection::vec(any::<i32>(), 6)) {
        let mut patch = serde_json::Map::new();
        for (k, v) in keys.iter().zip(&vals) { patch.insert(k.clone(), (*v).into()); }
        let mut once = serde_json::Map::new();
        twin::merge_patch(&mut once, &patch);
        let mut twice = once.clone();
        twin::merge_patch(&mut twice, &patch);
        prop_assert_eq!(&once, &twice);
        let deletes: serde_json::Map<_, _> = keys.iter().map(|k| (k.clone(), serde_json::Value::Null)).collect();
        twin::merge_patch(&mut twice, &deletes);
        prop_assert!(twice.is_empty());
    }
}
