//! The twins' lock is a lock of its own: device-side twin traffic goes on while the identity
//! registry is held (as a slow registry write would hold it).

use super::query_tests::hub_with;
use super::registry::Registry;
use super::twin_store::TwinStore;
use crate::locks::lock;
use iot_common::registry::Device;
use serde_json::json;
use std::time::Duration;

#[test]
fn reported_patches_proceed_while_the_registry_is_locked() {
    let hub = std::sync::Arc::new(hub_with(Registry::default(), TwinStore::default()));
    hub.put_device("d", Device::new("d", None), None).unwrap();
    let held = lock(&hub.registry);
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = {
        let hub = hub.clone();
        std::thread::spawn(move || {
            let mut last = 0;
            for i in 0..100 {
                last = hub
                    .patch_reported("d", None, &json!({ "n": i }))
                    .map(|(version, _)| version)
                    .unwrap_or(0);
            }
            hub.set_model_id("d", None, "dtmi:x;1");
            let twin = hub.device_twin("d", None);
            let _ = tx.send((last, twin));
        })
    };
    // Only a bound against a hang if the patches did wait for the registry.
    let (last, twin) = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("twin operations waited for the registry's lock");
    drop(held);
    worker.join().unwrap();
    assert_eq!(last, 101, "100 patches after the initial version 1");
    assert_eq!(twin.unwrap()["reported"]["n"], 99);
    assert_eq!(
        hub.get_twin("d", None).unwrap().model_id.as_deref(),
        Some("dtmi:x;1")
    );
}
