//! Options of the service client.

use crate::{Error, ErrorKind, Result};
use iot_common::Backoff;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Retries of idempotent calls (GET, query, conditional PUT/PATCH/DELETE) on 408, 429 and
/// 5xx answers and connection failures. `invoke_method` is only retried when the request
/// could not be sent at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryOptions {
    /// Retries after the first try (default 3).
    pub max_retries: u32,
    /// Delays between tries; `Retry-After` wins when the hub sends it.
    pub backoff: Backoff,
    /// Give up when this much time has passed since the first try (default 60 s).
    pub max_elapsed: Duration,
}

impl Default for RetryOptions {
    fn default() -> Self {
        Self {
            max_retries: 3,
            backoff: Backoff::new(
                Duration::from_millis(200),
                Duration::from_secs(10),
                Duration::from_millis(200),
            ),
            max_elapsed: Duration::from_secs(60),
        }
    }
}

/// Options of a [`ServiceClient`](crate::ServiceClient).
#[derive(Clone)]
pub struct ServiceClientOptions {
    pub(crate) api_version: String,
    pub(crate) operation_timeout: Duration,
    pub(crate) retry: RetryOptions,
    pub(crate) endpoint: Option<url::Url>,
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    pub(crate) sas_ttl: Duration,
    pub(crate) product_info: Option<String>,
    pub(crate) max_response_bytes: usize,
    pub(crate) amqp_port: u16,
}

/// Default bound on an answer's body: the hub's largest answers (a query page, a device list,
/// a twin with 32 KB sections) are a few megabytes at most.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

impl Default for ServiceClientOptions {
    fn default() -> Self {
        Self {
            api_version: iot_common::mqtt::API_VERSION.to_owned(),
            operation_timeout: Duration::from_secs(60),
            retry: RetryOptions::default(),
            endpoint: None,
            tls: None,
            sas_ttl: Duration::from_secs(3600),
            product_info: None,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            amqp_port: 5671,
        }
    }
}

impl ServiceClientOptions {
    /// The port of the hub's AMQP endpoint, used for cloud-to-device messages and their
    /// feedback (default 5671; the emulator prints its own, `--amqp-port`). The host is the
    /// connection string's `HostName` without its port.
    pub fn amqp_port(mut self, port: u16) -> Self {
        self.amqp_port = port;
        self
    }

    /// Defaults: api-version `2021-04-12`, 60 s per request (method calls: their own
    /// timeouts plus 15 s), 3 retries, SAS tokens of 1 h renewed at 85 % of their lifetime
    /// (the device client's rule).
    pub fn new() -> Self {
        Self::default()
    }

    /// The `api-version` query parameter.
    pub fn api_version(mut self, v: impl Into<String>) -> Self {
        self.api_version = v.into();
        self
    }

    /// How long one HTTP request may take (default 60 s; method invocations use their own
    /// timeouts plus 15 s). Named as the device client's option.
    pub fn operation_timeout(mut self, d: Duration) -> Self {
        self.operation_timeout = d;
        self
    }

    /// Retry policy.
    pub fn retry(mut self, r: RetryOptions) -> Self {
        self.retry = r;
        self
    }

    /// Sends requests to this base URL instead of `https://{HostName}` (the SAS resource
    /// stays the connection string's `HostName`).
    pub fn endpoint(mut self, url: url::Url) -> Self {
        self.endpoint = Some(url);
        self
    }

    /// Lifetime of the SAS tokens the client signs (default 1 h); a fresh one is signed at
    /// 85 % of it.
    pub fn sas_token_ttl(mut self, d: Duration) -> Self {
        self.sas_ttl = d.max(Duration::from_secs(60));
        self
    }

    /// The largest answer body the client reads (default
    /// [`DEFAULT_MAX_RESPONSE_BYTES`], 32 MiB). A larger one, announced or streamed, fails with
    /// [`ErrorKind::ResponseTooLarge`] as soon as the bound is passed, so a misbehaving
    /// endpoint cannot grow the client's memory.
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes.max(1);
        self
    }

    /// Appended to the `User-Agent` (for example your product and version). Named as the
    /// device client's option.
    pub fn product_info(mut self, info: impl Into<String>) -> Self {
        self.product_info = Some(info.into());
        self
    }

    /// Trusts a CA (PEM) besides the platform roots, e.g. the emulator's.
    ///
    /// # Errors
    /// [`ErrorKind::Configuration`] when the PEM holds no valid certificate.
    pub fn trust_ca_pem(mut self, pem: &str) -> Result<Self> {
        self.tls = Some(crate::tls::client_config(Some(pem))?);
        Ok(self)
    }

    /// Trusts the CA in a PEM file.
    ///
    /// # Errors
    /// The file cannot be read or holds no valid certificate.
    pub fn trust_ca_file(self, path: impl AsRef<std::path::Path>) -> Result<Self> {
        let pem = std::fs::read_to_string(path.as_ref()).map_err(|e| {
            Error::new(ErrorKind::Configuration, "cannot read the CA file").with_source(e)
        })?;
        self.trust_ca_pem(&pem)
    }
}

impl fmt::Debug for ServiceClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceClientOptions")
            .field("api_version", &self.api_version)
            .field("operation_timeout", &self.operation_timeout)
            .field("retry", &self.retry)
            .field("endpoint", &self.endpoint.as_ref().map(url::Url::as_str))
            .field("custom_ca", &self.tls.is_some())
            .field("sas_ttl", &self.sas_ttl)
            .field("amqp_port", &self.amqp_port)
            .finish()
    }
}
