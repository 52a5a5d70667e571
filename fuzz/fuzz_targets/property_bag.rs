#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    if let Ok(p) = iot_common::MessageProperties::decode(s) {
        // Re-encoding what was decoded decodes to the same properties.
        assert_eq!(
            iot_common::MessageProperties::decode(&p.encode()).ok(),
            Some(p)
        );
    }
});
