#![no_main]
//! The fuzzer's text as a job's `queryCondition`: parsed, stored, then evaluated by the real
//! scheduler over the harness's devices (a 10 000-`OR` condition once aborted the emulator
//! there), and as the WHERE clause of a query.
use libfuzzer_sys::fuzz_target;
use std::sync::atomic::{AtomicU64, Ordering};

fuzz_target!(|condition: &str| {
    static N: AtomicU64 = AtomicU64::new(0);
    let id = format!("jc{}", N.fetch_add(1, Ordering::Relaxed));
    let body = serde_json::json!({
        "jobId": id,
        "type": "scheduleUpdateTwin",
        "updateTwin": { "etag": "*", "tags": { "fuzzed": true } },
        "queryCondition": condition,
        "maxExecutionTimeInSeconds": 30
    });
    let (rt, h) = iot_hub_emulator::fuzzing::shared();
    rt.block_on(h.rest(
        "PUT",
        &format!("/jobs/v2/{id}"),
        serde_json::to_vec(&body).unwrap_or_default(),
    ));
    let _ = iot_hub_emulator::run_query(
        &format!("SELECT * FROM devices WHERE {condition}"),
        &[serde_json::json!({ "deviceId": "d1", "tags": { "a": 1 } })],
    );
});
