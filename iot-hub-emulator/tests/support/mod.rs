//! Helpers shared by the X.509 tests: certificates (rcgen), TLS client configurations, MQTT
//! devices over TLS and WebSockets, and the registry REST API.

#![allow(dead_code)] // each test binary uses a different subset
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use iot_common::{SasToken, Secret, Thumbprint};
use iot_hub_emulator::{Emulator, RunningEmulator, dev_keys};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Packet, QoS,
    TlsConfiguration, Transport,
};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

pub const API: &str = "api-version=2021-04-12";
/// Bound on every wait for the emulator; reaching it fails the test instead of hanging it.
pub const WAIT: Duration = Duration::from_secs(20);
/// Bound on the events read while looking for one.
pub const EVENTS: usize = 50;

/// A certificate and its private key, as a device holds them.
pub struct Credential {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: Vec<u8>,
}

impl Credential {
    pub fn leaf(&self) -> &CertificateDer<'static> {
        &self.chain[0]
    }
}

/// A device CA (rcgen) that signs leaves.
pub struct DeviceCa {
    pub pem: String,
    pub der: CertificateDer<'static>,
    pub issuer: Issuer<'static, KeyPair>,
}

pub fn device_ca(name: &str) -> DeviceCa {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).unwrap();
    DeviceCa {
        pem: cert.pem(),
        der: cert.der().clone(),
        issuer: Issuer::new(params, key),
    }
}

pub fn leaf_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params
}

/// A leaf with subject CN `cn`, signed by `ca`; the chain sent holds the CA too, as the
/// official SDKs send a leaf file that includes its chain.
pub fn ca_signed(cn: &str, ca: &DeviceCa) -> Credential {
    let key = KeyPair::generate().unwrap();
    let cert = leaf_params(cn).signed_by(&key, &ca.issuer).unwrap();
    Credential {
        chain: vec![cert.der().clone(), ca.der.clone()],
        key: key.serialize_der(),
    }
}

pub fn self_signed(cn: &str) -> Credential {
    let key = KeyPair::generate().unwrap();
    let cert = leaf_params(cn).self_signed(&key).unwrap();
    Credential {
        chain: vec![cert.der().clone()],
        key: key.serialize_der(),
    }
}

pub fn roots(emu: &RunningEmulator) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(emu.ca_pem().as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    roots
}

pub fn client_config(
    emu: &RunningEmulator,
    cred: Option<&Credential>,
) -> Arc<rustls::ClientConfig> {
    tls_config(emu, cred, b"mqtt")
}

/// A client TLS configuration trusting the emulator, with `alpn`, and `cred` when given.
pub fn tls_config(
    emu: &RunningEmulator,
    cred: Option<&Credential>,
    alpn: &[u8],
) -> Arc<rustls::ClientConfig> {
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots(emu));
    let mut config = match cred {
        Some(c) => builder
            .with_client_auth_cert(
                c.chain.clone(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(c.key.clone())),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

pub fn far() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600
}

/// An MQTT device over TLS to the emulator: a client certificate and no password, or a SAS
/// password and no certificate.
pub fn device(
    emu: &RunningEmulator,
    device_id: &str,
    cred: Option<&Credential>,
    password: &str,
) -> (AsyncClient, EventLoop) {
    let mut o = MqttOptions::new(device_id, "localhost", emu.mqtt_addr().port());
    o.set_keep_alive(Duration::from_secs(60));
    o.set_credentials(format!("localhost/{device_id}/?{API}"), password);
    o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        client_config(emu, cred),
    )));
    AsyncClient::new(o, 16)
}

/// The same device over MQTT over WebSockets on the HTTPS port.
pub fn ws_device(
    emu: &RunningEmulator,
    device_id: &str,
    cred: &Credential,
) -> (AsyncClient, EventLoop) {
    let port = emu.https_addr().port();
    let url = format!("wss://localhost:{port}/$iothub/websocket");
    let mut o = MqttOptions::new(device_id, url, port);
    o.set_keep_alive(Duration::from_secs(60));
    o.set_credentials(format!("localhost/{device_id}/?{API}"), "");
    o.set_transport(Transport::wss_with_config(TlsConfiguration::Rustls(
        tls_config(emu, Some(cred), b"http/1.1"),
    )));
    AsyncClient::new(o, 16)
}

/// The CONNACK code of the connection's first exchange.
pub async fn connack(ev: &mut EventLoop) -> ConnectReturnCode {
    for _ in 0..EVENTS {
        match tokio::time::timeout(WAIT, ev.poll()).await.unwrap() {
            Ok(Event::Incoming(Packet::ConnAck(a))) => return a.code,
            Ok(_) => {}
            Err(ConnectionError::ConnectionRefused(code)) => return code,
            Err(e) => panic!("connection failed before CONNACK: {e:?}"),
        }
    }
    panic!("no CONNACK within {EVENTS} events");
}

/// The next publish the device receives.
pub async fn next_publish(ev: &mut EventLoop) -> rumqttc::Publish {
    for _ in 0..EVENTS {
        let event = tokio::time::timeout(WAIT, ev.poll()).await.unwrap();
        if let Event::Incoming(Packet::Publish(p)) = event.unwrap() {
            return p;
        }
    }
    panic!("no publish within {EVENTS} events");
}

/// Connects, sends one telemetry message and reads its twin: CONNACK 0 and both work.
pub async fn connects_and_works(emu: &RunningEmulator, device_id: &str, cred: &Credential) {
    let (client, mut ev) = device(emu, device_id, Some(cred), "");
    assert_eq!(connack(&mut ev).await, ConnectReturnCode::Success);
    client
        .subscribe("$iothub/twin/res/#", QoS::AtMostOnce)
        .await
        .unwrap();
    client
        .publish(
            format!("devices/{device_id}/messages/events/"),
            QoS::AtLeastOnce,
            false,
            format!("hello from {device_id}"),
        )
        .await
        .unwrap();
    client
        .publish("$iothub/twin/GET/?$rid=7", QoS::AtMostOnce, false, "")
        .await
        .unwrap();
    let answer = next_publish(&mut ev).await;
    assert_eq!(answer.topic, "$iothub/twin/res/200/?$rid=7");
    let twin: Value = serde_json::from_slice(&answer.payload).unwrap();
    assert!(twin["desired"]["$version"].is_number(), "{twin}");
    let telemetry = emu.hub().telemetry(Some(device_id));
    assert_eq!(telemetry.len(), 1);
    assert_eq!(
        telemetry[0].body.as_ref(),
        format!("hello from {device_id}").as_bytes()
    );
    client.disconnect().await.unwrap();
}

pub async fn refused(emu: &RunningEmulator, device_id: &str, cred: Option<&Credential>) {
    let (_client, mut ev) = device(emu, device_id, cred, "");
    assert_eq!(connack(&mut ev).await, ConnectReturnCode::NotAuthorized);
}

/// The service side: REST with the owner policy over the emulator's CA.
pub struct Rest {
    pub http: reqwest::Client,
    pub base: String,
    pub auth: String,
}

impl Rest {
    pub fn new(emu: &RunningEmulator) -> Self {
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(emu))
        .with_no_client_auth();
        let auth = SasToken::for_service(
            "localhost",
            "iothubowner",
            &Secret::new(dev_keys::DEV_POLICY_PRIMARY_KEY),
            far(),
        )
        .unwrap();
        Self {
            http: reqwest::Client::builder()
                .tls_backend_preconfigured(tls)
                .timeout(WAIT)
                .build()
                .unwrap(),
            base: emu.https_url(),
            auth: auth.as_secret().expose().to_owned(),
        }
    }

    pub async fn put_device(&self, id: &str, authentication: Value) -> (u16, Value) {
        let r = self
            .http
            .put(format!("{}/devices/{id}?{API}", self.base))
            .header("Authorization", &self.auth)
            .json(&json!({ "deviceId": id, "authentication": authentication }))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> Value {
        let r = self
            .http
            .get(format!("{}{path}?{API}", self.base))
            .header("Authorization", &self.auth)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        r.json().await.unwrap()
    }
}

pub fn self_signed_auth(primary: &str, secondary: Option<&str>) -> Value {
    json!({"type": "selfSigned", "x509Thumbprint": {
        "primaryThumbprint": primary, "secondaryThumbprint": secondary }})
}

/// Lower case with `:` separators: the hub's parsing is forgiving, the emulator's too.
pub fn colon_lower(t: &Thumbprint) -> String {
    let s = t.as_str().to_lowercase();
    s.as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":")
}

pub async fn emulator(ca: &DeviceCa) -> RunningEmulator {
    Emulator::builder()
        .device_ca_pem(ca.pem.clone())
        .start()
        .await
        .unwrap()
}

/// A scratch directory removed at the end of the test.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let d = std::env::temp_dir().join(format!("iot-emu-x509-{name}-{}", std::process::id()));
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
