#![no_main]
//! Arbitrary bytes after a valid CONNECT, into the emulator's real connection handler.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (rt, h) = iot_hub_emulator::fuzzing::shared();
    rt.block_on(h.mqtt(data));
});
