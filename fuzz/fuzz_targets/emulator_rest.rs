#![no_main]
//! Arbitrary REST requests (method, path, body) into the emulator's real router.
use libfuzzer_sys::fuzz_target;

const METHODS: [&str; 5] = ["GET", "PUT", "PATCH", "POST", "DELETE"];
const PATHS: [&str; 12] = [
    "/twins/myDevice",
    "/twins/myDevice/methods",
    "/devices/myDevice",
    "/devices/new1",
    "/devices/query",
    "/devices/myDevice/modules/m1",
    "/twins/myDevice/modules/m1",
    "/jobs/v2/j1",
    "/jobs/v2/query",
    "/statistics/devices",
    "/emulator/devices/myDevice/messages",
    "/emulator/faults",
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let method = METHODS[(sel as usize) % METHODS.len()];
    // Either a known path (to reach the handlers) or the fuzzer's own up to the first newline.
    let (path, body) = if sel & 0x80 == 0 {
        (
            PATHS[(sel as usize >> 3) % PATHS.len()].to_owned(),
            rest.to_vec(),
        )
    } else {
        let cut = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
        (
            format!("/{}", String::from_utf8_lossy(&rest[..cut])),
            rest.get(cut + 1..).unwrap_or_default().to_vec(),
        )
    };
    if method == "POST" && path.ends_with("/faults") {
        return; // would arm faults that slow every later run down
    }
    let (rt, h) = iot_hub_emulator::fuzzing::shared();
    rt.block_on(h.rest(method, &path, body));
});
