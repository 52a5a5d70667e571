//! Hostile input against the emulator (issue 14): each test reproduces one way a request used
//! to crash, wedge or grow the emulator, over real sockets, and checks the fixed behaviour.
//! Raw MQTT goes to the plain port as hand-built packets; raw HTTPS uses tokio-rustls with the
//! emulator's CA, so that half-requests and silent connections can be sent.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use iot_common::{SasToken, Secret};
use iot_hub_emulator::{Emulator, RunningEmulator, dev_keys};
use rustls_pki_types::pem::PemObject as _;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Generous bound for "it happens", never a performance claim.
const WAIT: Duration = Duration::from_secs(15);

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn hub() -> RunningEmulator {
    Emulator::builder()
        .plain_mqtt_port(0)
        .start()
        .await
        .unwrap()
}

fn key_of(cs: &str) -> Secret {
    Secret::new(
        cs.split("SharedAccessKey=")
            .nth(1)
            .unwrap()
            .split(';')
            .next()
            .unwrap(),
    )
}

// ---- raw MQTT ------------------------------------------------------------------------------

fn mqtt_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&u16::try_from(s.len()).unwrap().to_be_bytes());
    out.extend_from_slice(s);
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let mut b = u8::try_from(len % 128).unwrap();
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        out.push(b);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// A CONNECT for `device` with the given password, MQTT protocol `level` (4 = 3.1.1).
fn connect_packet(device: &str, username: &str, password: &str, level: u8) -> Vec<u8> {
    let mut b = Vec::new();
    mqtt_string(&mut b, b"MQTT");
    b.push(level);
    b.push(0xC2); // username, password, clean session
    b.extend_from_slice(&60u16.to_be_bytes());
    if level == 5 {
        b.push(0); // no properties
    }
    mqtt_string(&mut b, device.as_bytes());
    mqtt_string(&mut b, username.as_bytes());
    mqtt_string(&mut b, password.as_bytes());
    packet(0x10, &b)
}

fn device_connect(
    hub: &RunningEmulator,
    device: &str,
    expires_at: u64,
    model: Option<&str>,
) -> Vec<u8> {
    let key = key_of(&hub.device_connection_string(device).unwrap());
    let token = SasToken::for_device("localhost", device, &key, expires_at).unwrap();
    let mut username = format!("localhost/{device}/?api-version=2021-04-12");
    if let Some(m) = model {
        username.push_str("&model-id=");
        username.push_str(m);
    }
    connect_packet(device, &username, token.as_secret().expose(), 4)
}

fn subscribe_packet(topic: &str) -> Vec<u8> {
    let mut b = 1u16.to_be_bytes().to_vec();
    mqtt_string(&mut b, topic.as_bytes());
    b.push(0);
    packet(0x82, &b)
}

async fn plain(hub: &RunningEmulator) -> TcpStream {
    TcpStream::connect(hub.plain_mqtt_addr().unwrap())
        .await
        .unwrap()
}

/// Reads exactly `n` bytes, or fails the test after [`WAIT`].
async fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    tokio::time::timeout(WAIT, s.read_exact(&mut buf))
        .await
        .expect("the emulator answered in time")
        .unwrap();
    buf
}

/// Waits until the peer closes the connection (EOF or reset), draining what it sends.
async fn closed<S: AsyncReadExt + Unpin>(s: &mut S) -> bool {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(WAIT, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// `myDevice` connected on the plain port and subscribed to desired-property notifications,
/// CONNACK and SUBACK read; from here on the caller reads nothing.
async fn desired_subscriber(hub: &RunningEmulator, expires_at: u64) -> TcpStream {
    let mut s = plain(hub).await;
    let mut bytes = device_connect(hub, "myDevice", expires_at, None);
    bytes.extend(subscribe_packet("$iothub/twin/PATCH/properties/desired/#"));
    s.write_all(&bytes).await.unwrap();
    read_n(&mut s, 9).await;
    s
}

/// `count` desired patches of about 24 KB each (six 4 KB strings, under the 32 KB section
/// limit), each one a notification to a subscribed `myDevice`.
fn flood_desired(hub: &RunningEmulator, count: u32) {
    let big = "x".repeat(4000);
    for i in 0..count {
        hub.hub()
            .update_twin(
                "myDevice",
                None,
                &json!({ "properties": { "desired": {
                "b1": big, "b2": big, "b3": big, "b4": big, "b5": big, "b6": big, "n": i
            } } }),
                false,
            )
            .unwrap();
    }
}

async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

#[tokio::test]
async fn a_subscribe_in_the_same_write_as_connect_is_answered() {
    let hub = hub().await;
    let mut s = plain(&hub).await;
    let mut bytes = device_connect(&hub, "myDevice", now() + 3600, None);
    bytes.extend(subscribe_packet("$iothub/methods/POST/#"));
    s.write_all(&bytes).await.unwrap();
    assert_eq!(read_n(&mut s, 4).await, [0x20, 2, 0, 0], "CONNACK accepted");
    assert_eq!(
        read_n(&mut s, 5).await,
        [0x90, 3, 0, 1, 0],
        "SUBACK for packet 1"
    );
}

#[tokio::test]
async fn garbage_in_the_same_write_as_connect_closes_the_connection() {
    let hub = hub().await;
    let mut s = plain(&hub).await;
    let mut bytes = device_connect(&hub, "myDevice", now() + 3600, None);
    bytes.extend([0xF0, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]);
    s.write_all(&bytes).await.unwrap();
    assert!(closed(&mut s).await, "the emulator closed the connection");
}

#[tokio::test]
async fn an_mqtt5_connect_gets_connack_1() {
    let hub = hub().await;
    let mut s = plain(&hub).await;
    s.write_all(&connect_packet(
        "myDevice",
        "localhost/myDevice/?api-version=2021-04-12",
        "x",
        5,
    ))
    .await
    .unwrap();
    assert_eq!(
        read_n(&mut s, 4).await,
        [0x20, 2, 0, 1],
        "unacceptable protocol version"
    );
}

#[tokio::test]
async fn a_token_expiring_in_the_far_future_neither_panics_nor_leaves_a_ghost_session() {
    let hub = hub().await;
    let mut s = plain(&hub).await;
    // se=9999999999999999999 overflowed Instant + Duration and panicked the connection task.
    s.write_all(&device_connect(
        &hub,
        "myDevice",
        9_999_999_999_999_999_999,
        None,
    ))
    .await
    .unwrap();
    assert_eq!(read_n(&mut s, 4).await, [0x20, 2, 0, 0]);
    assert!(eventually(|| hub.hub().connected_count() == 1).await);
    s.write_all(&[0xE0, 0]).await.unwrap(); // DISCONNECT
    assert!(closed(&mut s).await);
    assert!(
        eventually(|| hub.hub().connected_count() == 0).await,
        "no ghost session"
    );
}

#[tokio::test]
async fn a_device_that_stops_reading_is_still_disconnected_on_request() {
    let hub = hub().await;
    let _s = desired_subscriber(&hub, now() + 3600).await;
    // Fill the socket buffers and the session's queue with desired-property notifications.
    flood_desired(&hub, 300);
    // The flood may already have closed it (queue full); either way it must end.
    hub.hub().disconnect("myDevice", None);
    assert!(
        eventually(|| hub.hub().connected_count() == 0).await,
        "the blocked connection closed"
    );
}

#[tokio::test]
async fn a_device_that_falls_behind_on_notifications_is_disconnected_not_silently_skipped() {
    let hub = hub().await;
    let _s = desired_subscriber(&hub, now() + 3600).await;
    // More notifications than the socket buffers and the session's queue (256) can hold: the
    // emulator used to drop the rest silently and keep the device connected with a stale twin.
    flood_desired(&hub, 1500);
    assert!(
        eventually(|| hub.hub().connected_count() == 0).await,
        "the device that fell behind was disconnected, so it resyncs when it reconnects"
    );
}

#[tokio::test]
async fn token_expiry_fires_while_a_write_to_a_device_is_blocked() {
    let hub = hub().await;
    let mut s = plain(&hub).await;
    // The token expires in 3 s; the device then reads nothing while notifications pile up.
    let mut bytes = device_connect(&hub, "myDevice", now() + 3, None);
    bytes.extend(subscribe_packet("$iothub/twin/PATCH/properties/desired/#"));
    s.write_all(&bytes).await.unwrap();
    read_n(&mut s, 9).await;
    flood_desired(&hub, 300);
    assert!(
        eventually(|| hub.hub().connected_count() == 0).await,
        "the expired connection closed although its writes were blocked"
    );
}

#[tokio::test]
async fn a_device_announcing_a_model_id_shows_it_in_its_twin() {
    let hub = hub().await;
    let mut s = plain(&hub).await;
    s.write_all(&device_connect(
        &hub,
        "myDevice",
        now() + 3600,
        Some("dtmi:com:example:Thermostat;1"),
    ))
    .await
    .unwrap();
    assert_eq!(read_n(&mut s, 4).await, [0x20, 2, 0, 0]);
    let (status, _, body) = https(&hub, "GET", "/twins/myDevice", None).await;
    assert_eq!(status, 200);
    let twin: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(twin["modelId"], "dtmi:com:example:Thermostat;1");
}

// ---- raw HTTPS -----------------------------------------------------------------------------

fn tls_connector(hub: &RunningEmulator) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(hub.ca_pem().as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn tls(hub: &RunningEmulator) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(hub.https_addr()).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    tls_connector(hub).connect(name, tcp).await.unwrap()
}

fn service_token(hub: &RunningEmulator) -> String {
    let key = Secret::new(dev_keys::DEV_POLICY_PRIMARY_KEY);
    let t = SasToken::for_service(hub.host_name(), "iothubowner", &key, now() + 3600).unwrap();
    t.as_secret().expose().to_owned()
}

/// One request on its own connection; returns status, the raw head and the body.
async fn https(
    hub: &RunningEmulator,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, String, Vec<u8>) {
    let body = body
        .map(|b| serde_json::to_vec(b).unwrap())
        .unwrap_or_default();
    let sep = if path.contains('?') { '&' } else { '?' };
    let head = format!(
        "{method} {path}{sep}api-version=2021-04-12 HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        service_token(hub),
        body.len()
    );
    let mut s = tls(hub).await;
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut raw))
        .await
        .expect("answered in time")
        .ok();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head[9..12].parse().unwrap();
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, head, body)
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..line_end]).unwrap().trim(), 16)
            .unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[line_end + 2..line_end + 2 + size]);
        raw = &raw[line_end + 4 + size..];
    }
}

#[tokio::test]
async fn https_connections_that_send_nothing_or_half_a_request_are_closed() {
    let hub = Emulator::builder()
        .http_idle_timeout(Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    let mut silent = tls(&hub).await;
    assert!(closed(&mut silent).await, "silent after the handshake");
    let mut half = tls(&hub).await;
    half.write_all(b"GET /twins/myDev").await.unwrap();
    assert!(closed(&mut half).await, "half a request line");
    // A request that is being served is not idle: a method call that waits for its device
    // longer than the idle timeout still gets its answer.
    let (status, _, body) = https(
        &hub,
        "POST",
        "/twins/myDevice/methods",
        Some(&json!({ "methodName": "reboot", "connectTimeoutInSeconds": 1, "responseTimeoutInSeconds": 5 })),
    )
    .await;
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
}

#[tokio::test]
async fn a_job_condition_with_ten_thousand_ors_is_refused_and_the_emulator_lives() {
    let hub = hub().await;
    for n in [10_000, 60_000] {
        let condition = vec!["deviceId = 'x'"; n].join(" OR ");
        let (status, _, _) = https(
            &hub,
            "PUT",
            &format!("/jobs/v2/ors{n}"),
            Some(&json!({
                "jobId": format!("ors{n}"),
                "type": "scheduleUpdateTwin",
                "updateTwin": { "etag": "*", "tags": { "a": 1 } },
                "queryCondition": condition,
                "maxExecutionTimeInSeconds": 60
            })),
        )
        .await;
        assert_eq!(status, 400, "{n} ORs");
    }
    let (status, _, _) = https(&hub, "GET", "/twins/myDevice", None).await;
    assert_eq!(status, 200, "the emulator still answers");
}

#[tokio::test]
async fn a_job_execution_time_past_int64_is_refused_and_a_huge_one_still_runs() {
    let hub = hub().await;
    let job = |id: &str, max: Value| {
        json!({
            "jobId": id,
            "type": "scheduleUpdateTwin",
            "updateTwin": { "etag": "*", "tags": { "huge": true } },
            "queryCondition": "deviceId = 'myDevice'",
            "maxExecutionTimeInSeconds": max
        })
    };
    let (status, _, _) = https(
        &hub,
        "PUT",
        "/jobs/v2/j1",
        Some(&job("j1", json!(u64::MAX))),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _, _) = https(
        &hub,
        "PUT",
        "/jobs/v2/j2",
        Some(&job("j2", json!(i64::MAX))),
    )
    .await;
    assert_eq!(status, 200);
    let mut last = Value::Null;
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        let (_, _, body) = https(&hub, "GET", "/jobs/v2/j2", None).await;
        last = serde_json::from_slice(&body).unwrap();
        if last["status"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last["status"], "completed", "{last}");
}

#[tokio::test]
async fn a_method_name_over_the_limit_gets_400() {
    let hub = hub().await;
    let (status, head, body) = https(
        &hub,
        "POST",
        "/twins/myDevice/methods",
        Some(&json!({ "methodName": "m".repeat(200), "responseTimeoutInSeconds": 5 })),
    )
    .await;
    assert_eq!(status, 400, "{head}");
    assert!(String::from_utf8_lossy(&body).contains("methodName"));
}

#[tokio::test]
async fn routes_the_emulator_does_not_serve_answer_with_the_hubs_json_error() {
    let hub = hub().await;
    for (method, path, says_not_emulated) in [
        ("GET", "/configurations/c1", true),
        ("GET", "/digitaltwins/myDevice", true),
        ("POST", "/devices", true),
        ("POST", "/jobs/create", true),
        ("GET", "/messages/serviceBound/feedback", true),
        ("GET", "/no/such/route", false),
        ("DELETE", "/twins/myDevice", false),
    ] {
        let (status, head, body) = https(&hub, method, path, Some(&json!({}))).await;
        assert!(matches!(status, 404 | 405), "{method} {path}: {head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("iothub-errorcode: generic"),
            "{method} {path}: {head}"
        );
        let body: Value = serde_json::from_slice(&body).unwrap();
        let message = body["Message"].as_str().unwrap_or_default().to_owned() + &body.to_string();
        assert_eq!(
            message.contains("does not implement"),
            says_not_emulated,
            "{method} {path}: {message}"
        );
        assert!(
            !message.contains("SharedAccessSignature"),
            "no token echoed"
        );
    }
}

#[tokio::test]
async fn telemetry_is_bounded_in_bytes_kept_as_bytes_and_paged() {
    let hub = Emulator::builder()
        .plain_mqtt_port(0)
        .telemetry_max_bytes(1024 * 1024)
        .start()
        .await
        .unwrap();
    let mut s = plain(&hub).await;
    s.write_all(&device_connect(&hub, "myDevice", now() + 3600, None))
        .await
        .unwrap();
    read_n(&mut s, 4).await;
    let body = vec![0xFFu8; 250 * 1024];
    for i in 0..20u16 {
        let mut p = Vec::new();
        mqtt_string(&mut p, b"devices/myDevice/messages/events/");
        p.extend_from_slice(&(i + 1).to_be_bytes());
        p.extend_from_slice(&body);
        s.write_all(&packet(0x32, &p)).await.unwrap(); // QoS 1
        read_n(&mut s, 4).await; // PUBACK
    }
    let kept = hub.hub().telemetry(Some("myDevice"));
    assert!(
        !kept.is_empty() && kept.len() <= 4,
        "{} records kept",
        kept.len()
    );
    assert!(
        kept.iter()
            .all(|r| r.body.len() == body.len() && r.body.iter().all(|b| *b == 0xFF))
    );
    // The REST view pages: one record per page with top=1, following x-ms-continuation.
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &token {
            Some(t) => format!("/emulator/telemetry?top=1&continuationToken={t}"),
            None => "/emulator/telemetry?top=1".to_owned(),
        };
        let (status, head, body) = https(&hub, "GET", &path, None).await;
        assert_eq!(status, 200);
        let page: Vec<Value> = serde_json::from_slice(&body).unwrap();
        assert_eq!(page.len(), 1);
        assert!(
            page[0]["bodyBase64"].as_str().is_some(),
            "binary bodies are base64"
        );
        pages += 1;
        token = head.lines().find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-ms-continuation: ")
                .map(str::to_owned)
        });
        if token.is_none() || pages > 10 {
            break;
        }
    }
    assert_eq!(pages, kept.len());
}

#[tokio::test]
async fn a_seed_entry_for_my_device_wins_and_a_private_policy_key_retires_the_public_device_key() {
    let dir = std::env::temp_dir().join(format!("hostile-seed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let seed = dir.join("seed.json");
    let mine = "bXlPd25EZXZpY2VLZXlGb3JUaGVUZXN0MDAwMDAwMDA=";
    std::fs::write(
        &seed,
        json!({ "devices": [ { "deviceId": "myDevice", "primaryKey": mine } ] }).to_string(),
    )
    .unwrap();
    let hub = Emulator::builder().seed_file(&seed).start().await.unwrap();
    assert_eq!(
        key_of(&hub.device_connection_string("myDevice").unwrap()).expose(),
        mine
    );
    drop(hub);

    let hub = Emulator::builder()
        .policy_key(Secret::new("cHJpdmF0ZVBvbGljeUtleUZvclRoZVRlc3QwMDAwMDA="))
        .start()
        .await
        .unwrap();
    let key = key_of(&hub.device_connection_string("myDevice").unwrap());
    assert!(
        !dev_keys::is_well_known(key.expose()),
        "myDevice got a private key"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn unfinished_jobs_are_bounded_with_429() {
    let hub = hub().await;
    let job = |id: &str| {
        json!({
            "jobId": id,
            "type": "scheduleUpdateTwin",
            "updateTwin": { "etag": "*", "tags": { "later": true } },
            "queryCondition": "deviceId = 'myDevice'",
            "startTime": "2999-01-01T00:00:00Z",
            "maxExecutionTimeInSeconds": 60
        })
    };
    for i in 0..100 {
        let (status, head, _) = https(
            &hub,
            "PUT",
            &format!("/jobs/v2/later{i}"),
            Some(&job(&format!("later{i}"))),
        )
        .await;
        assert_eq!(status, 200, "{head}");
    }
    let (status, head, _) = https(&hub, "PUT", "/jobs/v2/one-more", Some(&job("one-more"))).await;
    assert_eq!(status, 429, "{head}");
    assert!(
        head.contains("ThrottlingMaxActiveJobCountExceeded"),
        "{head}"
    );
    // Cancelling one makes room again.
    let (status, _, _) = https(&hub, "POST", "/jobs/v2/later0/cancel", None).await;
    assert_eq!(status, 200);
    let (status, _, _) = https(&hub, "PUT", "/jobs/v2/one-more", Some(&job("one-more"))).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_port_in_use_is_named_with_the_flag_that_moves_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let err = Emulator::builder()
        .mqtt_port(port)
        .start()
        .await
        .unwrap_err();
    let shown = err.to_string();
    assert!(shown.contains(&format!("127.0.0.1:{port}")), "{shown}");
    assert!(shown.contains("--mqtt-port"), "{shown}");
    assert!(
        shown.contains("in use") || shown.contains("uses port"),
        "{shown}"
    );
}
