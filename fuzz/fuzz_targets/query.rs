#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn twins() -> &'static [serde_json::Value] {
    static T: OnceLock<Vec<serde_json::Value>> = OnceLock::new();
    T.get_or_init(|| {
        (0..8)
            .map(|i| serde_json::json!({
                "deviceId": format!("d{i}"), "tags": {"floor": i, "group": "a", "list": [1, 2]},
                "properties": {"desired": {"$version": 1}, "reported": {"fw": 1.5, "s": "x", "n": null, "$version": 2}}
            }))
            .collect()
    })
}

fuzz_target!(|s: &str| {
    let _ = iot_hub_emulator::run_query(s, twins());
});
