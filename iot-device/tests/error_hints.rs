//! Errors that say what to do: each common connection failure names the device, the endpoint
//! and the fix in `Display`, and the permanent ones end `connect` even with retries on.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use iot_device::{Backoff, DeviceClient, DeviceClientOptions, ErrorKind};
use iot_hub_emulator::{Emulator, RunningEmulator};
use std::time::Duration;

/// A hang guard only: the calls under test end on their own, far sooner.
const HANG_GUARD: Duration = Duration::from_secs(60);

async fn hub() -> RunningEmulator {
    Emulator::builder().start().await.unwrap()
}

fn quick_retries() -> DeviceClientOptions {
    DeviceClientOptions::new()
        .operation_timeout(Duration::from_secs(10))
        .backoff(Backoff::new(
            Duration::from_millis(50),
            Duration::from_millis(200),
            Duration::from_millis(10),
        ))
}

/// The connection string with another (well-formed) key; the other fields are kept.
fn with_wrong_key(cs: &str) -> String {
    cs.split(';')
        .map(|field| {
            if field.starts_with("SharedAccessKey=") {
                "SharedAccessKey=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
            } else {
                field
            }
        })
        .collect::<Vec<_>>()
        .join(";")
}

#[tokio::test]
async fn an_untrusted_certificate_names_the_endpoint_and_says_to_trust_the_ca() {
    let hub = hub().await;
    let cs = hub.hub().create_device("untrusting").unwrap();
    // No trust_ca_pem: the emulator's CA is unknown to the client.
    let err = DeviceClient::from_connection_string(&cs, quick_retries())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Certificate, "{err:?}");
    assert!(!err.is_retryable());
    let shown = err.to_string();
    let endpoint = format!("localhost:{}", hub.mqtt_addr().port());
    assert!(shown.contains(&endpoint), "names the endpoint: {shown}");
    assert!(shown.contains("'untrusting'"), "names the device: {shown}");
    assert!(
        shown.contains("IOTHUB_CA_CERT") && shown.contains("DeviceClientOptions::trust_ca_file"),
        "says how to trust the CA: {shown}"
    );
    assert!(
        shown.contains("UnknownIssuer"),
        "carries the root cause: {shown}"
    );
    assert_eq!(err.hint().map(|h| shown.contains(h)), Some(true));
}

#[tokio::test]
async fn a_wrong_key_names_the_device_and_says_to_check_its_key() {
    let hub = hub().await;
    let wrong = with_wrong_key(&hub.hub().create_device("wrong-key").unwrap());
    let options = quick_retries().trust_ca_pem(hub.ca_pem()).unwrap();
    let err = DeviceClient::from_connection_string(&wrong, options)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized, "{err:?}");
    let shown = err.to_string();
    let endpoint = format!("localhost:{}", hub.mqtt_addr().port());
    assert!(shown.contains(&endpoint), "names the endpoint: {shown}");
    assert!(shown.contains("'wrong-key'"), "names the device: {shown}");
    assert!(
        shown.contains("check the device key (SharedAccessKey)") && shown.contains("enabled"),
        "says what to check: {shown}"
    );
    assert!(
        !shown.contains("AAAAAAAAAAAAAAAAAAAA"),
        "never echoes a key: {shown}"
    );
}

#[tokio::test]
async fn a_refused_connection_says_nothing_listens_there() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let cs = format!(
        "HostName=127.0.0.1:{port};DeviceId=nobody-home;SharedAccessKey=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
    );
    let err = DeviceClient::from_connection_string(&cs, quick_retries())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection, "{err:?}");
    assert!(err.is_retryable());
    let shown = err.to_string();
    assert!(shown.contains("'nobody-home'"), "names the device: {shown}");
    assert!(
        shown.contains(&format!("nothing is listening at 127.0.0.1:{port}")),
        "names the endpoint: {shown}"
    );
    assert!(
        shown.contains("iot-hub-emulator"),
        "says how to start one: {shown}"
    );
}

#[tokio::test]
async fn retries_on_and_an_untrusted_ca_still_end_connect_with_a_typed_error() {
    let hub = hub().await;
    let cs = hub.hub().create_device("retrying").unwrap();
    let options = quick_retries().retry_initial_connect(true);
    let result = tokio::time::timeout(
        HANG_GUARD,
        DeviceClient::from_connection_string(&cs, options),
    )
    .await
    .expect("connect returns instead of retrying a certificate it cannot trust");
    let err = result.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Certificate, "{err:?}");
    assert!(err.to_string().contains("IOTHUB_CA_CERT"), "{err}");
}

#[tokio::test]
async fn retries_on_and_a_wrong_key_still_end_connect_with_a_typed_error() {
    let hub = hub().await;
    let wrong = with_wrong_key(&hub.hub().create_device("retrying-key").unwrap());
    let options = quick_retries()
        .trust_ca_pem(hub.ca_pem())
        .unwrap()
        .retry_initial_connect(true);
    let result = tokio::time::timeout(
        HANG_GUARD,
        DeviceClient::from_connection_string(&wrong, options),
    )
    .await
    .expect("connect returns instead of retrying refused credentials");
    assert_eq!(result.unwrap_err().kind(), ErrorKind::Unauthorized);
}
