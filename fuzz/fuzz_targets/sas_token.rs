#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    if let Ok(t) = iot_common::SasToken::parse(s) {
        let _ = t.verify(&iot_common::Secret::new(
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        ));
        let _ = t.check_expiry(1_700_000_000);
        let _ = t.resource();
        let _ = iot_common::sas::scope_covers(&t.resource(), "h/devices/d");
    }
});
