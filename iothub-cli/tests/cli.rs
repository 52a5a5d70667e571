//! The `iothub` binary against the in-process emulator (port 0, loopback): every subcommand,
//! with `--json` output for the assertions, and the errors scripts depend on (exit codes and
//! one-line messages).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use iot_common::SasToken;
use iot_device::{DeviceClient, DeviceClientOptions, Message};
use iot_hub_emulator::{Emulator, RunningEmulator, dev_keys};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Every CLI run must end within this; the commands under test take well under a second.
const RUN_BOUND: Duration = Duration::from_secs(90);

struct Hub {
    hub: RunningEmulator,
    ca: PathBuf,
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("stdout is not JSON ({e}): {}\n{}", self.stdout, self.stderr)
        })
    }

    fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    /// Asserts a failure with `code` and exactly one line on stderr.
    fn fails(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        assert_eq!(self.stderr.lines().count(), 1, "stderr: {}", self.stderr);
        assert!(
            self.stderr.starts_with("error: "),
            "stderr: {}",
            self.stderr
        );
        self
    }
}

async fn start() -> Hub {
    static N: AtomicU32 = AtomicU32::new(0);
    let hub = Emulator::builder().start().await.unwrap();
    let ca = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "iothub-cli-ca-{}-{}.pem",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&ca, hub.ca_pem()).unwrap();
    Hub { hub, ca }
}

impl Hub {
    async fn run(&self, args: &[&str]) -> Run {
        self.run_with(&self.hub.service_connection_string(), args)
            .await
    }

    async fn run_with(&self, connection_string: &str, args: &[&str]) -> Run {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_iothub"));
        cmd.args(args)
            .env("IOTHUB_CONNECTION_STRING", connection_string)
            .env("IOTHUB_CA_CERT", &self.ca)
            .env("NO_COLOR", "1")
            .kill_on_drop(true);
        let out = tokio::time::timeout(RUN_BOUND, cmd.output())
            .await
            .unwrap_or_else(|_| panic!("iothub {args:?} did not end within {RUN_BOUND:?}"))
            .unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    async fn device(&self, cs: &str) -> DeviceClient {
        let options = DeviceClientOptions::new()
            .trust_ca_pem(self.hub.ca_pem())
            .unwrap();
        tokio::time::timeout(
            Duration::from_secs(30),
            DeviceClient::from_connection_string(cs, options),
        )
        .await
        .unwrap()
        .unwrap()
    }

    async fn my_device(&self) -> DeviceClient {
        let cs = self
            .hub
            .device_connection_string(dev_keys::DEV_DEVICE_ID)
            .unwrap();
        self.device(&cs).await
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.ca);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn device_create_show_list_connection_string_and_delete() {
    let h = start().await;
    let created = h
        .run(&["--json", "device", "create", "cli-dev"])
        .await
        .ok()
        .json();
    assert_eq!(created["deviceId"], "cli-dev");
    assert_eq!(
        created["authentication"]["symmetricKey"]["primaryKey"],
        "<redacted>"
    );

    let shown = h
        .run(&["--json", "device", "show", "cli-dev"])
        .await
        .ok()
        .json();
    assert_eq!(shown["deviceId"], "cli-dev");
    assert_eq!(shown["connectionState"], "Disconnected");

    let listed = h.run(&["--json", "device", "list"]).await.ok().json();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["deviceId"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"cli-dev") && ids.contains(&"myDevice"),
        "{ids:?}"
    );

    // The printed connection string is a working one: a device connects with it.
    // The in-process emulator's MQTT port is not 8883: pass where devices dial.
    let own = h.hub.device_connection_string("myDevice").unwrap();
    let gateway = own.split("GatewayHostName=").nth(1).unwrap();
    let cs = h
        .run(&[
            "device",
            "connection-string",
            "cli-dev",
            "--gateway-host-name",
            gateway,
        ])
        .await
        .ok();
    let cs = cs.stdout.trim();
    assert!(cs.contains("DeviceId=cli-dev;SharedAccessKey="), "{cs}");
    let device = h.device(cs).await;
    let listed = h
        .run(&["--json", "device", "show", "cli-dev"])
        .await
        .ok()
        .json();
    assert_eq!(listed["connectionState"], "Connected");
    device.close().await.unwrap();

    // The table (no --json) names the device too.
    let table = h.run(&["device", "list"]).await.ok();
    assert!(table.stdout.contains("cli-dev"), "{}", table.stdout);

    let deleted = h
        .run(&["--json", "device", "delete", "cli-dev"])
        .await
        .ok()
        .json();
    assert_eq!(deleted, json!({"deleted": "cli-dev"}));
    h.run(&["device", "show", "cli-dev"]).await.fails(1);
}

#[tokio::test(flavor = "multi_thread")]
async fn device_create_with_given_keys_and_a_duplicate_conflicts() {
    let h = start().await;
    let key = dev_keys::DEV_DEVICE_SECONDARY_KEY;
    h.run(&[
        "device",
        "create",
        "keyed",
        "--primary-key",
        key,
        "--secondary-key",
        key,
    ])
    .await
    .ok();
    let cs = h
        .run(&[
            "--json",
            "device",
            "connection-string",
            "keyed",
            "--secondary",
        ])
        .await
        .ok();
    assert!(
        cs.json()["connectionString"]
            .as_str()
            .unwrap()
            .ends_with(key),
        "{}",
        cs.stdout
    );
    let dup = h.run(&["device", "create", "keyed"]).await.fails(1);
    assert!(dup.stderr.contains("409"), "{}", dup.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_create_makes_numbered_devices_and_reports_the_ones_that_fail() {
    let h = start().await;
    let made = h
        .run(&[
            "--json", "device", "create", "--count", "12", "--prefix", "bulk-",
        ])
        .await
        .ok();
    let made_json = made.json();
    let expected: Vec<String> = (1..=12).map(|n| format!("bulk-{n:02}")).collect();
    assert_eq!(made_json["created"], json!(expected));
    assert_eq!(made_json["failed"], json!([]));
    // Not a terminal: no progress bar, nothing on stderr.
    assert!(made.stderr.is_empty(), "{}", made.stderr);
    for id in &expected {
        assert!(h.hub.device_connection_string(id).is_some(), "{id}");
    }

    // Again with one more: the twelve exist (409 each, reported), the thirteenth is made,
    // and the exit code says that something failed.
    let again = h
        .run(&["device", "create", "--count", "13", "--prefix", "bulk-"])
        .await;
    assert_eq!(again.code, 1, "{}", again.stderr);
    // One line per failed device, then the usual one-line error (the first failure's).
    let lines: Vec<&str> = again.stderr.lines().collect();
    assert_eq!(lines.len(), 13, "{}", again.stderr);
    assert!(lines[12].starts_with("error: "), "{}", again.stderr);
    assert!(
        again
            .stdout
            .contains("created 1 device, bulk-13; 12 failed"),
        "{}",
        again.stdout
    );
    assert!(
        again.stderr.contains("bulk-01: ") && again.stderr.contains("409"),
        "{}",
        again.stderr
    );
    assert!(!again.stderr.contains('\x1b'), "no escapes off a terminal");
    assert!(h.hub.device_connection_string("bulk-13").is_some());

    // A device id and --count together, --count without --prefix, or a count of 0: clap's
    // usage error, exit code 2.
    for args in [
        &["device", "create", "one", "--count", "2", "--prefix", "p"][..],
        &["device", "create", "--count", "2"][..],
        &["device", "create", "--count", "0", "--prefix", "p"][..],
    ] {
        let r = h.run(args).await;
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.starts_with("error: "), "{}", r.stderr);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_device_is_a_one_line_error_with_exit_code_1() {
    let h = start().await;
    for args in [
        &["device", "show", "nobody"][..],
        &["twin", "show", "nobody"],
        &["method", "invoke", "nobody", "reboot"],
        &["c2d", "send", "nobody", "hi"],
    ] {
        let r = h.run(args).await.fails(1);
        assert!(r.stderr.contains("404"), "{args:?}: {}", r.stderr);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_key_exits_1_with_401_and_a_hint_and_never_prints_the_key() {
    let h = start().await;
    let wrong_key = "d3Jvbmcga2V5IHdyb25nIGtleSB3cm9uZyBrZXkhIQ==";
    let cs = h
        .hub
        .service_connection_string()
        .replace(dev_keys::DEV_POLICY_PRIMARY_KEY, wrong_key);
    assert!(cs.contains(wrong_key));
    for args in [&["device", "list"][..], &["monitor", "--count", "1"]] {
        let r = h.run_with(&cs, args).await.fails(1);
        assert!(r.stderr.contains("401"), "{}", r.stderr);
        assert!(!r.stderr.contains(wrong_key) && !r.stdout.contains(wrong_key));
    }
    let r = h.run_with(&cs, &["device", "list"]).await;
    assert!(r.stderr.contains("Hint:"), "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_and_connection_errors_have_their_exit_codes() {
    let h = start().await;
    // No connection string.
    let r = h.run_with("", &["device", "list"]).await.fails(2);
    assert!(
        r.stderr.contains("IOTHUB_CONNECTION_STRING"),
        "{}",
        r.stderr
    );
    // A malformed one names the field, not the key.
    let r = h
        .run_with("HostName=x;SharedAccessKeyName=p", &["device", "list"])
        .await
        .fails(2);
    assert!(r.stderr.contains("SharedAccessKey"), "{}", r.stderr);
    // Bad JSON and bad flags.
    h.run(&["twin", "update", "myDevice", "{nope"])
        .await
        .fails(2);
    let r = h.run(&["device", "list", "--top", "0"]).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    // Nothing listens on port 1: exit 3 with the address.
    let cs = format!(
        "HostName=127.0.0.1:1;SharedAccessKeyName=iothubowner;SharedAccessKey={}",
        dev_keys::DEV_POLICY_PRIMARY_KEY
    );
    let r = h.run_with(&cs, &["device", "list"]).await.fails(3);
    assert!(r.stderr.contains("127.0.0.1:1"), "{}", r.stderr);
    let r = h
        .run_with(&cs, &["c2d", "send", "myDevice", "x"])
        .await
        .fails(3);
    assert!(r.stderr.contains("127.0.0.1:1"), "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn twin_show_update_replace_with_etags() {
    let h = start().await;
    let twin = h
        .run(&["--json", "twin", "show", "myDevice"])
        .await
        .ok()
        .json();
    assert_eq!(twin["deviceId"], "myDevice");
    let etag = twin["etag"].as_str().unwrap().to_owned();

    let patch = r#"{"tags":{"site":"lab"},"properties":{"desired":{"interval":5}}}"#;
    let updated = h
        .run(&[
            "--json", "twin", "update", "myDevice", patch, "--etag", &etag,
        ])
        .await
        .ok()
        .json();
    assert_eq!(updated["tags"]["site"], "lab");
    assert_eq!(updated["properties"]["desired"]["interval"], 5);

    // The old etag is stale now: 412, exit 1.
    let r = h
        .run(&[
            "twin",
            "update",
            "myDevice",
            r#"{"tags":{"x":1}}"#,
            "--etag",
            &etag,
        ])
        .await
        .fails(1);
    assert!(r.stderr.contains("412"), "{}", r.stderr);

    // Replace from a file drops the tag and the desired property not in it.
    let file = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("iothub-cli-twin-{}.json", std::process::id()));
    std::fs::write(
        &file,
        r#"{"tags":{"floor":2},"properties":{"desired":{"mode":"eco"}}}"#,
    )
    .unwrap();
    let replaced = h
        .run(&[
            "--json",
            "twin",
            "replace",
            "myDevice",
            &format!("@{}", file.display()),
        ])
        .await
        .ok()
        .json();
    std::fs::remove_file(&file).unwrap();
    assert_eq!(replaced["tags"], json!({"floor": 2}));
    assert_eq!(replaced["properties"]["desired"]["mode"], "eco");
    assert!(replaced["properties"]["desired"].get("interval").is_none());

    // The table view shows the sections.
    let table = h.run(&["twin", "show", "myDevice"]).await.ok();
    assert!(table.stdout.contains("eco") && table.stdout.contains("desired"));
    // A reported property cannot be written by the service: usage error.
    h.run(&[
        "twin",
        "update",
        "myDevice",
        r#"{"properties":{"reported":{"a":1}}}"#,
    ])
    .await
    .fails(2);
}

#[tokio::test(flavor = "multi_thread")]
async fn method_invoke_returns_the_device_answer() {
    let h = start().await;
    let device = h.my_device().await;
    device
        .on_method("echo", |payload: Value| async move {
            Ok::<_, iot_device::MethodError>(json!({ "echo": payload }))
        })
        .await
        .unwrap();
    let r = h
        .run(&[
            "--json",
            "method",
            "invoke",
            "myDevice",
            "echo",
            "--payload",
            r#"{"n":7}"#,
        ])
        .await
        .ok()
        .json();
    assert_eq!(r, json!({"status": 200, "payload": {"echo": {"n": 7}}}));
    device.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn method_on_an_offline_device_exits_1_with_404103() {
    let h = start().await;
    let r = h
        .run(&["method", "invoke", "myDevice", "reboot"])
        .await
        .fails(1);
    assert!(r.stderr.contains("404103"), "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn c2d_send_reaches_the_device() {
    let h = start().await;
    let device = h.my_device().await;
    let mut messages = device.c2d_messages().await.unwrap();
    let r = h
        .run(&[
            "--json",
            "c2d",
            "send",
            "myDevice",
            "hello device",
            "--message-id",
            "m-1",
            "--property",
            "kind=greeting",
        ])
        .await
        .ok()
        .json();
    assert_eq!(r["messageId"], "m-1");
    let msg = tokio::time::timeout(Duration::from_secs(30), messages.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&msg.body[..], b"hello device");
    assert_eq!(msg.properties.message_id.as_deref(), Some("m-1"));
    assert!(
        msg.properties
            .custom
            .iter()
            .any(|(k, v)| k == "kind" && v == "greeting"),
        "{:?}",
        msg.properties.custom
    );
    device.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn query_pages_and_stops_at_top() {
    let h = start().await;
    for i in 0..5 {
        h.hub.hub().create_device(&format!("q{i}")).unwrap();
    }
    let all = h
        .run(&[
            "--json",
            "query",
            "SELECT * FROM devices",
            "--page-size",
            "2",
        ])
        .await
        .ok()
        .json();
    // Five created plus the seeded myDevice, over three or more pages of two.
    assert_eq!(all.as_array().unwrap().len(), 6, "{all}");
    let top = h
        .run(&[
            "--json",
            "query",
            "SELECT * FROM devices",
            "--page-size",
            "2",
            "--top",
            "3",
        ])
        .await
        .ok()
        .json();
    assert_eq!(top.as_array().unwrap().len(), 3);
    let projection = h
        .run(&[
            "query",
            "SELECT deviceId FROM devices WHERE deviceId = 'q3'",
        ])
        .await
        .ok();
    assert!(projection.stdout.contains("q3"), "{}", projection.stdout);
    let r = h.run(&["query", "SELEKT nonsense"]).await.fails(1);
    assert!(r.stderr.contains("400"), "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_schedule_wait_show_list_and_cancel() {
    let h = start().await;
    let done = h
        .run(&[
            "--json",
            "job",
            "schedule",
            "tag-job",
            "--condition",
            "deviceId IN ['myDevice']",
            "--twin-patch",
            r#"{"tags":{"batch":"b1"}}"#,
            "--wait",
            "--wait-timeout",
            "60",
        ])
        .await
        .ok()
        .json();
    assert_eq!(done["status"], "completed", "{done}");
    let twin = h
        .run(&["--json", "twin", "show", "myDevice"])
        .await
        .ok()
        .json();
    assert_eq!(twin["tags"]["batch"], "b1");

    let shown = h
        .run(&["--json", "job", "show", "tag-job"])
        .await
        .ok()
        .json();
    assert_eq!(shown["jobId"], "tag-job");

    // A job an hour away can be cancelled.
    let later = h
        .run(&[
            "--json",
            "job",
            "schedule",
            "later",
            "--condition",
            "deviceId = 'myDevice'",
            "--method",
            "reboot",
            "--start-in",
            "3600",
        ])
        .await
        .ok()
        .json();
    assert_eq!(later["jobId"], "later");
    let cancelled = h
        .run(&["--json", "job", "cancel", "later"])
        .await
        .ok()
        .json();
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");

    let listed = h.run(&["--json", "job", "list"]).await.ok().json();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["jobId"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"tag-job") && ids.contains(&"later"),
        "{ids:?}"
    );
    h.run(&["job", "show", "no-such-job"]).await.fails(1);
}

#[tokio::test(flavor = "multi_thread")]
async fn monitor_prints_buffered_and_new_telemetry() {
    let h = start().await;
    let device = h.my_device().await;
    device.send_telemetry(Message::new("old-1")).await.unwrap();
    device.send_telemetry(Message::new("old-2")).await.unwrap();

    let r = h
        .run(&[
            "--json",
            "monitor",
            "--from-start",
            "--count",
            "2",
            "--timeout",
            "30",
        ])
        .await
        .ok();
    let bodies: Vec<String> = r
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["body"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(bodies, ["old-1", "old-2"]);

    // Without --from-start only messages sent after the start are printed: keep sending
    // until the monitor has one (bounded by its own --timeout).
    let cs = h.hub.service_connection_string();
    let ca = h.ca.clone();
    let monitor = tokio::spawn(async move {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_iothub"))
            .args([
                "--json",
                "monitor",
                "--device",
                "myDevice",
                "--count",
                "1",
                "--timeout",
                "30",
            ])
            .env("IOTHUB_CONNECTION_STRING", cs)
            .env("IOTHUB_CA_CERT", ca)
            .kill_on_drop(true)
            .output()
            .await
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    });
    for _ in 0..300 {
        if monitor.is_finished() {
            break;
        }
        device.send_telemetry(Message::new("new")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, stdout) = tokio::time::timeout(RUN_BOUND, monitor)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(code, Some(0), "{stdout}");
    let line: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(line["body"], "new");
    assert_eq!(line["deviceId"], "myDevice");

    // Asking for more than arrives within --timeout is a timeout: exit 3.
    let r = h
        .run(&[
            "monitor",
            "--device",
            "nobody",
            "--count",
            "1",
            "--timeout",
            "1",
        ])
        .await
        .fails(3);
    assert!(r.stderr.contains("0 of 1"), "{}", r.stderr);
    device.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn sas_tokens_for_the_policy_and_a_device_verify() {
    let h = start().await;
    let r = h
        .run(&["--json", "sas-token", "--ttl", "600"])
        .await
        .ok()
        .json();
    let token = SasToken::parse(r["token"].as_str().unwrap()).unwrap();
    assert_eq!(token.key_name(), Some("iothubowner"));
    token
        .verify(&dev_keys::DEV_POLICY_PRIMARY_KEY.into())
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!((now + 590..=now + 610).contains(&token.expires_at()));

    let plain = h
        .run(&["sas-token", "--device", "myDevice", "--ttl", "60"])
        .await
        .ok();
    let token = SasToken::parse(plain.stdout.trim()).unwrap();
    assert_eq!(token.key_name(), None);
    assert!(token.raw_resource().contains("myDevice"));
    token
        .verify(&dev_keys::DEV_DEVICE_PRIMARY_KEY.into())
        .unwrap();
    h.run(&["sas-token", "--device", "nobody"]).await.fails(1);
}

#[tokio::test(flavor = "multi_thread")]
async fn completions_are_printed_for_each_shell() {
    let h = start().await;
    for shell in ["bash", "zsh", "fish"] {
        let r = h.run(&["completions", shell]).await.ok();
        assert!(
            r.stdout.contains("iothub") && r.stdout.contains("sas-token"),
            "{shell}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_colour_or_spinner_escapes_when_output_is_not_a_terminal() {
    let h = start().await;
    for args in [
        &["device", "list"][..],
        &["query", "SELECT * FROM devices"],
        &["device", "show", "nobody"],
    ] {
        let out = tokio::time::timeout(
            RUN_BOUND,
            tokio::process::Command::new(env!("CARGO_BIN_EXE_iothub"))
                .args(args)
                .env(
                    "IOTHUB_CONNECTION_STRING",
                    h.hub.service_connection_string(),
                )
                .env("IOTHUB_CA_CERT", &h.ca)
                .env_remove("NO_COLOR")
                .kill_on_drop(true)
                .output(),
        )
        .await
        .unwrap()
        .unwrap();
        assert!(!out.stdout.contains(&0x1b), "{args:?}");
        assert!(!out.stderr.contains(&0x1b), "{args:?}");
        assert!(!out.stdout.is_empty() || !out.stderr.is_empty(), "{args:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn monitor_stops_cleanly_on_ctrl_c() {
    use tokio::io::AsyncBufReadExt;
    let h = start().await;
    let device = h.my_device().await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_iothub"))
        .args(["--json", "monitor", "--device", "myDevice"])
        .env(
            "IOTHUB_CONNECTION_STRING",
            h.hub.service_connection_string(),
        )
        .env("IOTHUB_CA_CERT", &h.ca)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    // Once it has printed a message its Ctrl-C handler is installed (it is polled with every
    // page request), so the SIGINT below cannot hit the default handler.
    let first = tokio::time::timeout(RUN_BOUND, async {
        loop {
            device.send_telemetry(Message::new("tick")).await.unwrap();
            tokio::select! {
                l = lines.next_line() => break l.unwrap().unwrap(),
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&first).unwrap()["body"],
        "tick"
    );
    let pid = child.id().unwrap().to_string();
    // The shell's builtin kill: no dependency on a procps binary.
    let killed = std::process::Command::new("sh")
        .args(["-c", "kill -INT \"$1\"", "sh", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(RUN_BOUND, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
    device.close().await.unwrap();
}
