#![no_main]
//! Arbitrary bytes as the body of `PUT /jobs/v2/{id}` into the emulator's real router: job
//! bodies are parsed, validated and (when valid) scheduled and run by the real scheduler.
use libfuzzer_sys::fuzz_target;
use std::sync::atomic::{AtomicU64, Ordering};

fuzz_target!(|body: &[u8]| {
    static N: AtomicU64 = AtomicU64::new(0);
    let id = format!("jb{}", N.fetch_add(1, Ordering::Relaxed));
    let (rt, h) = iot_hub_emulator::fuzzing::shared();
    rt.block_on(h.rest("PUT", &format!("/jobs/v2/{id}"), body.to_vec()));
});
