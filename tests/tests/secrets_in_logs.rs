//! Keys, tokens and signatures never reach the logs, at any level, from any crate (rumqttc's
//! `log` records included): a whole tutorial flow runs with TRACE logging into a buffer.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use iot_device::{DeviceClient, DeviceClientOptions, Message, MethodError};
use iot_hub_emulator::Emulator;
use iot_service::{DirectMethodRequest, IfMatch, ServiceClient, ServiceClientOptions, TwinPatch};
use serde_json::{Value, json};
use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_is_logged_at_trace_level() {
    let logs = Buffer::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .try_init()
        .unwrap();

    let hub = Emulator::builder().start().await.unwrap();
    let device_cs = hub.hub().create_device("logged").unwrap();
    let service_cs = hub.service_connection_string();
    let device = DeviceClient::from_connection_string(
        &device_cs,
        DeviceClientOptions::new()
            .trust_ca_pem(hub.ca_pem())
            .unwrap(),
    )
    .await
    .unwrap();
    device
        .on_method("m", |_: Value| async { Ok::<_, MethodError>(json!(1)) })
        .await
        .unwrap();
    let service = ServiceClient::from_connection_string(
        &service_cs,
        ServiceClientOptions::new()
            .trust_ca_pem(hub.ca_pem())
            .unwrap(),
    )
    .unwrap();
    service
        .invoke_method("logged", &DirectMethodRequest::new("m"))
        .await
        .unwrap();
    service
        .update_twin(
            "logged",
            &TwinPatch::new().desired("a", json!(1)),
            IfMatch::Any,
        )
        .await
        .unwrap();
    device.update_reported(&json!({"b": 2})).await.unwrap();
    device.send_telemetry(Message::new("x")).await.unwrap();
    hub.hub().disconnect("logged", None);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let _ = service.get_twin("nobody").await;
    let bad = device_cs.replace(&key(&device_cs)[..10], "AAAAAAAAAA");
    let _ = DeviceClient::from_connection_string(
        &bad,
        DeviceClientOptions::new()
            .trust_ca_pem(hub.ca_pem())
            .unwrap(),
    )
    .await;
    device.close().await.unwrap();

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.len() > 1000,
        "expected trace output, got {} bytes",
        text.len()
    );
    for secret in [key(&device_cs), key(&service_cs), key(&bad)] {
        assert!(!text.contains(&secret), "a key reached the logs");
    }
    for marker in ["SharedAccessSignature", "sig=", "SharedAccessKey="] {
        assert!(!text.contains(marker), "{marker} reached the logs");
    }
}

fn key(cs: &str) -> String {
    cs.split("SharedAccessKey=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}
