//! With initial-connect retries on, every failed attempt is visible: logged at `warn` with the
//! device, the endpoint and the hint while the client retries, at `error` when it gives up.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use iot_device::{Backoff, DeviceClient, DeviceClientOptions, ErrorKind};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

// Current-thread runtime: the client's task runs on this thread, under the scoped subscriber.
#[tokio::test]
async fn each_failed_attempt_is_logged_until_the_client_gives_up() {
    let logs = Buffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let cs = format!(
        "HostName=127.0.0.1:{port};DeviceId=booting;SharedAccessKey=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
    );
    let options = DeviceClientOptions::new()
        .retry_initial_connect(true)
        .max_reconnect_attempts(Some(2))
        .backoff(Backoff::new(
            Duration::from_millis(10),
            Duration::from_millis(50),
            Duration::from_millis(5),
        ));
    // A hang guard only: two quick retries end far sooner.
    let err = tokio::time::timeout(
        Duration::from_secs(60),
        DeviceClient::from_connection_string(&cs, options),
    )
    .await
    .expect("connect gives up after max_reconnect_attempts")
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection, "{err:?}");

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let endpoint = format!("127.0.0.1:{port}");
    let retries: Vec<&str> = text.lines().filter(|l| l.contains("retrying")).collect();
    assert_eq!(retries.len(), 2, "one warning per retried attempt:\n{text}");
    for line in &retries {
        assert!(line.contains("WARN"), "{line}");
        assert!(
            line.contains("'booting'") && line.contains(&endpoint),
            "names the device and the endpoint: {line}"
        );
        assert!(
            line.contains("nothing is listening"),
            "carries the hint: {line}"
        );
    }
    let final_line = text
        .lines()
        .find(|l| l.contains("giving up"))
        .unwrap_or_else(|| panic!("the last failure is logged:\n{text}"));
    assert!(final_line.contains("ERROR"), "{final_line}");
}
