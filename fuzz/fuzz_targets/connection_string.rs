#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    if let Ok(cs) = s.parse::<iot_common::DeviceConnectionString>() {
        // What parses must print and parse back to the same value.
        assert_eq!(
            cs.to_string()
                .parse::<iot_common::DeviceConnectionString>()
                .ok(),
            Some(cs)
        );
    }
    if let Ok(cs) = s.parse::<iot_common::ServiceConnectionString>() {
        assert_eq!(
            cs.to_string()
                .parse::<iot_common::ServiceConnectionString>()
                .ok(),
            Some(cs)
        );
    }
});
