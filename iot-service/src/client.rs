//! `ServiceClient`: one connection pool, a cached SAS token, and the request pipeline that
//! every call goes through (auth, `Request-Id`, `User-Agent`, retries, error mapping).

use crate::options::ServiceClientOptions;
use crate::{Error, ErrorKind, Result};
use bytes::Bytes;
use iot_common::{SasToken, Secret, ServiceConnectionString};
use reqwest::Method;
use reqwest::header::{self, HeaderMap, HeaderValue};
use serde::de::DeserializeOwned;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Whether a failed call may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Safe to repeat: retried on 408/429/5xx and connection failures.
    Idempotent,
    /// Has side effects: retried only when the request could not be sent at all.
    ConnectOnly,
}

/// One request of the pipeline.
pub(crate) struct Call<'a> {
    pub(crate) method: Method,
    pub(crate) path: Vec<&'a str>,
    pub(crate) query: Vec<(&'a str, String)>,
    pub(crate) body: Option<Vec<u8>>,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) retry: Retry,
    pub(crate) timeout: Option<Duration>,
}

impl<'a> Call<'a> {
    pub(crate) fn new(method: Method, path: Vec<&'a str>) -> Self {
        let retry = if method == Method::GET {
            Retry::Idempotent
        } else {
            Retry::ConnectOnly
        };
        Self {
            method,
            path,
            query: Vec::new(),
            body: None,
            headers: Vec::new(),
            retry,
            timeout: None,
        }
    }

    pub(crate) fn json(mut self, body: &impl serde::Serialize) -> Result<Self> {
        self.body = Some(serde_json::to_vec(body)?);
        Ok(self)
    }

    pub(crate) fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub(crate) fn retry(mut self, r: Retry) -> Self {
        self.retry = r;
        self
    }
}

/// A successful answer.
pub(crate) struct Answer {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Answer {
    pub(crate) fn json<T: DeserializeOwned>(&self) -> Result<T> {
        Ok(serde_json::from_slice(&self.body)?)
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

struct Inner {
    http: reqwest::Client,
    base: url::Url,
    connection: ServiceConnectionString,
    /// The cached policy token and the Unix time at which to replace it.
    token: Mutex<Option<(Secret, u64)>>,
    options: ServiceClientOptions,
    /// The AMQP connection's task, started by the first C2D send or feedback stream.
    amqp: std::sync::OnceLock<crate::amqp::Link>,
}

/// An IoT Hub service client over HTTPS: direct methods, twins, queries, jobs, registry.
///
/// Cheap to clone; every clone shares one connection pool and one cached SAS token.
#[derive(Clone)]
pub struct ServiceClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ServiceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceClient")
            .field("host_name", &self.inner.connection.host_name)
            .field("policy", &self.inner.connection.key_name)
            .field("base", &self.inner.base.as_str())
            .finish_non_exhaustive()
    }
}

impl ServiceClient {
    /// A client from a service connection string
    /// (`HostName=…;SharedAccessKeyName=…;SharedAccessKey=…`). `HostName` may carry a port,
    /// as the emulator's does.
    ///
    /// # Errors
    /// [`ErrorKind::Configuration`] for a malformed string (the message names the field, never
    /// the key) or an unusable TLS setup.
    pub fn from_connection_string(
        connection_string: &str,
        options: ServiceClientOptions,
    ) -> Result<Self> {
        Self::new(connection_string.parse()?, options)
    }

    /// A client from a parsed connection string.
    ///
    /// # Errors
    /// As [`ServiceClient::from_connection_string`].
    pub fn new(connection: ServiceConnectionString, options: ServiceClientOptions) -> Result<Self> {
        let base = match &options.endpoint {
            Some(u) => u.clone(),
            None => {
                url::Url::parse(&format!("https://{}/", connection.host_name)).map_err(|e| {
                    Error::new(ErrorKind::Configuration, "HostName is not a valid host")
                        .with_source(e)
                })?
            }
        };
        let tls = match &options.tls {
            Some(c) => c.clone(),
            None => crate::tls::client_config(None)?,
        };
        let mut user_agent = concat!("azure-iot-rs-service/", env!("CARGO_PKG_VERSION")).to_owned();
        if let Some(s) = &options.product_info {
            user_agent.push(' ');
            user_agent.push_str(s);
        }
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured((*tls).clone())
            .user_agent(user_agent)
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10))
            // Below the emulator's 60 s idle cut-off (and the hub's load balancer's 4 min), so
            // the client retires an idle connection before the server closes it under a request.
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| {
                Error::new(ErrorKind::Configuration, "cannot build the HTTP client").with_source(e)
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base,
                connection,
                token: Mutex::new(None),
                options,
                amqp: std::sync::OnceLock::new(),
            }),
        })
    }

    /// The hub's host name.
    pub fn host_name(&self) -> &str {
        &self.inner.connection.host_name
    }

    pub(crate) fn operation_timeout(&self) -> Duration {
        self.inner.options.operation_timeout
    }

    /// The AMQP connection's handle; the first call starts its task (it connects on its
    /// first request). Must be called within a tokio runtime.
    pub(crate) fn amqp(&self) -> Result<&crate::amqp::Link> {
        if let Some(link) = self.inner.amqp.get() {
            return Ok(link);
        }
        let endpoint = self.amqp_endpoint()?;
        Ok(self
            .inner
            .amqp
            .get_or_init(|| crate::amqp::Link::spawn(endpoint)))
    }

    fn amqp_endpoint(&self) -> Result<crate::amqp::Endpoint> {
        let c = &self.inner.connection;
        // `HostName` may carry the HTTPS port (the emulator's); AMQP has its own.
        let host = match c.host_name.rsplit_once(':') {
            Some((h, p)) if p.parse::<u16>().is_ok() => h.to_owned(),
            _ => c.host_name.clone(),
        };
        let mut tls = match &self.inner.options.tls {
            Some(t) => (**t).clone(),
            None => (*crate::tls::client_config(None)?).clone(),
        };
        tls.alpn_protocols.clear();
        let (sr, key_name, key) = (c.host_name.clone(), c.key_name.clone(), c.key.clone());
        let ttl = self.inner.options.sas_ttl;
        let token: crate::amqp::TokenSource = Arc::new(move || {
            let now = iot_common::sas::unix_seconds(SystemTime::now());
            let t =
                SasToken::for_service(&sr, &key_name, &key, now + ttl.as_secs()).map_err(|e| {
                    Error::new(ErrorKind::Configuration, "cannot sign a SAS token").with_source(e)
                })?;
            Ok((t.as_secret().clone(), ttl))
        });
        Ok(crate::amqp::Endpoint {
            audience: host.clone(),
            host,
            port: self.inner.options.amqp_port,
            tls: Arc::new(tls),
            token,
            timeout: self.inner.options.operation_timeout,
        })
    }

    /// The `Authorization` header: a cached policy token, re-signed shortly before expiry.
    fn authorization(&self) -> Result<HeaderValue> {
        let ttl = self.inner.options.sas_ttl;
        let now = iot_common::sas::unix_seconds(SystemTime::now());
        let mut cached = self
            .inner
            .token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let token = match &*cached {
            Some((t, renew_at)) if now < *renew_at => t.clone(),
            _ => {
                let c = &self.inner.connection;
                let expiry = now + ttl.as_secs();
                let t = SasToken::for_service(&c.host_name, &c.key_name, &c.key, expiry).map_err(
                    |e| {
                        Error::new(ErrorKind::Configuration, "cannot sign a SAS token")
                            .with_source(e)
                    },
                )?;
                let t = t.as_secret().clone();
                let renew_at = now + iot_common::sas::renew_after(ttl, Duration::ZERO).as_secs();
                *cached = Some((t.clone(), renew_at));
                t
            }
        };
        let mut v = HeaderValue::from_str(token.expose()).map_err(|_| {
            Error::new(
                ErrorKind::Configuration,
                "the SAS token is not a valid header",
            )
        })?;
        v.set_sensitive(true);
        Ok(v)
    }

    fn url(&self, call: &Call<'_>) -> Result<url::Url> {
        let mut url = self.inner.base.clone();
        {
            let mut segs = url.path_segments_mut().map_err(|()| {
                Error::new(
                    ErrorKind::Configuration,
                    "the endpoint cannot be a base URL",
                )
            })?;
            segs.pop_if_empty();
            segs.extend(call.path.iter().copied());
        }
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("api-version", &self.inner.options.api_version);
            for (k, v) in &call.query {
                q.append_pair(k, v);
            }
        }
        Ok(url)
    }

    /// Sends a call, retrying as its policy allows; a non-2xx answer becomes an [`Error`].
    pub(crate) async fn send(&self, call: Call<'_>) -> Result<Answer> {
        let url = self.url(&call)?;
        let endpoint = format!(
            "{}:{}",
            url.host_str().unwrap_or_default(),
            url.port_or_known_default().unwrap_or(443)
        );
        let retry = self.inner.options.retry;
        let started = tokio::time::Instant::now();
        let mut attempt = 0u32;
        loop {
            // From the thread's generator: `Uuid::new_v4` asks the kernel for randomness, one
            // system call per request.
            let request_id = uuid::Builder::from_random_bytes(rand::random())
                .into_uuid()
                .to_string();
            let mut rb = self
                .inner
                .http
                .request(call.method.clone(), url.clone())
                .header(header::AUTHORIZATION, self.authorization()?)
                .header("Request-Id", &request_id)
                .header(header::ACCEPT, "application/json")
                .timeout(call.timeout.unwrap_or(self.inner.options.operation_timeout));
            for (k, v) in &call.headers {
                rb = rb.header(*k, v);
            }
            if let Some(body) = &call.body {
                rb = rb
                    .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
                    .body(body.clone());
            }
            let (error, retry_after) = match rb.send().await {
                Ok(mut resp) => {
                    let status = resp.status().as_u16();
                    let headers = std::mem::take(resp.headers_mut());
                    let body = read_capped(resp, self.inner.options.max_response_bytes)
                        .await
                        .map_err(|e| e.with_request_id(&request_id))?;
                    if (200..300).contains(&status) {
                        return Ok(Answer { headers, body });
                    }
                    let code = headers
                        .get("iothub-errorcode")
                        .and_then(|v| v.to_str().ok());
                    let e = Error::from_response(status, code, &String::from_utf8_lossy(&body))
                        .with_request_id(&request_id)
                        .with_status_hint(&endpoint);
                    let retryable = call.retry == Retry::Idempotent
                        && iot_common::status::is_retryable_status(status);
                    if !retryable {
                        return Err(e);
                    }
                    let after = headers
                        .get(header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    (e, after)
                }
                Err(e) => {
                    let kind = if e.is_timeout() {
                        ErrorKind::Timeout
                    } else {
                        ErrorKind::Connection
                    };
                    let sendable_again = e.is_connect() || call.retry == Retry::Idempotent;
                    let message = if e.is_timeout() {
                        "the hub did not answer in time"
                    } else {
                        "the hub could not be reached"
                    };
                    let err =
                        Error::transport(kind, message, &endpoint, e).with_request_id(&request_id);
                    if !sendable_again || err.kind() == ErrorKind::Certificate {
                        return Err(err);
                    }
                    (err, None)
                }
            };
            if attempt >= retry.max_retries || started.elapsed() >= retry.max_elapsed {
                return Err(error);
            }
            let delay =
                retry_after.unwrap_or_else(|| retry.backoff.delay(attempt, rand::random::<f64>()));
            tracing::debug!(attempt, delay_ms = delay.as_millis() as u64, status = ?error.status(), "retrying");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }
}

/// Reads an answer's body, refusing it as soon as it passes `max` bytes (announced in
/// `Content-Length` or streamed), so neither a huge nor an endless body is buffered.
async fn read_capped(mut resp: reqwest::Response, max: usize) -> Result<bytes::Bytes> {
    let too_large = || {
        Error::new(
            ErrorKind::ResponseTooLarge,
            format!("the answer's body is larger than the client's limit of {max} bytes"),
        )
    };
    if resp
        .content_length()
        .is_some_and(|n| usize::try_from(n).map_or(true, |n| n > max))
    {
        return Err(too_large());
    }
    let cut_off = |e: reqwest::Error| {
        Error::new(ErrorKind::Connection, "the answer was cut off").with_source(e)
    };
    // Most answers arrive in one chunk: keep it as it is instead of copying it.
    let first = match resp.chunk().await {
        Ok(Some(chunk)) if chunk.len() > max => return Err(too_large()),
        Ok(Some(chunk)) => chunk,
        Ok(None) => return Ok(bytes::Bytes::new()),
        Err(e) => return Err(cut_off(e)),
    };
    let mut body = match resp.chunk().await {
        Ok(None) => return Ok(first),
        Ok(Some(next)) => {
            let mut body = bytes::BytesMut::from(first);
            if body.len() + next.len() > max {
                return Err(too_large());
            }
            body.extend_from_slice(&next);
            body
        }
        Err(e) => return Err(cut_off(e)),
    };
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > max {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body.freeze()),
            Err(e) => return Err(cut_off(e)),
        }
    }
}
