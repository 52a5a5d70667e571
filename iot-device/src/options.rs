//! Client options: private fields, chainable setters, a `Debug` without secrets.

use crate::session::QueueFullPolicy;
use crate::{Result, tls};
use iot_common::Backoff;
use iot_common::tls::ClientIdentity;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// How the client reaches the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Transport {
    /// MQTT over TLS, port 8883 (or the `GatewayHostName` port).
    #[default]
    MqttTls,
    /// MQTT over secure WebSockets, `wss://{host}:443/$iothub/websocket`.
    #[cfg(feature = "websocket")]
    #[cfg_attr(docsrs, doc(cfg(feature = "websocket")))]
    MqttWebSocket,
    /// MQTT over plain TCP: only for the emulator's `--plain-mqtt-port` in tests. Never use it
    /// against a real hub; the SAS token would travel in clear text.
    InsecureTcp,
}

/// Options of a [`DeviceClient`](crate::DeviceClient).
///
/// ```
/// use iot_device::DeviceClientOptions;
/// use std::time::Duration;
/// let options = DeviceClientOptions::new()
///     .keep_alive(Duration::from_secs(30))
///     .operation_timeout(Duration::from_secs(10));
/// ```
#[derive(Clone)]
pub struct DeviceClientOptions {
    pub(crate) keep_alive: Duration,
    pub(crate) operation_timeout: Duration,
    pub(crate) backoff: Backoff,
    pub(crate) max_reconnect_attempts: Option<u32>,
    pub(crate) retry_initial_connect: bool,
    pub(crate) sas_ttl: Duration,
    pub(crate) model_id: Option<String>,
    pub(crate) max_concurrent_methods: usize,
    pub(crate) transport: Transport,
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    /// What `tls` was built from (kept so that adding a CA or an identity keeps the other).
    ca_pem: Option<String>,
    pub(crate) identity: Option<ClientIdentity>,
    /// `tls` came from [`DeviceClientOptions::tls_client_config`]: the user's own.
    custom_tls: bool,
    pub(crate) product_info: Option<String>,
    pub(crate) telemetry_queue_messages: usize,
    pub(crate) telemetry_queue_bytes: usize,
    pub(crate) queue_full_policy: QueueFullPolicy,
    pub(crate) desired_capacity: usize,
    pub(crate) c2d_capacity: usize,
}

impl Default for DeviceClientOptions {
    fn default() -> Self {
        Self {
            keep_alive: Duration::from_secs(60),
            operation_timeout: Duration::from_secs(30),
            backoff: Backoff::default(),
            max_reconnect_attempts: None,
            retry_initial_connect: false,
            sas_ttl: Duration::from_secs(3600),
            model_id: None,
            max_concurrent_methods: 16,
            transport: Transport::default(),
            tls: None,
            ca_pem: None,
            identity: None,
            custom_tls: false,
            product_info: None,
            telemetry_queue_messages: 1000,
            telemetry_queue_bytes: 4 * 1024 * 1024,
            queue_full_policy: QueueFullPolicy::Reject,
            desired_capacity: 16,
            c2d_capacity: 16,
        }
    }
}

impl DeviceClientOptions {
    /// The defaults: keep-alive 60 s, operation timeout 30 s, backoff 1 s → 100 s with up to
    /// 5 s jitter and no attempt limit, SAS time-to-live 1 h renewed at 85 %, 16 concurrent
    /// method handlers, MQTT over TLS trusting the platform roots.
    ///
    /// ```
    /// use iot_device::DeviceClientOptions;
    /// let options = DeviceClientOptions::new();
    /// # let _ = options;
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// MQTT keep-alive interval (default 60 s; the hub allows up to 1177 s).
    ///
    /// ```
    /// use iot_device::DeviceClientOptions;
    /// let options = DeviceClientOptions::new().keep_alive(std::time::Duration::from_secs(120));
    /// # let _ = options;
    /// ```
    pub fn keep_alive(mut self, d: Duration) -> Self {
        self.keep_alive = d.max(Duration::from_secs(1));
        self
    }

    /// How long twin operations, telemetry and subscriptions wait for the hub (default 30 s).
    ///
    /// ```
    /// use iot_device::DeviceClientOptions;
    /// let options = DeviceClientOptions::new().operation_timeout(std::time::Duration::from_secs(10));
    /// # let _ = options;
    /// ```
    pub fn operation_timeout(mut self, d: Duration) -> Self {
        self.operation_timeout = d;
        self
    }

    /// Reconnect backoff.
    ///
    /// ```
    /// use iot_device::{Backoff, DeviceClientOptions};
    /// use std::time::Duration;
    /// let options = DeviceClientOptions::new().backoff(Backoff::new(
    ///     Duration::from_millis(500),
    ///     Duration::from_secs(30),
    ///     Duration::from_secs(1),
    /// ));
    /// # let _ = options;
    /// ```
    pub fn backoff(mut self, b: Backoff) -> Self {
        self.backoff = b;
        self
    }

    /// Give up after this many failed reconnects in a row (default: never).
    ///
    /// ```
    /// use iot_device::DeviceClientOptions;
    /// let options = DeviceClientOptions::new().max_reconnect_attempts(Some(10));
    /// # let _ = options;
    /// ```
    pub fn max_reconnect_attempts(mut self, n: Option<u32>) -> Self {
        self.max_reconnect_attempts = n;
        self
    }

    /// Keep retrying the first connection instead of failing `connect` (default false).
    ///
    /// ```
    /// use iot_device::DeviceClientOptions;
    /// // A device that boots before the network is up keeps trying; a wrong key or an
    /// // untrusted certificate still ends `connect` at once.
    /// let options = DeviceClientOptions::new().retry_initial_connect(true);
    /// # let _ = options;
    /// ```
    pub fn retry_initial_connect(mut self, yes: bool) -> Self {
        self.retry_initial_connect = yes;
        self
    }

    /// Lifetime of the SAS tokens the client signs (default 1 h). The client reconnects with
    /// a fresh token at 85 % of it.
    ///
    /// ```
    /// use iot_device::DeviceClientOptions;
    /// let options = DeviceClientOptions::new().sas_token_ttl(std::time::Duration::from_secs(24 * 3600));
    /// # let _ = options;
    /// ```
    pub fn sas_token_ttl(mut self, d: Duration) -> Self {
        self.sas_ttl = d.max(Duration::from_secs(2));
        self
    }

    /// IoT Plug and Play model id, sent in the MQTT username.
    ///
    /// ```
    /// use iot_device::DeviceClientOptions;
    /// let options = DeviceClientOptions::new().model_id("dtmi:com:example:Thermostat;1");
    /// # let _ = options;
    /// ```
    pub fn model_id(mut self, dtmi: impl Into<String>) -> Self {
        self.model_id = Some(dtmi.into());
        self
    }

    /// How many method handlers may run at once (default 16).
    ///
    /// ```
    /// use iot_device::DeviceClientOptions;
    /// let options = DeviceClientOptions::new().max_concurrent_methods(4);
    /// # let _ = options;
    /// ```
    pub fn max_concurrent_methods(mut self, n: usize) -> Self {
        self.max_concurrent_methods = n.max(1);
        self
    }

    /// The transport (default MQTT over TLS).
    ///
    /// ```
    /// use iot_device::{DeviceClientOptions, Transport};
    /// let options = DeviceClientOptions::new().transport(Transport::MqttTls);
    /// # let _ = options;
    /// ```
    pub fn transport(mut self, t: Transport) -> Self {
        self.transport = t;
        self
    }

    /// Appended to this SDK's `DeviceClientType` (for example your product and version).
    ///
    /// ```
    /// use iot_device::DeviceClientOptions;
    /// let options = DeviceClientOptions::new().product_info("thermostat/2.1");
    /// # let _ = options;
    /// ```
    pub fn product_info(mut self, info: impl Into<String>) -> Self {
        self.product_info = Some(info.into());
        self
    }

    /// Bounds of the offline telemetry queue: messages accepted but not yet handed to the
    /// connection (default 1000 messages and 4 MiB, topic included). Each queued message
    /// holds its body until it is sent, so these bound the memory of an outage.
    ///
    /// ```
    /// use iot_device::DeviceClientOptions;
    /// // Up to 100 messages or 64 KiB wait while the device is offline.
    /// let options = DeviceClientOptions::new().telemetry_queue(100, 64 * 1024);
    /// # let _ = options;
    /// ```
    pub fn telemetry_queue(mut self, messages: usize, bytes: usize) -> Self {
        self.telemetry_queue_messages = messages.max(1);
        self.telemetry_queue_bytes = bytes.max(1);
        self
    }

    /// What a send does when the telemetry queue is full (default: refuse it with
    /// [`ErrorKind::QueueFull`](crate::ErrorKind::QueueFull)).
    ///
    /// ```
    /// use iot_device::{DeviceClientOptions, QueueFullPolicy};
    /// let options = DeviceClientOptions::new().queue_full_policy(QueueFullPolicy::DropOldest);
    /// # let _ = options;
    /// ```
    pub fn queue_full_policy(mut self, policy: QueueFullPolicy) -> Self {
        self.queue_full_policy = policy;
        self
    }

    /// How many desired updates wait for a slow consumer (default 16). Past that they
    /// coalesce into one [`DesiredKind::Full`](crate::DesiredKind::Full) of the current state.
    ///
    /// ```
    /// use iot_device::DeviceClientOptions;
    /// let options = DeviceClientOptions::new().desired_capacity(4);
    /// # let _ = options;
    /// ```
    pub fn desired_capacity(mut self, n: usize) -> Self {
        self.desired_capacity = n.max(1);
        self
    }

    /// How many cloud-to-device messages wait for the application (default 16). Past that
    /// they are not acknowledged, so the hub keeps them and delivers them again later.
    ///
    /// ```
    /// use iot_device::DeviceClientOptions;
    /// let options = DeviceClientOptions::new().c2d_capacity(64);
    /// # let _ = options;
    /// ```
    pub fn c2d_capacity(mut self, n: usize) -> Self {
        self.c2d_capacity = n.max(1);
        self
    }

    /// Trusts a CA (PEM text) besides the platform roots, e.g. the emulator's.
    ///
    /// ```no_run
    /// use iot_device::DeviceClientOptions;
    /// let pem = std::fs::read_to_string("ca.pem")?;
    /// let options = DeviceClientOptions::new().trust_ca_pem(&pem)?;
    /// # let _ = options;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Configuration`](crate::ErrorKind::Configuration) when the PEM holds no
    /// valid certificate.
    pub fn trust_ca_pem(mut self, pem: &str) -> Result<Self> {
        self.ca_pem = Some(pem.to_owned());
        self.custom_tls = false;
        self.tls = Some(tls::client_config(Some(pem), self.identity.as_ref())?);
        Ok(self)
    }

    /// Authenticates with an X.509 certificate: the PEM chain (leaf first) and the leaf's PEM
    /// private key. Needed for `x509=true` connection strings and X.509 provisioning; the hub
    /// matches the leaf by thumbprint (`selfSigned`) or by its chain and subject CN
    /// (`certificateAuthority`).
    ///
    /// ```no_run
    /// use iot_device::DeviceClientOptions;
    /// let chain = std::fs::read_to_string("device-cert.pem")?;
    /// let key = std::fs::read_to_string("device-key.pem")?;
    /// let options = DeviceClientOptions::new().client_certificate_pem(&chain, &key)?;
    /// # let _ = options;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Certificate`](crate::ErrorKind::Certificate) naming what is wrong: no
    /// certificate, no private key, a key that does not belong to the certificate, an
    /// unreadable certificate.
    pub fn client_certificate_pem(mut self, chain_pem: &str, key_pem: &str) -> Result<Self> {
        let identity =
            ClientIdentity::from_pem(chain_pem.as_bytes(), key_pem.as_bytes()).map_err(|e| {
                crate::Error::new(crate::ErrorKind::Certificate, e.to_string()).with_source(e)
            })?;
        self.tls = Some(tls::client_config(self.ca_pem.as_deref(), Some(&identity))?);
        self.identity = Some(identity);
        self.custom_tls = false;
        Ok(self)
    }

    /// [`client_certificate_pem`](Self::client_certificate_pem) from files.
    ///
    /// ```no_run
    /// use iot_device::DeviceClientOptions;
    /// let options = DeviceClientOptions::new()
    ///     .client_certificate_files("device-cert.pem", "device-key.pem")?;
    /// # let _ = options;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// A file cannot be read, or as [`client_certificate_pem`](Self::client_certificate_pem).
    pub fn client_certificate_files(
        self,
        chain: impl AsRef<std::path::Path>,
        key: impl AsRef<std::path::Path>,
    ) -> Result<Self> {
        let read = |p: &std::path::Path, what: &str| {
            std::fs::read_to_string(p).map_err(|e| {
                crate::Error::new(
                    crate::ErrorKind::Configuration,
                    format!("cannot read the {what} file {}", p.display()),
                )
                .with_source(e)
            })
        };
        let chain = read(chain.as_ref(), "client certificate")?;
        let key = read(key.as_ref(), "client key")?;
        self.client_certificate_pem(&chain, &key)
    }

    /// Uses your own rustls configuration for the TLS connection (hardware-backed keys, custom
    /// verifiers, pinned roots). It replaces what [`trust_ca_pem`](Self::trust_ca_pem) and
    /// [`client_certificate_pem`](Self::client_certificate_pem) built; build it with the
    /// [`rustls`](crate::rustls) this crate re-exports. Without a client certificate in it,
    /// `x509=true` connection strings are refused before connecting.
    ///
    /// ```
    /// use iot_device::{DeviceClientOptions, rustls};
    /// use std::sync::Arc;
    /// let provider = Arc::new(rustls::crypto::ring::default_provider());
    /// let config = rustls::ClientConfig::builder_with_provider(provider)
    ///     .with_safe_default_protocol_versions()?
    ///     .with_root_certificates(rustls::RootCertStore::empty())
    ///     .with_no_client_auth();
    /// let options = DeviceClientOptions::new().tls_client_config(Arc::new(config));
    /// # let _ = options;
    /// # Ok::<(), rustls::Error>(())
    /// ```
    pub fn tls_client_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self.custom_tls = true;
        self.identity = None;
        self
    }

    /// Refuses, before any connection, a client certificate that is expired or not yet valid
    /// (a certificate inside a custom rustls configuration is the user's to check).
    pub(crate) fn check_client_certificate(&self) -> Result<()> {
        match &self.identity {
            Some(identity) => identity
                .check_validity(std::time::SystemTime::now())
                .map_err(|e| {
                    crate::Error::new(crate::ErrorKind::Certificate, e.to_string()).with_source(e)
                }),
            None => Ok(()),
        }
    }

    /// Whether a TLS client certificate will be presented.
    pub(crate) fn has_client_certificate(&self) -> bool {
        self.identity.is_some()
            || (self.custom_tls
                && self
                    .tls
                    .as_ref()
                    .is_some_and(|c| c.client_auth_cert_resolver.has_certs()))
    }

    /// Trusts the CA in a PEM file, e.g. the emulator's `ca.pem`.
    ///
    /// ```no_run
    /// use iot_device::DeviceClientOptions;
    /// // The emulator prints the path of its CA file at start-up.
    /// let options = DeviceClientOptions::new().trust_ca_file(std::env::var("IOTHUB_CA_CERT")?)?;
    /// # let _ = options;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// The file cannot be read or holds no valid certificate.
    pub fn trust_ca_file(self, path: impl AsRef<std::path::Path>) -> Result<Self> {
        let pem = std::fs::read_to_string(path.as_ref()).map_err(|e| {
            crate::Error::new(crate::ErrorKind::Configuration, "cannot read the CA file")
                .with_source(e)
        })?;
        self.trust_ca_pem(&pem)
    }

    pub(crate) fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>> {
        match &self.tls {
            Some(c) => Ok(c.clone()),
            None => tls::default_config(),
        }
    }

    /// `DeviceClientType`: this SDK, its version, and the product info.
    pub(crate) fn client_type(&self) -> String {
        let base = concat!("azure-iot-rs-device/", env!("CARGO_PKG_VERSION"));
        match &self.product_info {
            Some(p) => format!("{base} {p}"),
            None => base.to_owned(),
        }
    }
}

impl fmt::Debug for DeviceClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceClientOptions")
            .field("keep_alive", &self.keep_alive)
            .field("operation_timeout", &self.operation_timeout)
            .field("backoff", &self.backoff)
            .field("max_reconnect_attempts", &self.max_reconnect_attempts)
            .field("retry_initial_connect", &self.retry_initial_connect)
            .field("sas_ttl", &self.sas_ttl)
            .field("model_id", &self.model_id)
            .field("max_concurrent_methods", &self.max_concurrent_methods)
            .field("transport", &self.transport)
            .field("telemetry_queue_messages", &self.telemetry_queue_messages)
            .field("telemetry_queue_bytes", &self.telemetry_queue_bytes)
            .field("queue_full_policy", &self.queue_full_policy)
            .field("desired_capacity", &self.desired_capacity)
            .field("c2d_capacity", &self.c2d_capacity)
            .field("custom_ca", &self.ca_pem.is_some())
            .field(
                "client_certificate",
                &self.identity.as_ref().map(|i| i.subject()),
            )
            .field("custom_tls", &self.custom_tls)
            .finish()
    }
}
