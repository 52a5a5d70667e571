#![no_main]
use iot_common::topic::{DeviceTopic, Inbound, Subscription};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    let _ = Inbound::parse(s);
    let _ = DeviceTopic::parse(s, "d", None);
    let _ = DeviceTopic::parse(s, "d", Some("m"));
    let _ = Subscription::parse(s, "d", Some("m"));
    let _ = iot_common::mqtt::parse_username(s, "d");
});
