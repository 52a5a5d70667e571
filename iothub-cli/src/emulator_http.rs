//! The emulator-only requests (`/emulator/…`): C2D sending and the telemetry buffer. The SDK
//! has no call for them because the real hub has no such endpoints (it takes C2D over AMQP and
//! delivers telemetry through its Event Hub-compatible endpoint).

use crate::error::CliError;
use crate::hub::Hub;
use iot_common::{HubErrorBody, SasToken};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const CONTINUATION: &str = "x-ms-continuation";
/// Each emulator request gets this long; the emulator answers these from memory.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on one answer's body: a telemetry page is about 4 MiB at most.
const MAX_BODY: usize = 16 * 1024 * 1024;
/// Lifetime of the token signed for each request.
const TOKEN_TTL_SECS: u64 = 600;

/// A client for the emulator's own endpoints.
pub struct EmulatorHttp {
    http: reqwest::Client,
    base: url::Url,
    authority: String,
    connection: iot_service::ServiceConnectionString,
}

fn tls(ca_pem: Option<&str>) -> Result<rustls::ClientConfig, CliError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(pem) = ca_pem {
        for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let c = c.map_err(|e| CliError::Usage(format!("the CA file is not PEM: {e}")))?;
            roots
                .add(c)
                .map_err(|e| CliError::Usage(format!("the CA certificate is invalid: {e}")))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CliError::Usage(format!("TLS setup failed: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The innermost cause of a transport failure: that is where "connection refused" or
/// "UnknownIssuer" is.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

impl EmulatorHttp {
    /// A client signed with the connection string's policy.
    pub fn new(hub: &Hub) -> Result<Self, CliError> {
        let c = &hub.connection;
        let base = url::Url::parse(&format!("https://{}/", c.host_name))
            .map_err(|e| CliError::Usage(format!("HostName is not a valid host: {e}")))?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls(hub.ca_pem.as_deref())?)
            .connect_timeout(Duration::from_secs(10))
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| CliError::Usage(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            authority: format!(
                "{}:{}",
                base.host_str().unwrap_or_default(),
                base.port_or_known_default().unwrap_or(443)
            ),
            base,
            connection: c.clone(),
        })
    }

    /// A fresh token per request: signing is one HMAC, and `monitor` may run for hours.
    fn token(&self) -> Result<String, CliError> {
        let c = &self.connection;
        let expiry = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            + TOKEN_TTL_SECS;
        let token = SasToken::for_service(&c.host_name, &c.key_name, &c.key, expiry)
            .map_err(|e| CliError::Usage(format!("cannot sign a SAS token: {e}")))?;
        Ok(token.as_secret().expose().to_owned())
    }

    /// Whether the hub is the emulator (its `/emulator/health` answers `{"status":"ok"}`).
    ///
    /// # Cancel safety
    /// Cancel-safe: a read. Bounded by the 30 s request timeout.
    pub async fn is_emulator(&self) -> Result<bool, CliError> {
        let url = self.url(&["emulator", "health"]);
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        if !resp.status().is_success() {
            return Ok(false);
        }
        let body = self.body(resp).await?;
        let v: Option<Value> = serde_json::from_slice(&body).ok();
        Ok(v.and_then(|v| v.get("status").cloned()) == Some(Value::from("ok")))
    }

    /// `POST /emulator/devices/{id}/messages`: queues a C2D message; the answer's JSON.
    ///
    /// # Cancel safety
    /// Dropped after sending, the message may or may not be queued. Bounded by the 30 s
    /// request timeout.
    pub async fn send_c2d(
        &self,
        device_id: &str,
        body: Vec<u8>,
        query: &[(String, String)],
    ) -> Result<Value, CliError> {
        let mut url = self.url(&["emulator", "devices", device_id, "messages"]);
        url.query_pairs_mut().extend_pairs(query);
        let req = self.http.post(url).body(body);
        let (body, _) = self.send(req).await?;
        serde_json::from_slice(&body)
            .map_err(|e| CliError::Unexpected(format!("the hub's answer is not JSON: {e}")))
    }

    /// One page of `GET /emulator/telemetry`: the records and the next page's start, if the
    /// buffer holds more.
    ///
    /// # Cancel safety
    /// Cancel-safe: a read; the caller's position (`from`) is unchanged until a page arrives.
    /// Bounded by the 30 s request timeout.
    pub async fn telemetry_page(
        &self,
        device_id: Option<&str>,
        from: u64,
        top: u32,
    ) -> Result<(Vec<Value>, Option<u64>), CliError> {
        let mut url = self.url(&["emulator", "telemetry"]);
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("top", &top.to_string());
            if let Some(d) = device_id {
                q.append_pair("deviceId", d);
            }
        }
        let req = self.http.get(url).header(CONTINUATION, from.to_string());
        let (body, next) = self.send(req).await?;
        let records: Vec<Value> = serde_json::from_slice(&body).map_err(|e| {
            CliError::Unexpected(format!("the telemetry page is not a JSON array: {e}"))
        })?;
        Ok((records, next))
    }

    fn url(&self, segments: &[&str]) -> url::Url {
        let mut url = self.base.clone();
        if let Ok(mut s) = url.path_segments_mut() {
            s.pop_if_empty().extend(segments);
        }
        url
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<(Vec<u8>, Option<u64>), CliError> {
        let resp = req
            .header(reqwest::header::AUTHORIZATION, self.token()?)
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        let status = resp.status().as_u16();
        let code = resp
            .headers()
            .get("iothub-errorcode")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let next = resp
            .headers()
            .get(CONTINUATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let body = self.body(resp).await?;
        if !(200..300).contains(&status) {
            let hub = HubErrorBody::parse(&String::from_utf8_lossy(&body), code.as_deref());
            return Err(CliError::Answer { status, hub });
        }
        Ok((body, next))
    }

    async fn body(&self, mut resp: reqwest::Response) -> Result<Vec<u8>, CliError> {
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.transport(e))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(CliError::Unexpected(format!(
                    "the hub's answer is larger than {MAX_BODY} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn transport(&self, e: reqwest::Error) -> CliError {
        let what = if e.is_timeout() {
            "the hub did not answer in time"
        } else {
            "the hub could not be reached"
        };
        CliError::Transport(format!("{what} at {}: {}", self.authority, root_cause(&e)))
    }
}
