//! The emulator binary as a child process, so that its memory is measured apart from the
//! clients'.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running emulator process.
#[derive(Debug)]
pub struct EmulatorProcess {
    child: Child,
    /// Its `export` lines: `IOTHUB_CONNECTION_STRING`, `IOTHUB_CA_CERT`, …
    pub env: HashMap<String, String>,
    /// Its MQTT port.
    pub mqtt_port: u16,
    /// Its HTTPS port.
    pub https_port: u16,
    /// The AMQP port (cloud-to-device sends and feedback).
    pub amqp_port: u16,
    dir: PathBuf,
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The release emulator binary of this workspace, always brought up to date first (a stale
/// binary would measure old code; cargo makes this a no-op when nothing changed), or the
/// binary `IOT_BENCH_EMULATOR` names (to compare an emulator built from another commit with
/// the same benchmark code).
pub fn emulator_binary() -> std::io::Result<PathBuf> {
    if let Some(path) = std::env::var_os("IOT_BENCH_EMULATOR") {
        return Ok(PathBuf::from(path));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let status = std::process::Command::new("cargo")
        .args(["build", "--release", "--quiet", "-p", "iot-hub-emulator"])
        .current_dir(&root)
        .status()?;
    if !status.success() {
        return Err(std::io::Error::other("cargo build of the emulator failed"));
    }
    Ok(root.join("target/release/iot-hub-emulator"))
}

impl EmulatorProcess {
    /// Starts the emulator with `seed` devices; `mqtt_port` 0 picks a free port.
    pub async fn spawn(seed: &serde_json::Value, mqtt_port: u16) -> std::io::Result<Self> {
        Self::spawn_with(Some(seed), mqtt_port, None).await
    }

    /// Starts the emulator, optionally with `seed` devices and a `--state` directory.
    pub async fn spawn_with(
        seed: Option<&serde_json::Value>,
        mqtt_port: u16,
        state: Option<&Path>,
    ) -> std::io::Result<Self> {
        let dir =
            std::env::temp_dir().join(format!("iot-bench-{}-{}", std::process::id(), free_port()?));
        std::fs::create_dir_all(&dir)?;
        let seed_file = dir.join("seed.json");
        if let Some(seed) = seed {
            std::fs::write(&seed_file, serde_json::to_vec(seed)?)?;
        }
        let mqtt_port = if mqtt_port == 0 {
            free_port()?
        } else {
            mqtt_port
        };
        let https_port = free_port()?;
        let amqp_port = free_port()?;
        let mut cmd = Command::new(emulator_binary()?);
        cmd.args([
            "--mqtt-port",
            &mqtt_port.to_string(),
            "--https-port",
            &https_port.to_string(),
            "--amqp-port",
            &amqp_port.to_string(),
        ])
        .arg("--cert-dir")
        .arg(dir.join("certs"));
        if seed.is_some() {
            cmd.arg("--seed").arg(&seed_file);
        }
        if let Some(state) = state {
            cmd.arg("--state").arg(state);
        }
        let mut child = cmd
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let mut env = HashMap::new();
        while let Some(line) = lines.next_line().await? {
            if let Some(rest) = line.strip_prefix("export ")
                && let Some((k, v)) = rest.split_once('=')
            {
                env.insert(k.to_owned(), v.trim_matches('"').to_owned());
                if k == "IOTHUB_CA_CERT" {
                    break;
                }
            }
        }
        if !env.contains_key("IOTHUB_CA_CERT") {
            return Err(std::io::Error::other("the emulator did not start"));
        }
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            child,
            env,
            mqtt_port,
            https_port,
            amqp_port,
            dir,
        })
    }

    /// The child's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// A device connection string for `device_id` with `key`, reaching this emulator.
    pub fn device_connection_string(&self, device_id: &str, key: &str) -> String {
        let mut cs = format!("HostName=localhost;DeviceId={device_id};SharedAccessKey={key}");
        if self.mqtt_port != 8883 {
            cs.push_str(&format!(";GatewayHostName=localhost:{}", self.mqtt_port));
        }
        cs
    }
}

impl Drop for EmulatorProcess {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
