//! Micro-benchmarks of iot-common's hot paths. `cargo bench -p iot-benches --bench core`.

#![allow(missing_docs)]
#![allow(clippy::unwrap_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use iot_common::topic::{self, DeviceTopic, Inbound};
use iot_common::twin::{self, TwinSection};
use iot_common::{MessageProperties, SasToken, Secret};
use serde_json::json;
use std::hint::black_box;

fn sas(c: &mut Criterion) {
    let key = Secret::new("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=");
    c.bench_function("sas/sign_device", |b| {
        b.iter(|| {
            SasToken::for_device(
                black_box("myhub.azure-devices.net"),
                black_box("dev1"),
                &key,
                1_700_000_000,
            )
            .unwrap()
        })
    });
    let token =
        SasToken::for_device("myhub.azure-devices.net", "dev1", &key, 1_700_000_000).unwrap();
    let wire = token.as_secret().expose().to_owned();
    c.bench_function("sas/parse_and_verify", |b| {
        b.iter(|| {
            SasToken::parse(black_box(&wire))
                .unwrap()
                .verify(&key)
                .unwrap()
        })
    });
}

fn topics(c: &mut Criterion) {
    c.bench_function("topic/parse_method_request", |b| {
        b.iter(|| Inbound::parse(black_box("$iothub/methods/POST/rebootDevice/?$rid=42")).unwrap())
    });
    c.bench_function("topic/parse_twin_response", |b| {
        b.iter(|| {
            Inbound::parse(black_box(
                "$iothub/twin/res/204/?$rid=c23c7157-00e7-4e1c-aef9-4c018ded1170&$version=7",
            ))
            .unwrap()
        })
    });
    c.bench_function("topic/build_method_response", |b| {
        b.iter(|| topic::method_response_topic(black_box(200), black_box("42")))
    });
    let props = MessageProperties::new()
        .message_id("msg-0001")
        .correlation_id("corr-42")
        .content_type("application/json")
        .content_encoding("utf-8")
        .property("key with space", "value/with?special&chars=1");
    c.bench_function("topic/build_telemetry_with_properties", |b| {
        b.iter(|| topic::telemetry_topic(black_box("dev1"), None, black_box(&props)))
    });
    let t = topic::telemetry_topic("dev1", None, &props);
    c.bench_function("topic/parse_telemetry_with_properties", |b| {
        b.iter(|| DeviceTopic::parse(black_box(&t), "dev1", None).unwrap())
    });
}

fn property_bags(c: &mut Criterion) {
    let props = MessageProperties::new()
        .message_id("msg-0001")
        .content_type("application/json")
        .property("a", "1")
        .property("b", "two words");
    c.bench_function("properties/encode", |b| {
        b.iter(|| black_box(&props).encode())
    });
    let bag = props.encode();
    c.bench_function("properties/decode", |b| {
        b.iter(|| MessageProperties::decode(black_box(&bag)).unwrap())
    });
}

fn twin_patch(c: &mut Criterion) {
    let base = json!({"fw": "1.0", "config": {"interval": 30, "mode": "eco", "limits": {"lo": 1, "hi": 9}}, "tags": [1, 2, 3]});
    let patch = json!({"fw": "1.1", "config": {"mode": null, "limits": {"hi": 10}}, "rebootTime": "2024-01-01T00:00:00Z"});
    let (base, patch) = (
        base.as_object().unwrap().clone(),
        patch.as_object().unwrap().clone(),
    );
    c.bench_function("twin/validate_patch", |b| {
        let v = serde_json::Value::Object(patch.clone());
        b.iter(|| twin::validate_patch(TwinSection::Reported, black_box(&v)).unwrap())
    });
    c.bench_function("twin/merge_patch", |b| {
        b.iter(|| {
            let mut t = base.clone();
            twin::merge_patch(&mut t, black_box(&patch));
            t
        })
    });
    c.bench_function("twin/update_metadata", |b| {
        let meta = twin::fresh_metadata(&base, "2024-01-01T00:00:00.0000000Z", Some(1));
        b.iter(|| {
            let mut m = meta.clone();
            twin::update_metadata(
                &mut m,
                black_box(&patch),
                "2024-01-01T00:00:01.0000000Z",
                Some(2),
            );
            m
        })
    });
}

fn query_10k_twins(c: &mut Criterion) {
    let regions = ["US", "EU", "APAC", "LATAM"];
    let twins: Vec<serde_json::Value> = (0..10_000)
        .map(|i| {
            json!({
                "deviceId": format!("dev-{i:05}"), "etag": "AAAAAAAAAAE=", "version": 4, "status": "enabled",
                "tags": {"region": regions[i % 4], "floor": i % 10},
                "properties": {
                    "desired": {"interval": 30, "$version": 2},
                    "reported": {"firmware": 1.0 + (i % 20) as f64 / 10.0, "rebootTime": "2024-01-01T00:00:00Z", "$version": 3}
                }
            })
        })
        .collect();
    let mut group = c.benchmark_group("query/10k_twins");
    for (name, sql) in [
        (
            "point",
            "SELECT * FROM devices WHERE deviceId = 'dev-05000'",
        ),
        (
            "filter",
            "SELECT * FROM devices WHERE tags.region = 'US' AND properties.reported.firmware < 2.0",
        ),
        (
            "projection",
            "SELECT deviceId, properties.reported.firmware AS fw FROM devices WHERE tags.floor IN [1, 3, 5]",
        ),
        (
            "group_by",
            "SELECT tags.region AS region, COUNT() AS n FROM devices GROUP BY tags.region",
        ),
        (
            "functions",
            "SELECT * FROM devices WHERE STARTSWITH(deviceId, 'dev-09') AND IS_DEFINED(properties.reported.rebootTime)",
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| iot_hub_emulator::run_query(black_box(sql), black_box(&twins)).unwrap())
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    sas,
    topics,
    property_bags,
    twin_patch,
    query_10k_twins
);
criterion_main!(benches);
