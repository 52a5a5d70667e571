#![no_main]
use iot_common::twin::{self, TwinSection};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if twin::validate_patch(TwinSection::Reported, &v).is_ok()
        && let Some(patch) = v.as_object()
    {
        let mut doc = serde_json::Map::new();
        twin::merge_patch(&mut doc, patch);
        let _ = twin::check_size(TwinSection::Reported, &doc);
        let mut meta = serde_json::Map::new();
        twin::update_metadata(&mut meta, patch, "t", Some(1));
    }
    let _ = serde_json::from_slice::<iot_common::Twin>(data);
    let _ = serde_json::from_slice::<iot_common::registry::Device>(data);
    let _ = serde_json::from_slice::<iot_common::MethodInvocation>(data).map(|m| m.validate());
    let _ = serde_json::from_slice::<iot_common::JobRequest>(data);
    let _ = iot_common::HubErrorBody::parse(&String::from_utf8_lossy(data), None);
});
