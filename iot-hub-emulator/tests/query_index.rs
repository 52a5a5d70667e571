//! `POST /devices/query` over a real socket: queries the planner answers from its lookups
//! (device ids, module ids, tag values) return the same rows as the same queries forced to
//! scan, before and after tags change and devices are deleted. A clause is forced to scan by
//! `OR 1 = 0`: the planner cannot plan a term that reads no path, and the term is false, so
//! the selection is unchanged.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use iot_common::{SasToken, Secret};
use iot_hub_emulator::{Emulator, RunningEmulator, dev_keys};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const API: &str = "api-version=2021-04-12";

struct Rest {
    http: reqwest::Client,
    base: String,
    auth: String,
}

impl Rest {
    fn new(hub: &RunningEmulator) -> Self {
        use rustls_pki_types::pem::PemObject as _;
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pki_types::CertificateDer::pem_slice_iter(hub.ca_pem().as_bytes()) {
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
            .resolve(
                "localhost",
                std::net::SocketAddr::from(([127, 0, 0, 1], hub.https_addr().port())),
            )
            .build()
            .unwrap();
        let expiry = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3600;
        let auth = SasToken::for_service(
            hub.host_name(),
            "iothubowner",
            &Secret::new(dev_keys::DEV_POLICY_PRIMARY_KEY),
            expiry,
        )
        .unwrap()
        .as_secret()
        .expose()
        .to_owned();
        Self {
            http,
            base: format!("https://localhost:{}", hub.https_addr().port()),
            auth,
        }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let r = self
            .http
            .request(method.clone(), format!("{}{path}?{API}", self.base))
            .header("Authorization", &self.auth)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body = r.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{method} {path}: {status} {body}");
        body
    }

    /// The ids (`device` or `device/module`) of every row of a query, all pages.
    async fn ids(&self, sql: &str) -> Vec<String> {
        let rows = self
            .send(
                reqwest::Method::POST,
                "/devices/query",
                json!({ "query": sql }),
            )
            .await;
        rows.as_array()
            .unwrap()
            .iter()
            .map(|r| match r.get("moduleId").and_then(Value::as_str) {
                Some(m) => format!("{}/{m}", r["deviceId"].as_str().unwrap()),
                None => r["deviceId"].as_str().unwrap().to_owned(),
            })
            .collect()
    }

    /// Runs `SELECT * FROM <from> WHERE <clause>` indexed and forced to scan; both must agree.
    async fn both_ways(&self, from: &str, clause: &str) -> Vec<String> {
        let indexed = self
            .ids(&format!("SELECT * FROM {from} WHERE {clause}"))
            .await;
        let scanned = self
            .ids(&format!("SELECT * FROM {from} WHERE ({clause}) OR 1 = 0"))
            .await;
        assert_eq!(indexed, scanned, "{from} WHERE {clause}");
        indexed
    }
}

#[tokio::test]
async fn indexed_queries_answer_like_scans_over_rest() {
    let hub = Emulator::builder().console(false).start().await.unwrap();
    let rest = Rest::new(&hub);
    use reqwest::Method;
    for i in 0..8 {
        let id = format!("q-{i}");
        rest.send(
            Method::PUT,
            &format!("/devices/{id}"),
            json!({ "deviceId": id }),
        )
        .await;
        let tags = json!({"tags": {"site": {"name": if i < 4 { "north" } else { "south" }}, "rank": i % 3, "hot": i % 2 == 0}});
        rest.send(Method::PATCH, &format!("/twins/{id}"), tags)
            .await;
    }
    for m in ["edge", "agent"] {
        rest.send(
            Method::PUT,
            &format!("/devices/q-1/modules/{m}"),
            json!({ "deviceId": "q-1", "moduleId": m }),
        )
        .await;
        rest.send(
            Method::PATCH,
            &format!("/twins/q-1/modules/{m}"),
            json!({"tags": {"kind": m}}),
        )
        .await;
    }

    assert_eq!(rest.both_ways("devices", "deviceId = 'q-3'").await, ["q-3"]);
    assert_eq!(
        rest.both_ways("devices", "deviceId IN ['q-5', 'q-2', 'nobody']")
            .await,
        ["q-2", "q-5"]
    );
    assert_eq!(
        rest.both_ways("devices", "tags.site.name = 'north' AND tags.rank = 1")
            .await,
        ["q-1"]
    );
    assert_eq!(
        rest.both_ways("devices", "tags.hot = true OR deviceId = 'q-1'")
            .await,
        ["q-0", "q-1", "q-2", "q-4", "q-6"]
    );
    assert_eq!(
        rest.both_ways("devices.modules", "moduleId = 'edge'").await,
        ["q-1/edge"]
    );
    assert_eq!(
        rest.both_ways(
            "devices.modules",
            "deviceId = 'q-1' AND tags.kind IN ['agent', 'x']"
        )
        .await,
        ["q-1/agent"]
    );

    // Tags replaced and patched, a device deleted: the index follows.
    rest.send(Method::PUT, "/twins/q-0", json!({"tags": {"rank": 7}}))
        .await;
    rest.send(
        Method::PATCH,
        "/twins/q-5",
        json!({"tags": {"site": {"name": "north"}}}),
    )
    .await;
    let r = rest
        .http
        .delete(format!("{}/devices/q-2?{API}", rest.base))
        .header("Authorization", &rest.auth)
        .header("If-Match", "*")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(
        rest.both_ways("devices", "tags.hot = true").await,
        ["q-4", "q-6"]
    );
    assert_eq!(
        rest.both_ways("devices", "tags.site.name = 'north'").await,
        ["q-1", "q-3", "q-5"]
    );
    assert_eq!(rest.both_ways("devices", "tags.rank = 7.0").await, ["q-0"]);
    assert!(
        rest.both_ways("devices", "deviceId = 'q-2'")
            .await
            .is_empty()
    );
    hub.shutdown().await.unwrap();
}
