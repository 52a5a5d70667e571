//! `--state` keeps everything that was acknowledged: the emulator binary runs as a child
//! process, is killed with SIGKILL in the middle of a burst of writes, restarted on the same
//! directory, and every write that was answered 2xx must be there.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use iot_common::{SasToken, Secret};
use iot_hub_emulator::dev_keys;
use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const API: &str = "api-version=2021-04-12";

/// A scratch directory removed at the end of the test.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let d = std::env::temp_dir().join(format!("iot-emu-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Self(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The emulator binary running as a child process.
struct Emu {
    child: Child,
    plain_mqtt_port: u16,
    base: String,
    http: reqwest::Client,
    auth: String,
}

impl Drop for Emu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(state: &Path, certs: &Path) -> Emu {
    let mut child = Command::new(env!("CARGO_BIN_EXE_iot-hub-emulator"))
        .args([
            "--mqtt-port",
            "0",
            "--https-port",
            "0",
            "--plain-mqtt-port",
            "0",
            "--amqp-port",
            "0",
        ])
        .arg("--state")
        .arg(state)
        .arg("--cert-dir")
        .arg(certs)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // Read (and keep draining) stdout so the child never blocks on a full pipe.
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            let line = line.trim();
            for (prefix, kind) in [("HTTPS + MQTT/WSS:", 0), ("MQTT (plain):", 1)] {
                if let Some(addr) = line.strip_prefix(prefix) {
                    let port: u16 = addr.trim().rsplit(':').next().unwrap().parse().unwrap();
                    let _ = tx.send((kind, port));
                }
            }
        }
    });
    let (mut port, mut plain_mqtt_port) = (0, 0);
    while port == 0 || plain_mqtt_port == 0 {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok((0, p)) => port = p,
            Ok((_, p)) => plain_mqtt_port = p,
            Err(_) => panic!("the emulator did not start"),
        }
    }
    let ca = std::fs::read(certs.join("ca.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    use rustls_pki_types::pem::PemObject as _;
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(&ca) {
        roots.add(c.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let far = iot_common_now() + 3600;
    let auth = SasToken::for_service(
        "localhost",
        "iothubowner",
        &Secret::new(dev_keys::DEV_POLICY_PRIMARY_KEY),
        far,
    )
    .unwrap()
    .as_secret()
    .expose()
    .to_owned();
    Emu {
        child,
        plain_mqtt_port,
        base: format!("https://localhost:{port}"),
        http,
        auth,
    }
}

fn iot_common_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl Emu {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(u16, serde_json::Value), reqwest::Error> {
        let mut rq = self
            .http
            .request(method, format!("{}{path}?{API}", self.base))
            .header("Authorization", &self.auth);
        if let Some(b) = body {
            rq = rq.json(&b);
        }
        let r = rq.send().await?;
        let status = r.status().as_u16();
        let body = r.json().await.unwrap_or(serde_json::Value::Null);
        Ok((status, body))
    }

    fn kill9(mut self) {
        // std's kill is SIGKILL on Unix: no shutdown code runs.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// What the hub acknowledged: created devices, and the last acknowledged tag of each.
#[derive(Default)]
struct Acked {
    created: Vec<String>,
    tags: BTreeMap<String, u64>,
}

/// One writer: creates its devices and patches their twins until the hub stops answering.
async fn writer(emu: Arc<Emu>, name: String, acked_total: Arc<AtomicUsize>) -> Acked {
    let mut acked = Acked::default();
    for i in 0..100_000u64 {
        let id = format!("{name}-{i}");
        let created = emu
            .send(
                reqwest::Method::PUT,
                &format!("/devices/{id}"),
                Some(serde_json::json!({ "deviceId": id })),
            )
            .await;
        match created {
            Ok((200, _)) => acked.created.push(id.clone()),
            _ => return acked,
        }
        acked_total.fetch_add(1, Ordering::Relaxed);
        for v in 1..=2 {
            let patched = emu
                .send(
                    reqwest::Method::PATCH,
                    &format!("/twins/{id}"),
                    Some(serde_json::json!({ "tags": { "v": v } })),
                )
                .await;
            match patched {
                Ok((200, _)) => {
                    acked.tags.insert(id.clone(), v);
                }
                _ => return acked,
            }
            acked_total.fetch_add(1, Ordering::Relaxed);
        }
    }
    acked
}

/// Checks every acknowledged write; returns how many were lost.
async fn lost(emu: &Emu, acked: &Acked) -> usize {
    let mut lost = 0;
    for id in &acked.created {
        let (status, _) = emu
            .send(reqwest::Method::GET, &format!("/devices/{id}"), None)
            .await
            .unwrap();
        if status != 200 {
            eprintln!("lost device {id}: {status}");
            lost += 1;
        }
    }
    for (id, v) in &acked.tags {
        let (_, twin) = emu
            .send(reqwest::Method::GET, &format!("/twins/{id}"), None)
            .await
            .unwrap();
        // A later patch may have been committed without its answer arriving: at least `v`.
        if twin["tags"]["v"].as_u64().is_none_or(|got| got < *v) {
            eprintln!("lost tag of {id}: want {v}, got {}", twin["tags"]["v"]);
            lost += 1;
        }
    }
    lost
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_burst_loses_no_acknowledged_write() {
    let state = TempDir::new("kill9-state");
    let certs = TempDir::new("kill9-certs");
    let mut all = Acked::default();
    let mut total = 0;
    for round in 0..3 {
        let emu = Arc::new(start(&state.0, &certs.0));
        // What earlier rounds were told is still there after the restart.
        assert_eq!(
            lost(&emu, &all).await,
            0,
            "round {round}: lost after restart"
        );
        let acked_now = Arc::new(AtomicUsize::new(0));
        let writers: Vec<_> = (0..4)
            .map(|w| {
                tokio::spawn(writer(
                    emu.clone(),
                    format!("r{round}w{w}"),
                    acked_now.clone(),
                ))
            })
            .collect();
        // Kill once the burst is well under way (bounded: at most 60 s).
        for _ in 0..600 {
            if acked_now.load(Ordering::Relaxed) >= 400 + 100 * round {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The writers hold clones of the handle: kill through its pid.
        kill_shared(&emu);
        for w in writers {
            let a = w.await.unwrap();
            total += a.created.len() + a.tags.len();
            all.created.extend(a.created);
            all.tags.extend(a.tags);
        }
        drop(emu);
    }
    let emu = start(&state.0, &certs.0);
    assert!(total > 1000, "only {total} writes were acknowledged");
    assert_eq!(lost(&emu, &all).await, 0, "acknowledged writes lost");
    eprintln!("{total} acknowledged writes over 3 kill -9 rounds, 0 lost");
}

/// SIGKILLs the child behind a shared handle (the writers still hold theirs).
fn kill_shared(emu: &Emu) {
    let pid = emu.child.id();
    let status = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_state_write_is_retried_and_nothing_is_lost() {
    let state = TempDir::new("failwrite-state");
    let certs = TempDir::new("failwrite-certs");
    let emu = start(&state.0, &certs.0);
    let (status, _) = emu
        .send(
            reqwest::Method::POST,
            "/emulator/faults",
            Some(serde_json::json!({ "failStateWrites": 3 })),
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    let mut acked = Acked::default();
    for i in 0..5 {
        let id = format!("fw-{i}");
        let (status, _) = emu
            .send(
                reqwest::Method::PUT,
                &format!("/devices/{id}"),
                Some(serde_json::json!({ "deviceId": id })),
            )
            .await
            .unwrap();
        assert_eq!(status, 200, "create {id}");
        acked.created.push(id.clone());
        let (status, _) = emu
            .send(
                reqwest::Method::PATCH,
                &format!("/twins/{id}"),
                Some(serde_json::json!({ "tags": { "v": 1 } })),
            )
            .await
            .unwrap();
        assert_eq!(status, 200, "patch {id}");
        acked.tags.insert(id, 1);
    }
    emu.kill9();
    let emu = start(&state.0, &certs.0);
    assert_eq!(lost(&emu, &acked).await, 0);
}

/// A raw MQTT device (`myDevice`, well-known key) on the plain port, with the session kept.
fn persistent_device(emu: &Emu) -> (rumqttc::AsyncClient, rumqttc::EventLoop) {
    let id = dev_keys::DEV_DEVICE_ID;
    let token = SasToken::for_device(
        "localhost",
        id,
        &Secret::new(dev_keys::DEV_DEVICE_PRIMARY_KEY),
        iot_common_now() + 3600,
    )
    .unwrap();
    let mut o = rumqttc::MqttOptions::new(id, "127.0.0.1", emu.plain_mqtt_port);
    o.set_clean_session(false);
    o.set_keep_alive(Duration::from_secs(60));
    o.set_credentials(
        format!("localhost/{id}/?api-version=2021-04-12"),
        token.as_secret().expose(),
    );
    rumqttc::AsyncClient::new(o, 16)
}

/// The next incoming packet other than pings and acks of our own publishes.
async fn next_packet(ev: &mut rumqttc::EventLoop) -> rumqttc::Packet {
    let wait = async {
        loop {
            match ev.poll().await {
                Ok(rumqttc::Event::Incoming(p)) if !matches!(p, rumqttc::Packet::PingResp) => {
                    return p;
                }
                Ok(_) => {}
                Err(e) => panic!("mqtt: {e}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .expect("no packet within 30 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_session_and_pending_c2d_survive_kill_9() {
    use rumqttc::{Packet, QoS};
    let state = TempDir::new("session-state");
    let certs = TempDir::new("session-certs");
    let emu = start(&state.0, &certs.0);
    let device = dev_keys::DEV_DEVICE_ID;
    {
        let (client, mut ev) = persistent_device(&emu);
        match next_packet(&mut ev).await {
            Packet::ConnAck(a) => assert!(!a.session_present),
            p => panic!("{p:?}"),
        }
        client
            .subscribe("$iothub/methods/POST/#", QoS::AtMostOnce)
            .await
            .unwrap();
        client
            .subscribe(
                format!("devices/{device}/messages/devicebound/#"),
                QoS::AtLeastOnce,
            )
            .await
            .unwrap();
        for _ in 0..2 {
            assert!(matches!(next_packet(&mut ev).await, Packet::SubAck(_)));
        }
        client.disconnect().await.unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(5), ev.poll()).await;
    }
    // Queued while the device is away, acknowledged, then the hub is killed.
    let (status, _) = emu
        .send(
            reqwest::Method::POST,
            &format!("/emulator/devices/{device}/messages"),
            Some(serde_json::json!("queued-before-the-crash")),
        )
        .await
        .unwrap();
    assert!((200..300).contains(&status), "{status}");
    emu.kill9();

    let emu = start(&state.0, &certs.0);
    let (client, mut ev) = persistent_device(&emu);
    match next_packet(&mut ev).await {
        Packet::ConnAck(a) => assert!(a.session_present, "session lost"),
        p => panic!("{p:?}"),
    }
    // No SUBSCRIBE this time: the stored session routes the message and the method.
    match next_packet(&mut ev).await {
        Packet::Publish(p) => {
            assert!(
                p.topic
                    .starts_with(&format!("devices/{device}/messages/devicebound/"))
            );
            assert_eq!(&p.payload[..], b"\"queued-before-the-crash\"");
        }
        p => panic!("{p:?}"),
    }
    let invoke = {
        let http = emu.http.clone();
        let url = format!("{}/twins/{device}/methods?{API}", emu.base);
        let auth = emu.auth.clone();
        tokio::spawn(async move {
            let r = http
                .post(url)
                .header("Authorization", auth)
                .json(&serde_json::json!({
                    "methodName": "ping", "payload": {}, "responseTimeoutInSeconds": 20
                }))
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap(),
            )
        })
    };
    let rid = loop {
        match next_packet(&mut ev).await {
            Packet::Publish(p) if p.topic.starts_with("$iothub/methods/POST/ping/") => {
                break p.topic.rsplit("$rid=").next().unwrap().to_owned();
            }
            Packet::Publish(_) | Packet::PubAck(_) => {}
            p => panic!("{p:?}"),
        }
    };
    client
        .publish(
            format!("$iothub/methods/res/200/?$rid={rid}"),
            QoS::AtMostOnce,
            false,
            b"{\"pong\":true}".to_vec(),
        )
        .await
        .unwrap();
    let poll = tokio::spawn(async move {
        loop {
            if ev.poll().await.is_err() {
                return;
            }
        }
    });
    let (status, body) = tokio::time::timeout(Duration::from_secs(30), invoke)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["payload"]["pong"], true);
    poll.abort();
}

#[tokio::test]
async fn state_files_holding_keys_are_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let root = TempDir::new("perms");
    let (state, certs) = (root.0.join("state"), root.0.join("certs"));
    let hub = iot_hub_emulator::Emulator::builder()
        .state_dir(&state)
        .cert_dir(&certs)
        .start()
        .await
        .unwrap();
    hub.hub().create_device("secretive").unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700);
    for entry in std::fs::read_dir(&state).unwrap() {
        let p = entry.unwrap().path();
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
    assert_eq!(mode(&certs.join("server-key.pem")), 0o600);
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn corrupt_or_newer_state_refuses_to_start_and_is_left_untouched() {
    let root = TempDir::new("corrupt");
    let start = |dir: PathBuf| async move {
        iot_hub_emulator::Emulator::builder()
            .state_dir(dir)
            .start()
            .await
    };
    // Not a database at all.
    let garbage = root.0.join("garbage");
    std::fs::create_dir_all(&garbage).unwrap();
    std::fs::write(garbage.join("state.db"), b"this is not a database").unwrap();
    let err = start(garbage.clone()).await.unwrap_err().to_string();
    assert!(err.contains("state.db") && err.contains("refuses"), "{err}");
    assert_eq!(
        std::fs::read(garbage.join("state.db")).unwrap(),
        b"this is not a database"
    );
    // A state written by a later schema.
    let newer = root.0.join("newer");
    start(newer.clone())
        .await
        .unwrap()
        .shutdown()
        .await
        .unwrap();
    {
        let c = rusqlite::Connection::open(newer.join("state.db")).unwrap();
        c.execute_batch("PRAGMA user_version = 99;").unwrap();
    }
    let before = std::fs::read(newer.join("state.db")).unwrap();
    let err = start(newer.clone()).await.unwrap_err().to_string();
    assert!(err.contains("schema version 99"), "{err}");
    assert_eq!(std::fs::read(newer.join("state.db")).unwrap(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_and_their_device_rows_survive_kill_9() {
    let state = TempDir::new("jobs-state");
    let certs = TempDir::new("jobs-certs");
    let emu = start(&state.0, &certs.0);
    let job = |id: &str, start: &str| {
        serde_json::json!({
            "jobId": id, "type": "scheduleUpdateTwin",
            "queryCondition": format!("deviceId = '{}'", dev_keys::DEV_DEVICE_ID),
            "updateTwin": { "etag": "*", "tags": { "job": id } },
            "startTime": start, "maxExecutionTimeInSeconds": 60,
        })
    };
    let later = "2099-01-01T00:00:00Z";
    let (status, _) = emu
        .send(
            reqwest::Method::PUT,
            "/jobs/v2/later",
            Some(job("later", later)),
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    let now = chrono::Utc::now().to_rfc3339();
    let (status, _) = emu
        .send(reqwest::Method::PUT, "/jobs/v2/now", Some(job("now", &now)))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let mut done = false;
    for _ in 0..300 {
        let (_, j) = emu
            .send(reqwest::Method::GET, "/jobs/v2/now", None)
            .await
            .unwrap();
        if j["status"] == "completed" {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(done, "the job did not complete");
    // The job's last row is handed to the store as it completes; give it a commit.
    let (status, _) = emu
        .send(
            reqwest::Method::PUT,
            "/devices/sync-point",
            Some(serde_json::json!({ "deviceId": "sync-point" })),
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    emu.kill9();
    let emu = start(&state.0, &certs.0);
    let (status, later_job) = emu
        .send(reqwest::Method::GET, "/jobs/v2/later", None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{later_job}");
    assert_eq!(later_job["status"], "scheduled");
    let (status, now_job) = emu
        .send(reqwest::Method::GET, "/jobs/v2/now", None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{now_job}");
    assert_eq!(now_job["status"], "completed");
    let (_, rows) = emu
        .send(
            reqwest::Method::POST,
            "/devices/query",
            Some(serde_json::json!({ "query": "SELECT * FROM devices.jobs WHERE jobId = 'now'" })),
        )
        .await
        .unwrap();
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{rows}");
    assert_eq!(rows[0]["status"], "completed", "{rows}");
}

/// Set for the child process of [`in_process_calls_are_committed_before_they_return`]: the
/// state directory its in-process emulator uses.
const CHILD_STATE_ENV: &str = "IOT_EMU_TEST_CHILD_STATE";
/// What the child prints once its calls have returned.
const CHILD_READY: &str = "in-process calls returned";

/// The child's role (a no-op in a normal test run): an in-process emulator on the state
/// directory the parent names, changed through `RunningEmulator::hub()`, then killed by the
/// parent as soon as the calls have returned.
#[tokio::test]
async fn in_process_child_role() {
    let Ok(dir) = std::env::var(CHILD_STATE_ENV) else {
        return;
    };
    let emu = iot_hub_emulator::Emulator::builder()
        .state_dir(&dir)
        .start()
        .await
        .unwrap();
    // Commits fail twice first (retried after 50 and 100 ms): a call that did not wait for
    // its commit would return long before its change is stored.
    let mut faults = iot_hub_emulator::FaultSettings::default();
    faults.fail_state_writes = Some(2);
    emu.faults().set(&faults);
    let hub = emu.hub();
    hub.create_device("kept").unwrap();
    hub.create_module("kept", "m1").unwrap();
    hub.update_twin(
        "kept",
        None,
        &serde_json::json!({ "tags": { "mark": "tag-set-in-process" } }),
        false,
    )
    .unwrap();
    hub.send_c2d("kept", "c2d-sent-in-process", Default::default())
        .unwrap();
    hub.create_device("doomed").unwrap();
    hub.send_c2d("doomed", "never-delivered", Default::default())
        .unwrap();
    hub.delete_device("doomed").unwrap();
    println!("{CHILD_READY}");
    // The parent kills this process now; the bound only keeps an orphan from lingering.
    tokio::time::sleep(Duration::from_secs(60)).await;
}

/// The rows of `state.db` of a kind, as (key, value text). A device's stored text is its
/// identity row followed by its twins' rows (schema 2 keeps twins in a table of their own).
fn stored_rows(state: &Path, kind: &str) -> Vec<(String, String)> {
    let db = rusqlite::Connection::open(state.join("state.db")).unwrap();
    let mut stmt = db
        .prepare(
            "SELECT key, CAST(value || coalesce((SELECT group_concat(t.value, ' ') FROM twins t
                 WHERE ?1 = 'device' AND t.device_id = records.key), '') AS BLOB)
             FROM records WHERE kind = ?1",
        )
        .unwrap();
    stmt.query_map([kind], |r| {
        Ok((
            r.get::<_, String>(0)?,
            String::from_utf8_lossy(&r.get::<_, Vec<u8>>(1)?).into_owned(),
        ))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// `RunningEmulator::hub()`'s mutating calls return only once their change is committed,
/// as a REST answer does: the process is killed with SIGKILL right after they return, and
/// the state holds every change. Deleting a device deletes its pending cloud-to-device rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_calls_are_committed_before_they_return() {
    let state = TempDir::new("inproc-state");
    let certs = TempDir::new("inproc-certs");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "in_process_child_role", "--nocapture"])
        .env(CHILD_STATE_ENV, &state.0)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let ready = std::thread::spawn(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.contains(CHILD_READY))
    });
    let ready = tokio::task::spawn_blocking(move || ready.join().unwrap())
        .await
        .unwrap();
    // SIGKILL: no shutdown code runs, nothing is flushed on the way out.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(ready, "the child did not finish its calls");

    let devices = stored_rows(&state.0, "device");
    let kept = devices
        .iter()
        .find(|(k, _)| k == "kept")
        .map(|(_, v)| v)
        .expect("the created device is stored");
    assert!(kept.contains("tag-set-in-process"), "{kept}");
    assert!(kept.contains("\"m1\""), "the module is stored: {kept}");
    assert!(devices.iter().all(|(k, _)| k != "doomed"));
    let c2d = stored_rows(&state.0, "c2d");
    assert_eq!(c2d.len(), 1, "{c2d:?}");
    assert!(c2d[0].0.starts_with("kept/"), "{c2d:?}");

    // And the restarted hub serves them.
    let emu = start(&state.0, &certs.0);
    let (status, twin) = emu
        .send(reqwest::Method::GET, "/twins/kept", None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(twin["tags"]["mark"], "tag-set-in-process");
    let (status, _) = emu
        .send(reqwest::Method::GET, "/devices/doomed", None)
        .await
        .unwrap();
    assert_eq!(status, 404);
}

/// A state written by 0.2 (schema 1, twins inside their device's row; made by
/// `tests/fixtures/state-v1/make.py`) opens: it is migrated to schema 2 in one transaction,
/// and the identities and twins read back exactly as 0.2 answered for them, etags,
/// versions and `$metadata` included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_1_state_is_migrated_with_every_twin_intact() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/state-v1");
    let state = TempDir::new("v1-state");
    let certs = TempDir::new("v1-certs");
    std::fs::copy(fixture.join("state.db"), state.0.join("state.db")).unwrap();
    let expected: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&std::fs::read(fixture.join("expected.json")).unwrap()).unwrap();
    let version = |dir: &Path| -> i64 {
        rusqlite::Connection::open(dir.join("state.db"))
            .unwrap()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(version(&state.0), 1);

    // Twice: migrated on the first start, read as schema 2 on the second.
    for round in 0..2 {
        let emu = start(&state.0, &certs.0);
        for (path, want) in &expected {
            let (status, mut got) = emu.send(reqwest::Method::GET, path, None).await.unwrap();
            assert_eq!(status, 200, "{path} (round {round})");
            let mut want = want.clone();
            // Not kept on their own (0.2 neither): the live connection, and the last activity,
            // which is stored only along with a persisted change of its record.
            for doc in [&mut got, &mut want] {
                for volatile in [
                    "connectionState",
                    "connectionStateUpdatedTime",
                    "lastActivityTime",
                ] {
                    doc.as_object_mut().unwrap().remove(volatile);
                }
            }
            assert_eq!(got, want, "{path} (round {round})");
        }
        drop(emu);
        assert_eq!(version(&state.0), 2);
    }
    let twins: i64 = rusqlite::Connection::open(state.0.join("state.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM twins", [], |r| r.get(0))
        .unwrap();
    assert_eq!(twins, 4, "dev-1, dev-1/m1, dev-2 and myDevice");
}
