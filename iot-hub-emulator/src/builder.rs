//! Configuring and starting an emulator: [`Emulator::builder`], the listeners, and the
//! background tasks.

use crate::bootstrap::{self, HubConfig};
use crate::client_cert::DeviceCas;
use crate::endpoints::Endpoints;
use crate::error::EmulatorError;
use crate::hub::{FaultSettings, Hub, HubOptions};
use crate::running::RunningEmulator;
use crate::{amqp, http, limits, mqtt, tls};
use iot_common::Secret;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// Entry point: `Emulator::builder()…start().await`.
#[derive(Debug)]
pub struct Emulator;

impl Emulator {
    /// A builder with the library defaults: loopback, ephemeral ports (port 0), host name
    /// `localhost`, state in memory, the well-known development keys and device.
    pub fn builder() -> EmulatorBuilder {
        EmulatorBuilder::default()
    }
}

/// Configures and starts an emulator.
#[derive(Debug, Clone)]
pub struct EmulatorBuilder {
    bind: IpAddr,
    mqtt_port: u16,
    amqp_port: u16,
    https_port: u16,
    plain_mqtt_port: Option<u16>,
    host_name: String,
    state_dir: Option<PathBuf>,
    seed_file: Option<PathBuf>,
    cert_dir: Option<PathBuf>,
    policy_key: Option<Secret>,
    devices: Vec<(String, Option<Secret>)>,
    token_grace: Duration,
    id_scope: String,
    dps_retry_after: u64,
    telemetry_capacity: usize,
    telemetry_max_bytes: usize,
    event_retention_bytes: u64,
    consumer_groups: Vec<String>,
    http_idle_timeout: Duration,
    console: bool,
    faults: FaultSettings,
    device_cas: Vec<DeviceCa>,
}

/// A device CA as configured: its PEM, or a file to read at start.
#[derive(Debug, Clone)]
enum DeviceCa {
    Pem(String),
    File(PathBuf),
}

impl Default for EmulatorBuilder {
    fn default() -> Self {
        Self {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            mqtt_port: 0,
            amqp_port: 0,
            https_port: 0,
            plain_mqtt_port: None,
            host_name: "localhost".into(),
            state_dir: None,
            seed_file: None,
            cert_dir: None,
            policy_key: None,
            devices: Vec::new(),
            token_grace: Duration::ZERO,
            id_scope: crate::dev_keys::DEV_ID_SCOPE.into(),
            dps_retry_after: 1,
            telemetry_capacity: 10_000,
            telemetry_max_bytes: limits::TELEMETRY_MAX_BYTES,
            event_retention_bytes: limits::EVENT_RETENTION_BYTES,
            consumer_groups: Vec::new(),
            http_idle_timeout: limits::HTTP_IDLE_TIMEOUT,
            console: true,
            faults: FaultSettings::default(),
            device_cas: Vec::new(),
        }
    }
}

impl EmulatorBuilder {
    /// The address to listen on (default `127.0.0.1`). On a non-loopback address the
    /// well-known development keys are neither generated nor accepted.
    pub fn bind(mut self, addr: IpAddr) -> Self {
        self.bind = addr;
        self
    }

    /// MQTT over TLS port (0 picks a free one; the binary defaults to 8883).
    pub fn mqtt_port(mut self, port: u16) -> Self {
        self.mqtt_port = port;
        self
    }

    /// AMQP over TLS port (the service plane: CBS and cloud-to-device sends); 0 = any free port.
    pub fn amqp_port(mut self, port: u16) -> Self {
        self.amqp_port = port;
        self
    }

    /// HTTPS (REST and MQTT over WebSockets) port (0 picks a free one; the binary defaults
    /// to 8443).
    pub fn https_port(mut self, port: u16) -> Self {
        self.https_port = port;
        self
    }

    /// Also listen for MQTT without TLS on this port (0 picks a free one). Off by default.
    pub fn plain_mqtt_port(mut self, port: u16) -> Self {
        self.plain_mqtt_port = Some(port);
        self
    }

    /// The hub's host name (default `localhost`): what clients put in `HostName`, SAS
    /// resources and MQTT usernames.
    pub fn host_name(mut self, name: impl Into<String>) -> Self {
        self.host_name = name.into();
        self
    }

    /// Keep identities, policies, twins and persistent MQTT sessions in `DIR/state.db`
    /// (SQLite, created 0600 in a 0700 directory). Every change is committed before it is
    /// acknowledged. A `registry.json` from an earlier version is migrated on first start and
    /// then ignored; a corrupt or newer state refuses to start and is left as it is.
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// Pre-register devices from a JSON seed file (see the crate README for the format).
    pub fn seed_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.seed_file = Some(path.into());
        self
    }

    /// Load `ca.pem`, `server.pem`, `server-key.pem` from `DIR`, or generate and write them
    /// there on first start.
    pub fn cert_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cert_dir = Some(dir.into());
        self
    }

    /// The key of every default shared access policy, instead of the well-known one.
    pub fn policy_key(mut self, key: Secret) -> Self {
        self.policy_key = Some(key);
        self
    }

    /// Pre-register a device; with `None` a key is generated.
    pub fn device(mut self, id: impl Into<String>, key: Option<Secret>) -> Self {
        self.devices.push((id.into(), key));
        self
    }

    /// Trust a device CA (PEM, one or more certificates): a device registered with
    /// `authentication.type` `certificateAuthority` connects with a certificate chain that
    /// reaches one of these CAs and whose leaf's subject CN is its device id. CAs come from
    /// configuration at each start (this, [`EmulatorBuilder::device_ca_file`], the seed
    /// file's `deviceCAs`) and are not stored in `--state`.
    ///
    /// ```no_run
    /// # async fn f(ca_pem: String) -> Result<(), iot_hub_emulator::EmulatorError> {
    /// let emu = iot_hub_emulator::Emulator::builder().device_ca_pem(ca_pem).start().await?;
    /// # drop(emu); Ok(()) }
    /// ```
    pub fn device_ca_pem(mut self, pem: impl Into<String>) -> Self {
        self.device_cas.push(DeviceCa::Pem(pem.into()));
        self
    }

    /// Trust the device CA(s) in a PEM file, read at start (see
    /// [`EmulatorBuilder::device_ca_pem`]).
    pub fn device_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.device_cas.push(DeviceCa::File(path.into()));
        self
    }

    /// The ID scope of the emulator's Device Provisioning Service (default
    /// [`DEV_ID_SCOPE`](crate::dev_keys::DEV_ID_SCOPE)). Devices register under it on the
    /// emulator's own MQTT and HTTPS ports and are assigned to this hub.
    pub fn id_scope(mut self, scope: impl Into<String>) -> Self {
        self.id_scope = scope.into();
        self
    }

    /// The `retry-after` DPS sends with its first `assigning` answer (default 1 s). Tests of
    /// clients that honour it can set 0; the official Python SDK waits 2 s whatever it says.
    pub fn dps_retry_after(mut self, retry_after: Duration) -> Self {
        self.dps_retry_after = retry_after.as_secs();
        self
    }

    /// How long a connection may outlive its token's expiry (default 0).
    pub fn token_grace(mut self, grace: Duration) -> Self {
        self.token_grace = grace;
        self
    }

    /// Serve the web console at `/` on the HTTPS port (default on). On a loopback address it
    /// opens without a login; on any other it asks for the `iothubowner` key.
    pub fn console(mut self, enabled: bool) -> Self {
        self.console = enabled;
        self
    }

    /// Faults armed from the start (see [`FaultSettings`]).
    pub fn faults(mut self, settings: FaultSettings) -> Self {
        self.faults = settings;
        self
    }

    /// How many bytes of telemetry (bodies and properties) are kept, oldest dropped first
    /// (default 64 MiB). Bounds the buffer together with [`EmulatorBuilder::telemetry_capacity`].
    pub fn telemetry_max_bytes(mut self, bytes: usize) -> Self {
        self.telemetry_max_bytes = bytes.max(1);
        self
    }

    /// How long an HTTPS connection may sit without sending a complete request head, idle
    /// between requests or part-way through one, before the emulator closes it (default 60 s).
    /// A request being served (a method call waiting for its device) does not count as idle.
    pub fn http_idle_timeout(mut self, timeout: Duration) -> Self {
        self.http_idle_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How many bytes of events each partition of the Event Hub-compatible endpoint keeps
    /// (default 64 MiB): the oldest are dropped first and the partition's begin sequence
    /// number advances; the newest event is always kept.
    pub fn event_retention_bytes(mut self, bytes: u64) -> Self {
        self.event_retention_bytes = bytes.max(1);
        self
    }

    /// Declares a consumer group of the Event Hub-compatible endpoint besides `$Default`
    /// (repeatable). Receivers of an undeclared group are refused with `amqp:not-found`.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), iot_hub_emulator::EmulatorError> {
    /// let emu = iot_hub_emulator::Emulator::builder()
    ///     .consumer_group("dashboard")
    ///     .start()
    ///     .await?;
    /// println!("{}", emu.event_hub_connection_string());
    /// # Ok(()) }
    /// ```
    pub fn consumer_group(mut self, name: impl Into<String>) -> Self {
        self.consumer_groups.push(name.into());
        self
    }

    /// How many telemetry messages are kept (oldest dropped first; default 10 000).
    pub fn telemetry_capacity(mut self, n: usize) -> Self {
        self.telemetry_capacity = n.max(1);
        self
    }

    /// Binds the listeners and starts serving.
    ///
    /// # Errors
    /// Bind failures, unreadable state/seed/certificate files, or an invalid configuration.
    pub async fn start(self) -> Result<RunningEmulator, EmulatorError> {
        let loopback = self.bind.is_loopback();
        let device_cas = Arc::new(self.load_device_cas()?);
        if device_cas.len() > 0 {
            tracing::info!(count = device_cas.len(), "device CAs trusted");
        }
        let hub = bootstrap::start_hub(&HubConfig {
            options: HubOptions {
                host_name: self.host_name.clone(),
                token_grace: self.token_grace,
                telemetry_capacity: self.telemetry_capacity,
                telemetry_max_bytes: self.telemetry_max_bytes,
                event_retention_bytes: self.event_retention_bytes,
                consumer_groups: self.consumer_groups.clone(),
                refuse_well_known: !loopback,
                id_scope: self.id_scope.clone(),
                dps_retry_after: self.dps_retry_after,
                device_cas,
            },
            state_dir: self.state_dir.clone(),
            seed_file: self.seed_file.clone(),
            policy_key: self.policy_key.clone(),
            devices: self.devices.clone(),
            faults: self.faults.clone(),
        })?;
        let tls = tls::load_or_generate(
            self.cert_dir.as_deref(),
            std::slice::from_ref(&self.host_name),
        )?;
        let mqtt_tls = TlsAcceptor::from(tls::server_config(&tls, &[b"mqtt"], true)?);
        let https_tls = TlsAcceptor::from(tls::server_config(&tls, &[b"http/1.1"], true)?);
        let amqp_tls = TlsAcceptor::from(tls::server_config(&tls, &[], false)?);
        let mqtt_listener = bind(self.bind, self.mqtt_port, "MQTT over TLS", "--mqtt-port").await?;
        let https_listener = bind(self.bind, self.https_port, "HTTPS", "--https-port").await?;
        let amqp_listener = bind(self.bind, self.amqp_port, "AMQP over TLS", "--amqp-port").await?;
        let plain_listener = match self.plain_mqtt_port {
            Some(p) => Some(bind(self.bind, p, "plain MQTT", "--plain-mqtt-port").await?),
            None => None,
        };
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let mqtt_addr = mqtt_listener.local_addr()?;
        let https_addr = https_listener.local_addr()?;
        let amqp_addr = amqp_listener.local_addr()?;
        let plain_mqtt_addr = plain_listener
            .as_ref()
            .map(TcpListener::local_addr)
            .transpose()?;
        let mut tasks = vec![
            tokio::spawn(mqtt::accept_loop(
                hub.clone(),
                mqtt_listener,
                Some(mqtt_tls),
                shutdown_rx.clone(),
            )),
            tokio::spawn(amqp::accept_loop(
                hub.clone(),
                amqp_listener,
                amqp_tls,
                shutdown_rx.clone(),
            )),
            tokio::spawn(http::accept_loop(
                https_listener,
                https_tls,
                self.http_idle_timeout,
                bootstrap::app_state(
                    hub.clone(),
                    shutdown_rx.clone(),
                    self.console.then(|| {
                        Arc::new(http::console::Console::new(self.bind, mqtt_addr.port()))
                    }),
                    amqp_addr.port(),
                ),
            )),
            tokio::spawn(crate::hub::jobs::scheduler(
                hub.clone(),
                shutdown_rx.clone(),
            )),
            tokio::spawn(drop_all_loop(hub.clone(), shutdown_rx.clone())),
            tokio::spawn(expiry_loop(hub.clone(), shutdown_rx.clone())),
        ];
        if let Some(l) = plain_listener {
            tasks.push(tokio::spawn(mqtt::accept_loop(
                hub.clone(),
                l,
                None,
                shutdown_rx.clone(),
            )));
        }
        Ok(RunningEmulator {
            hub,
            endpoints: Endpoints {
                mqtt: mqtt_addr,
                https: https_addr,
                amqp: amqp_addr,
                plain_mqtt: plain_mqtt_addr,
            },
            ca_pem: tls.ca_pem,
            ca_path: tls.ca_path,
            shutdown: shutdown_tx,
            tasks,
        })
    }
}

impl EmulatorBuilder {
    /// The builder's device CAs, then the seed file's.
    fn load_device_cas(&self) -> Result<DeviceCas, EmulatorError> {
        let mut pems = Vec::new();
        for (i, ca) in self.device_cas.iter().enumerate() {
            pems.push(match ca {
                DeviceCa::Pem(pem) => (format!("#{}", i + 1), pem.clone()),
                DeviceCa::File(path) => (
                    path.display().to_string(),
                    std::fs::read_to_string(path).map_err(|e| {
                        EmulatorError::Config(format!("device CA {}: {e}", path.display()))
                    })?,
                ),
            });
        }
        if let Some(seed) = &self.seed_file {
            pems.extend(crate::seed::device_cas(seed)?);
        }
        DeviceCas::from_pems(&pems)
    }
}

async fn bind(
    ip: IpAddr,
    port: u16,
    what: &'static str,
    flag: &'static str,
) -> Result<TcpListener, EmulatorError> {
    let addr = SocketAddr::new(ip, port);
    TcpListener::bind(addr)
        .await
        .map_err(|source| EmulatorError::Bind {
            what,
            addr,
            flag,
            source,
        })
}

/// Expires cloud-to-device messages whose lifetime has passed, by the hub's clock.
async fn expiry_loop(hub: Arc<Hub>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(crate::limits::C2D_EXPIRY_SWEEP) => {}
            _ = shutdown.changed() => return,
        }
        hub.expire_c2d();
    }
}

/// Fires the "drop all connections every N seconds" fault while it is armed.
async fn drop_all_loop(hub: Arc<Hub>, mut shutdown: watch::Receiver<bool>) {
    let mut last = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = shutdown.changed() => return,
        }
        match hub.faults.drop_all_every() {
            Some(every) if last.elapsed() >= every => {
                last = tokio::time::Instant::now();
                let n = hub.disconnect_all();
                hub.faults.count();
                tracing::info!(dropped = n, "fault: dropped all connections");
            }
            Some(_) => {}
            None => last = tokio::time::Instant::now(),
        }
    }
}
