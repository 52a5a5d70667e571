//! The tutorial flow end to end: the Rust device and the Rust service through the emulator.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use iot_device::{DeviceClient, DeviceClientOptions};
use iot_examples::tutorial::{self, ServiceFailure};
use iot_hub_emulator::{Emulator, RunningEmulator, dev_keys};
use iot_service::{DirectMethodRequest, ServiceClient, ServiceClientOptions};
use std::time::Duration;

async fn setup() -> (RunningEmulator, DeviceClient, ServiceClient) {
    let hub = Emulator::builder().start().await.unwrap();
    let cs = hub
        .device_connection_string(dev_keys::DEV_DEVICE_ID)
        .unwrap();
    let device = DeviceClient::from_connection_string(
        &cs,
        DeviceClientOptions::new()
            .trust_ca_pem(hub.ca_pem())
            .unwrap(),
    )
    .await
    .unwrap();
    let service = ServiceClient::from_connection_string(
        &hub.service_connection_string(),
        ServiceClientOptions::new()
            .trust_ca_pem(hub.ca_pem())
            .unwrap(),
    )
    .unwrap();
    (hub, device, service)
}

#[tokio::test]
async fn reboot_is_invoked_and_reboot_time_is_reported() {
    let (_hub, device, service) = setup().await;
    tutorial::serve_reboot(&device, Duration::from_millis(50))
        .await
        .unwrap();
    let first = tutorial::reboot_device(&service, "myDevice").await.unwrap();
    let twin = service.get_twin("myDevice").await.unwrap();
    assert_eq!(
        twin.properties.reported.properties["rebootTime"],
        first.as_str()
    );
    // A second reboot reports a new time.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = tutorial::reboot_device(&service, "myDevice").await.unwrap();
    assert_ne!(first, second);
}

#[tokio::test]
async fn unknown_methods_are_answered_404_by_the_tutorial_device() {
    let (_hub, device, service) = setup().await;
    tutorial::serve_reboot(&device, Duration::from_millis(10))
        .await
        .unwrap();
    let r = service
        .invoke_method("myDevice", &DirectMethodRequest::new("selfDestruct"))
        .await
        .unwrap();
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn the_service_half_reports_an_offline_device_clearly() {
    let (hub, device, service) = setup().await;
    device.close().await.unwrap();
    let err = tutorial::reboot_device(&service, "myDevice")
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceFailure::DeviceOffline), "{err}");
    assert!(err.to_string().contains("offline"));
    drop(hub);
}
