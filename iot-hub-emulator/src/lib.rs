#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, rust_2018_idioms)]

mod auth;
pub mod dev_keys;
#[allow(dead_code)]
// Front ends (MQTT, HTTPS device and service APIs) arrive with the hub split (issue 13).
mod dps;
mod error;
mod faults;
mod http;
mod hub;
mod identities;
mod jobs;
mod limits;
mod methods;
mod mqtt;
mod query;
mod query_api;
mod registry;
mod seed;
mod store;
mod telemetry;
mod tls;
mod twin_state;
mod twins;

#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;

pub use error::{EmulatorError, HubApiError};
pub use faults::FaultSettings;
pub use registry::Rights;
pub use telemetry::TelemetryRecord;

use hub::{Hub, HubOptions, lock};
use iot_common::registry::{AuthenticationMechanism, Device, SymmetricKey};
use iot_common::{CloudToDeviceMethod, CloudToDeviceMethodResult, Secret, Twin};
use registry::{Policy, Registry, default_policies, generate_key};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// Runs an IoT Hub query over JSON documents (service-side twins, or device-job rows for
/// `FROM devices.jobs`), exactly as `POST /devices/query` does before paging: the emulator's
/// query engine, for tools and benchmarks.
///
/// ```
/// let twins = vec![serde_json::json!({"deviceId": "a", "tags": {"floor": 3}})];
/// let rows = iot_hub_emulator::run_query("SELECT deviceId FROM devices WHERE tags.floor > 2", &twins)?;
/// assert_eq!(rows, vec![serde_json::json!({"deviceId": "a"})]);
/// # Ok::<(), String>(())
/// ```
///
/// # Errors
/// The syntax error, with its position.
pub fn run_query(
    sql: &str,
    documents: &[serde_json::Value],
) -> Result<Vec<serde_json::Value>, String> {
    let q = query::parse_query(sql).map_err(|e| e.to_string())?;
    let mut rows = query::run(&q, documents);
    if let Some(top) = q.top {
        rows.truncate(top);
    }
    Ok(rows)
}

/// What `--state` gives at start-up: the store, the registry, the persistent MQTT sessions.
type StateParts = (
    Option<Arc<store::Store>>,
    Registry,
    std::collections::HashMap<String, u8>,
    std::collections::HashMap<String, std::collections::VecDeque<hub::C2dMessage>>,
    jobs::JobStore,
);

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
    https_port: u16,
    plain_mqtt_port: Option<u16>,
    host_name: String,
    state_dir: Option<PathBuf>,
    seed_file: Option<PathBuf>,
    cert_dir: Option<PathBuf>,
    policy_key: Option<Secret>,
    devices: Vec<(String, Option<Secret>)>,
    token_grace: Duration,
    telemetry_capacity: usize,
    telemetry_max_bytes: usize,
    http_idle_timeout: Duration,
    faults: FaultSettings,
}

impl Default for EmulatorBuilder {
    fn default() -> Self {
        Self {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            mqtt_port: 0,
            https_port: 0,
            plain_mqtt_port: None,
            host_name: "localhost".into(),
            state_dir: None,
            seed_file: None,
            cert_dir: None,
            policy_key: None,
            devices: Vec::new(),
            token_grace: Duration::ZERO,
            telemetry_capacity: 10_000,
            telemetry_max_bytes: limits::TELEMETRY_MAX_BYTES,
            http_idle_timeout: limits::HTTP_IDLE_TIMEOUT,
            faults: FaultSettings::default(),
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

    /// How long a connection may outlive its token's expiry (default 0).
    pub fn token_grace(mut self, grace: Duration) -> Self {
        self.token_grace = grace;
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

    /// How many telemetry messages are kept (oldest dropped first; default 10 000).
    pub fn telemetry_capacity(mut self, n: usize) -> Self {
        self.telemetry_capacity = n.max(1);
        self
    }

    /// Opens `--state` (migrating a `registry.json` written by 0.1 on first use) and reads
    /// the registry and the persistent MQTT sessions.
    fn open_state(dir: &Path) -> Result<StateParts, EmulatorError> {
        let legacy_file = dir.join("registry.json");
        let legacy = if !dir.join(store::DB_FILE).exists() && legacy_file.exists() {
            let bytes = std::fs::read(&legacy_file)?;
            Some(serde_json::from_slice::<Registry>(&bytes).map_err(|e| {
                EmulatorError::State(format!(
                    "{}: {e}; the emulator refuses to start and left the file as it is",
                    legacy_file.display()
                ))
            })?)
        } else {
            None
        };
        let (store, mut loaded) = store::Store::open(dir)?;
        let parsed = match legacy {
            Some(mut reg) => {
                tracing::info!(file = %legacy_file.display(), "migrating the state file into state.db");
                reg.track_changes();
                Ok((
                    reg,
                    Default::default(),
                    Default::default(),
                    Default::default(),
                ))
            }
            None => Registry::from_rows(&mut loaded)
                .map_err(|(what, e)| format!("{what} ({e})"))
                .and_then(|mut reg| {
                    reg.track_changes_from_now();
                    let mut sessions = std::collections::HashMap::new();
                    for (client_id, v) in loaded.take(store::Kind::Session) {
                        let subs = serde_json::from_slice(&v)
                            .map_err(|e| format!("session {client_id} ({e})"))?;
                        sessions.insert(client_id, subs);
                    }
                    let c2d = hub::C2dMessage::from_rows(loaded.take(store::Kind::C2d))?;
                    let jobs = jobs::JobStore::from_rows(
                        loaded.take(store::Kind::Job),
                        loaded.take(store::Kind::JobDevice),
                    )?;
                    Ok((reg, sessions, c2d, jobs))
                }),
        };
        match parsed {
            Ok((registry, sessions, c2d, jobs)) => Ok((Some(store), registry, sessions, c2d, jobs)),
            Err(what) => {
                store.close();
                Err(EmulatorError::State(format!(
                    "{}: {what} is unreadable; the emulator refuses to start and left the file as it is",
                    dir.join(store::DB_FILE).display()
                )))
            }
        }
    }

    fn build_registry(&self, loopback: bool) -> Result<StateParts, EmulatorError> {
        let (store, mut reg, sessions, c2d, jobs) = match &self.state_dir {
            Some(d) => Self::open_state(d)?,
            None => (
                None,
                Registry::default(),
                Default::default(),
                Default::default(),
                Default::default(),
            ),
        };
        let result = self.complete_registry(&mut reg, loopback);
        if let Err(e) = result {
            if let Some(s) = &store {
                s.close();
            }
            return Err(e);
        }
        Ok((store, reg, sessions, c2d, jobs))
    }

    /// Adds the default policies, the development device, the seed and the builder's devices.
    fn complete_registry(&self, reg: &mut Registry, loopback: bool) -> Result<(), EmulatorError> {
        for rec in reg.devices.values_mut() {
            rec.device.connection_state = Default::default();
            for m in rec.modules.values_mut() {
                m.module.connection_state = Default::default();
            }
        }
        if let Some(k) = &self.policy_key {
            if !loopback && dev_keys::is_well_known(k.expose()) {
                return Err(EmulatorError::Config(
                    "the well-known development key is refused on a non-loopback address".into(),
                ));
            }
            iot_common::connection_string::validate_key("policy key", k.expose())
                .map_err(|e| EmulatorError::Config(e.to_string()))?;
        }
        for (name, rights) in default_policies() {
            let entry = reg.policies_mut().entry(name.to_owned());
            let (primary, secondary) = match (&self.policy_key, loopback) {
                (Some(k), _) => (k.clone(), generate_key()),
                (None, true) => (
                    Secret::new(dev_keys::DEV_POLICY_PRIMARY_KEY),
                    Secret::new(dev_keys::DEV_POLICY_SECONDARY_KEY),
                ),
                (None, false) => (generate_key(), generate_key()),
            };
            match entry {
                std::collections::btree_map::Entry::Occupied(mut e)
                    if self.policy_key.is_some() =>
                {
                    e.get_mut().primary = primary;
                }
                std::collections::btree_map::Entry::Occupied(_) => {}
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(Policy {
                        primary,
                        secondary,
                        rights,
                    });
                }
            }
        }
        let now = hub::now_string();
        // Explicit entries (seed file, `device(..)`) win over what the state holds and over the
        // development device, so that `myDevice` can be given a private key.
        let set = |reg: &mut Registry, id: &str, keys: SymmetricKey| -> Result<(), EmulatorError> {
            iot_common::connection_string::validate_id("deviceId", id)
                .map_err(|e| EmulatorError::Config(e.to_string()))?;
            match reg.devices.get(id) {
                Some(rec) if rec.device.authentication.symmetric_key.as_ref() == Some(&keys) => {}
                Some(_) => {
                    let etag = reg.next_etag();
                    if let Some(rec) = reg.record_mut(id) {
                        rec.device.authentication = AuthenticationMechanism::sas(keys);
                        rec.device.etag = Some(etag);
                    }
                }
                None => {
                    let mut d = Device::new(id, Some(keys));
                    d.etag = Some(reg.next_etag());
                    reg.insert_device(
                        id,
                        registry::DeviceRecord::new(d, twin_state::TwinState::new(&now)),
                    );
                }
            }
            Ok(())
        };
        let mut explicit = Vec::new();
        if let Some(seed) = &self.seed_file {
            explicit.extend(seed::read(seed)?);
        }
        for (id, key) in &self.devices {
            let key = key.clone().unwrap_or_else(generate_key);
            explicit.push((id.clone(), SymmetricKey::new(key, generate_key())));
        }
        for (id, keys) in explicit.iter() {
            set(reg, id, keys.clone())?;
        }
        let seeded = |id: &str| explicit.iter().any(|(e, _)| e == id);
        // The development device keeps its published key only while the policies do: with a
        // private policy key (or off loopback) a well-known device key would be a back door.
        let public_keys = loopback && self.policy_key.is_none();
        if !seeded(dev_keys::DEV_DEVICE_ID) {
            let dev = reg.devices.get(dev_keys::DEV_DEVICE_ID);
            let has_public_key = dev
                .and_then(|rec| rec.device.authentication.symmetric_key.as_ref())
                .and_then(|k| k.primary_key.as_ref())
                .is_some_and(|k| dev_keys::is_well_known(k.expose()));
            if dev.is_none() || (has_public_key && !public_keys) {
                let keys = if public_keys {
                    SymmetricKey::new(
                        Secret::new(dev_keys::DEV_DEVICE_PRIMARY_KEY),
                        Secret::new(dev_keys::DEV_DEVICE_SECONDARY_KEY),
                    )
                } else {
                    SymmetricKey::new(generate_key(), generate_key())
                };
                set(reg, dev_keys::DEV_DEVICE_ID, keys)?;
            }
        }
        Ok(())
    }

    /// Binds the listeners and starts serving.
    ///
    /// # Errors
    /// Bind failures, unreadable state/seed/certificate files, or an invalid configuration.
    pub async fn start(self) -> Result<RunningEmulator, EmulatorError> {
        let loopback = self.bind.is_loopback();
        let (store, registry, sessions, c2d, jobs) = self.build_registry(loopback)?;
        let tls = tls::load_or_generate(
            self.cert_dir.as_deref(),
            std::slice::from_ref(&self.host_name),
        )?;
        let mqtt_tls = TlsAcceptor::from(tls::server_config(&tls, &[b"mqtt"])?);
        let https_tls = TlsAcceptor::from(tls::server_config(&tls, &[b"http/1.1"])?);
        let hub = Arc::new(Hub::new(
            HubOptions {
                host_name: self.host_name.clone(),
                token_grace: self.token_grace,
                telemetry_capacity: self.telemetry_capacity,
                telemetry_max_bytes: self.telemetry_max_bytes,
                refuse_well_known: !loopback,
            },
            registry,
            store,
            sessions,
            c2d,
            jobs,
        ));
        hub.faults.apply(&self.faults);
        // What start-up added (policies, seed, migration) is stored before anyone is answered.
        if let Err(e) = hub.flush() {
            hub.close_store();
            return Err(e.into());
        }
        let mqtt_listener = bind(self.bind, self.mqtt_port, "MQTT over TLS", "--mqtt-port").await?;
        let https_listener = bind(self.bind, self.https_port, "HTTPS", "--https-port").await?;
        let plain_listener = match self.plain_mqtt_port {
            Some(p) => Some(bind(self.bind, p, "plain MQTT", "--plain-mqtt-port").await?),
            None => None,
        };
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let mqtt_addr = mqtt_listener.local_addr()?;
        let https_addr = https_listener.local_addr()?;
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
            tokio::spawn(http::accept_loop(
                https_listener,
                https_tls,
                self.http_idle_timeout,
                http::AppState {
                    hub: hub.clone(),
                    shutdown: shutdown_rx.clone(),
                },
            )),
            tokio::spawn(jobs::scheduler(hub.clone(), shutdown_rx.clone())),
            tokio::spawn(drop_all_loop(hub.clone(), shutdown_rx.clone())),
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
            mqtt_addr,
            https_addr,
            plain_mqtt_addr,
            ca_pem: tls.ca_pem,
            ca_path: tls.ca_path,
            shutdown: shutdown_tx,
            tasks,
        })
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

/// A running emulator: its addresses, CA, connection strings, and controls for tests.
///
/// Dropping it stops the listeners; [`RunningEmulator::shutdown`] also waits for them and
/// flushes `--state`.
#[derive(Debug)]
pub struct RunningEmulator {
    hub: Arc<Hub>,
    mqtt_addr: SocketAddr,
    https_addr: SocketAddr,
    plain_mqtt_addr: Option<SocketAddr>,
    ca_pem: String,
    ca_path: Option<PathBuf>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

fn endpoint(host: &str, port: u16, default: u16) -> String {
    if port == default {
        host.to_owned()
    } else {
        format!("{host}:{port}")
    }
}

impl RunningEmulator {
    /// The MQTT over TLS address.
    pub fn mqtt_addr(&self) -> SocketAddr {
        self.mqtt_addr
    }

    /// The HTTPS address (REST and MQTT over WebSockets).
    pub fn https_addr(&self) -> SocketAddr {
        self.https_addr
    }

    /// The plain MQTT address, when enabled.
    pub fn plain_mqtt_addr(&self) -> Option<SocketAddr> {
        self.plain_mqtt_addr
    }

    /// The hub host name.
    pub fn host_name(&self) -> &str {
        self.hub.host_name()
    }

    /// The CA certificate (PEM) that clients must trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Where the CA certificate was written, when a certificate directory is in use.
    pub fn ca_cert_path(&self) -> Option<&Path> {
        self.ca_path.as_deref()
    }

    fn dial_host(&self) -> &str {
        if self.mqtt_addr.ip().is_loopback() {
            "localhost"
        } else {
            self.hub.host_name()
        }
    }

    /// `https://localhost:{port}`: the REST base URL.
    pub fn https_url(&self) -> String {
        format!("https://{}:{}", self.dial_host(), self.https_addr.port())
    }

    /// A service connection string for a shared access policy (e.g. `iothubowner`).
    pub fn policy_connection_string(&self, policy: &str) -> Option<String> {
        let key = lock(&self.hub.registry)
            .policies
            .get(policy)?
            .primary
            .clone();
        Some(format!(
            "HostName={};SharedAccessKeyName={policy};SharedAccessKey={}",
            endpoint(self.hub.host_name(), self.https_addr.port(), 443),
            key.expose()
        ))
    }

    /// The `iothubowner` connection string.
    pub fn service_connection_string(&self) -> String {
        self.policy_connection_string("iothubowner")
            .unwrap_or_default()
    }

    fn identity_connection_string(&self, device: &str, module: Option<&str>) -> Option<String> {
        let reg = lock(&self.hub.registry);
        let rec = reg.devices.get(device)?;
        let keys = match module {
            Some(m) => rec
                .modules
                .get(m)?
                .module
                .authentication
                .symmetric_key
                .clone(),
            None => rec.device.authentication.symmetric_key.clone(),
        }?;
        let key = keys.primary_key?;
        let mut s = format!("HostName={};DeviceId={device}", self.hub.host_name());
        if let Some(m) = module {
            s.push_str(&format!(";ModuleId={m}"));
        }
        s.push_str(&format!(";SharedAccessKey={}", key.expose()));
        if self.mqtt_addr.port() != 8883 || self.dial_host() != self.hub.host_name() {
            s.push_str(&format!(
                ";GatewayHostName={}",
                endpoint(self.dial_host(), self.mqtt_addr.port(), 8883)
            ));
        }
        Some(s)
    }

    /// The connection string of a registered device (MQTT over TLS).
    pub fn device_connection_string(&self, device_id: &str) -> Option<String> {
        self.identity_connection_string(device_id, None)
    }

    /// The connection string of a registered module.
    pub fn module_connection_string(&self, device_id: &str, module_id: &str) -> Option<String> {
        self.identity_connection_string(device_id, Some(module_id))
    }

    /// Registers a device with generated keys (if it does not exist) and returns its
    /// connection string.
    ///
    /// # Errors
    /// An invalid device id.
    pub fn create_device(&self, device_id: &str) -> Result<String, EmulatorError> {
        if self.hub.get_device(device_id).is_err() {
            self.hub
                .put_device(device_id, Device::new(device_id, None), None)
                .map_err(|e| EmulatorError::Config(e.message))?;
        }
        self.device_connection_string(device_id)
            .ok_or_else(|| EmulatorError::Config("device has no key".into()))
    }

    /// Registers a module with generated keys and returns its connection string.
    ///
    /// # Errors
    /// Unknown device or an invalid module id.
    pub fn create_module(&self, device_id: &str, module_id: &str) -> Result<String, EmulatorError> {
        if self.hub.get_module(device_id, module_id).is_err() {
            let m = iot_common::registry::Module::new(device_id, module_id, None);
            self.hub
                .put_module(device_id, module_id, m, None)
                .map_err(|e| EmulatorError::Config(e.message))?;
        }
        self.module_connection_string(device_id, module_id)
            .ok_or_else(|| EmulatorError::Config("module has no key".into()))
    }

    /// Invokes a direct method as the REST API would (same routing, timeouts and errors).
    ///
    /// # Errors
    /// The hub's error: 404001, 404103, 504101, 400004…
    pub async fn invoke_method(
        &self,
        device_id: &str,
        module_id: Option<&str>,
        request: CloudToDeviceMethod,
    ) -> Result<CloudToDeviceMethodResult, HubApiError> {
        self.hub
            .invoke_method(device_id, module_id, request)
            .await
            .map_err(HubApiError::from)
    }

    /// Patches (`replace = false`) or replaces the twin's tags and desired properties, as
    /// `PATCH`/`PUT /twins/{id}` would; the device is notified of desired changes.
    ///
    /// # Errors
    /// The hub's error (unknown device, invalid patch).
    pub fn update_twin(
        &self,
        device_id: &str,
        module_id: Option<&str>,
        body: &serde_json::Value,
        replace: bool,
    ) -> Result<Twin, HubApiError> {
        self.hub
            .update_twin(device_id, module_id, body, None, replace)
            .map_err(HubApiError::from)
    }

    /// The service view of a twin.
    ///
    /// # Errors
    /// Unknown device or module.
    pub fn get_twin(&self, device_id: &str, module_id: Option<&str>) -> Result<Twin, HubApiError> {
        self.hub
            .get_twin(device_id, module_id)
            .map_err(HubApiError::from)
    }

    /// Queues a cloud-to-device message.
    ///
    /// # Errors
    /// Unknown device, or 50 messages already pending.
    pub fn send_c2d(
        &self,
        device_id: &str,
        body: impl Into<bytes::Bytes>,
        mut properties: iot_common::MessageProperties,
    ) -> Result<(), HubApiError> {
        properties
            .to
            .get_or_insert_with(|| format!("/devices/{device_id}/messages/devicebound"));
        self.hub
            .enqueue_c2d(
                device_id,
                hub::C2dMessage {
                    properties,
                    body: body.into(),
                    id: 0,
                },
            )
            .map_err(HubApiError::from)
    }

    /// Telemetry received so far (optionally from one device), oldest first.
    pub fn telemetry(&self, device_id: Option<&str>) -> Vec<TelemetryRecord> {
        self.hub.telemetry(device_id)
    }

    /// Drops the connection of a device or module (fault injection); `true` if it had one.
    pub fn disconnect(&self, device_id: &str, module_id: Option<&str>) -> bool {
        self.hub.disconnect(device_id, module_id)
    }

    /// Drops every device connection; returns how many.
    pub fn disconnect_all(&self) -> usize {
        self.hub.disconnect_all()
    }

    /// How many device and module connections are live.
    pub fn connected_count(&self) -> usize {
        self.hub.connected_count()
    }

    /// Arms faults (fields left `None` are unchanged).
    pub fn set_faults(&self, settings: &FaultSettings) {
        self.hub.faults.apply(settings);
    }

    /// How many injected faults have fired so far.
    pub fn faults_fired(&self) -> u64 {
        self.hub.faults.fired()
    }

    /// Waits (at most 30 s) until every change is committed to `--state`. Changes are
    /// committed before they are acknowledged anyway; this is for changes made through
    /// this handle's own methods.
    ///
    /// # Errors
    /// The state could not be written in time (the changes stay pending and are retried).
    pub fn flush(&self) -> Result<(), EmulatorError> {
        self.hub.flush().map_err(EmulatorError::Io)
    }

    /// Stops listening, closes connections, waits for the tasks, commits what is pending
    /// to `--state` and closes it.
    ///
    /// # Errors
    /// The state could not be written.
    pub async fn shutdown(mut self) -> Result<(), EmulatorError> {
        let _ = self.shutdown.send(true);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        let r = self.flush();
        self.hub.close_store();
        r
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for t in &self.tasks {
            t.abort();
        }
        let _ = self.hub.flush();
        self.hub.close_store();
    }
}
