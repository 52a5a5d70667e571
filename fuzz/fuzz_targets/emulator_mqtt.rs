#![no_main]
//! Arbitrary bytes after a valid CONNECT, into the emulator's real connection handler.
use iot_hub_emulator::fuzzing::Harness;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn env() -> &'static (tokio::runtime::Runtime, Harness) {
    static E: OnceLock<(tokio::runtime::Runtime, Harness)> = OnceLock::new();
    E.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let h = rt.block_on(async { Harness::new() });
        (rt, h)
    })
}

fuzz_target!(|data: &[u8]| {
    let (rt, h) = env();
    rt.block_on(h.mqtt(data));
});
