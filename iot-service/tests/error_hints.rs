//! Errors that say what to do: each common failure names the endpoint and the fix in `Display`.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use iot_hub_emulator::Emulator;
use iot_service::{ErrorKind, RetryOptions, ServiceClient, ServiceClientOptions};
use std::time::Duration;

fn no_retries() -> ServiceClientOptions {
    ServiceClientOptions::new()
        .retry(RetryOptions {
            max_retries: 0,
            ..RetryOptions::default()
        })
        .operation_timeout(Duration::from_secs(10))
}

#[tokio::test]
async fn an_untrusted_certificate_says_to_trust_the_ca_and_is_not_retried() {
    let hub = Emulator::builder().start().await.unwrap();
    // No trust_ca_pem: the emulator's CA is unknown to the client.
    let svc = ServiceClient::from_connection_string(
        &hub.service_connection_string(),
        ServiceClientOptions::new(),
    )
    .unwrap();
    let err = svc.get_twin("myDevice").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Certificate, "{err:?}");
    assert!(!err.is_retryable());
    let shown = err.to_string();
    let endpoint = format!("localhost:{}", hub.https_addr().port());
    assert!(shown.contains(&endpoint), "names the endpoint: {shown}");
    assert!(
        shown.contains("IOTHUB_CA_CERT"),
        "says how to trust the CA: {shown}"
    );
    assert!(
        shown.contains("UnknownIssuer"),
        "carries the root cause: {shown}"
    );
}

#[tokio::test]
async fn a_refused_connection_says_nothing_listens_there() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let cs = format!(
        "HostName=127.0.0.1:{port};SharedAccessKeyName=iothubowner;SharedAccessKey=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
    );
    let svc = ServiceClient::from_connection_string(&cs, no_retries()).unwrap();
    let err = svc.get_twin("myDevice").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection, "{err:?}");
    let shown = err.to_string();
    assert!(
        shown.contains(&format!("nothing is listening at 127.0.0.1:{port}")),
        "{shown}"
    );
    assert!(
        shown.contains("iot-hub-emulator"),
        "says how to start one: {shown}"
    );
}

#[tokio::test]
async fn a_wrong_key_says_to_check_the_key() {
    let hub = Emulator::builder().start().await.unwrap();
    let good = hub.service_connection_string();
    let key_start = good.find("SharedAccessKey=").unwrap() + "SharedAccessKey=".len();
    let wrong = format!(
        "{}{}",
        &good[..key_start],
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
    );
    let svc = ServiceClient::from_connection_string(
        &wrong,
        no_retries().trust_ca_pem(hub.ca_pem()).unwrap(),
    )
    .unwrap();
    let err = svc.get_twin("myDevice").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized, "{err:?}");
    let shown = err.to_string();
    assert!(shown.contains("SharedAccessKey"), "{shown}");
    assert!(
        shown.contains(&format!("localhost:{}", hub.https_addr().port())),
        "{shown}"
    );
    assert!(
        !shown.contains("AAAAAAAAAAAAAAAAAAAA"),
        "never echoes a key: {shown}"
    );
}
