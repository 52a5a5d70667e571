//! X.509 device authentication over real TLS sockets: devices registered through the REST API
//! as `selfSigned` (SHA-1 or SHA-256 thumbprints) or `certificateAuthority` connect with a
//! client certificate and no password (CONNACK 0, then telemetry and twin work); a wrong,
//! foreign or untrusted certificate gets CONNACK 5; SAS devices are unaffected.

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

const API: &str = "api-version=2021-04-12";
/// Bound on every wait for the emulator; reaching it fails the test instead of hanging it.
const WAIT: Duration = Duration::from_secs(20);
/// Bound on the events read while looking for one.
const EVENTS: usize = 50;

/// A certificate and its private key, as a device holds them.
struct Credential {
    chain: Vec<CertificateDer<'static>>,
    key: Vec<u8>,
}

impl Credential {
    fn leaf(&self) -> &CertificateDer<'static> {
        &self.chain[0]
    }
}

/// A device CA (rcgen) that signs leaves.
struct DeviceCa {
    pem: String,
    der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

fn device_ca(name: &str) -> DeviceCa {
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

fn leaf_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params
}

/// A leaf with subject CN `cn`, signed by `ca`; the chain sent holds the CA too, as the
/// official SDKs send a leaf file that includes its chain.
fn ca_signed(cn: &str, ca: &DeviceCa) -> Credential {
    let key = KeyPair::generate().unwrap();
    let cert = leaf_params(cn).signed_by(&key, &ca.issuer).unwrap();
    Credential {
        chain: vec![cert.der().clone(), ca.der.clone()],
        key: key.serialize_der(),
    }
}

fn self_signed(cn: &str) -> Credential {
    let key = KeyPair::generate().unwrap();
    let cert = leaf_params(cn).self_signed(&key).unwrap();
    Credential {
        chain: vec![cert.der().clone()],
        key: key.serialize_der(),
    }
}

fn roots(emu: &RunningEmulator) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(emu.ca_pem().as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    roots
}

fn client_config(emu: &RunningEmulator, cred: Option<&Credential>) -> Arc<rustls::ClientConfig> {
    tls_config(emu, cred, b"mqtt")
}

/// A client TLS configuration trusting the emulator, with `alpn`, and `cred` when given.
fn tls_config(
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

fn far() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600
}

/// An MQTT device over TLS to the emulator: a client certificate and no password, or a SAS
/// password and no certificate.
fn device(
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
fn ws_device(
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
async fn connack(ev: &mut EventLoop) -> ConnectReturnCode {
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
async fn next_publish(ev: &mut EventLoop) -> rumqttc::Publish {
    for _ in 0..EVENTS {
        let event = tokio::time::timeout(WAIT, ev.poll()).await.unwrap();
        if let Event::Incoming(Packet::Publish(p)) = event.unwrap() {
            return p;
        }
    }
    panic!("no publish within {EVENTS} events");
}

/// Connects, sends one telemetry message and reads its twin: CONNACK 0 and both work.
async fn connects_and_works(emu: &RunningEmulator, device_id: &str, cred: &Credential) {
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

async fn refused(emu: &RunningEmulator, device_id: &str, cred: Option<&Credential>) {
    let (_client, mut ev) = device(emu, device_id, cred, "");
    assert_eq!(connack(&mut ev).await, ConnectReturnCode::NotAuthorized);
}

/// The service side: REST with the owner policy over the emulator's CA.
struct Rest {
    http: reqwest::Client,
    base: String,
    auth: String,
}

impl Rest {
    fn new(emu: &RunningEmulator) -> Self {
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

    async fn put_device(&self, id: &str, authentication: Value) -> (u16, Value) {
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

    async fn get(&self, path: &str) -> Value {
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

fn self_signed_auth(primary: &str, secondary: Option<&str>) -> Value {
    json!({"type": "selfSigned", "x509Thumbprint": {
        "primaryThumbprint": primary, "secondaryThumbprint": secondary }})
}

/// Lower case with `:` separators: the hub's parsing is forgiving, the emulator's too.
fn colon_lower(t: &Thumbprint) -> String {
    let s = t.as_str().to_lowercase();
    s.as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":")
}

async fn emulator(ca: &DeviceCa) -> RunningEmulator {
    Emulator::builder()
        .device_ca_pem(ca.pem.clone())
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn self_signed_devices_connect_by_sha1_or_sha256_thumbprint() {
    let ca = device_ca("Test Device CA");
    let emu = emulator(&ca).await;
    let rest = Rest::new(&emu);
    let by_sha1 = self_signed("any-subject");
    let by_sha256 = self_signed("another-subject");
    let sha1 = Thumbprint::sha1(by_sha1.leaf());
    let sha256 = Thumbprint::sha256(by_sha256.leaf());

    let (status, body) = rest
        .put_device("ss-sha1", self_signed_auth(&colon_lower(&sha1), None))
        .await;
    assert_eq!(status, 200, "{body}");
    // Returned as the hub does: upper-case thumbprint, no keys.
    assert_eq!(body["authentication"]["type"], "selfSigned");
    assert_eq!(
        body["authentication"]["x509Thumbprint"]["primaryThumbprint"],
        sha1.as_str()
    );
    assert_eq!(
        body["authentication"]["x509Thumbprint"]["secondaryThumbprint"],
        Value::Null
    );
    assert_eq!(
        body["authentication"]["symmetricKey"]["primaryKey"],
        Value::Null
    );
    // The SHA-256 thumbprint in the secondary slot, an unrelated one in the primary.
    let unrelated = Thumbprint::sha256(b"unrelated");
    let (status, body) = rest
        .put_device(
            "ss-sha256",
            self_signed_auth(unrelated.as_str(), Some(&sha256.as_str().to_lowercase())),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let got = rest.get("/devices/ss-sha256").await;
    assert_eq!(
        got["authentication"]["x509Thumbprint"]["secondaryThumbprint"],
        sha256.as_str()
    );
    let twin = rest.get("/twins/ss-sha256").await;
    assert_eq!(twin["authenticationType"], "selfSigned");

    connects_and_works(&emu, "ss-sha1", &by_sha1).await;
    connects_and_works(&emu, "ss-sha256", &by_sha256).await;

    // Another device's certificate, a fresh one, a CA-signed one: all refused.
    refused(&emu, "ss-sha1", Some(&by_sha256)).await;
    refused(&emu, "ss-sha1", Some(&self_signed("ss-sha1"))).await;
    refused(&emu, "ss-sha1", Some(&ca_signed("ss-sha1", &ca))).await;
    // No certificate and no password.
    refused(&emu, "ss-sha1", None).await;
    emu.shutdown().await.unwrap();
}

#[tokio::test]
async fn ca_signed_devices_need_a_trusted_chain_and_their_id_as_cn() {
    let ca = device_ca("Test Device CA");
    let emu = emulator(&ca).await;
    let rest = Rest::new(&emu);
    for id in ["ca-dev-1", "ca-dev-2"] {
        let (status, body) = rest
            .put_device(id, json!({"type": "certificateAuthority"}))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["authentication"]["type"], "certificateAuthority");
        assert_eq!(
            body["authentication"]["x509Thumbprint"]["primaryThumbprint"],
            Value::Null
        );
    }
    connects_and_works(&emu, "ca-dev-1", &ca_signed("ca-dev-1", &ca)).await;
    // Only the leaf, without the CA in the chain: the CA is known to the emulator.
    let leaf_only = ca_signed("ca-dev-2", &ca);
    let leaf_only = Credential {
        chain: vec![leaf_only.leaf().clone()],
        key: leaf_only.key,
    };
    connects_and_works(&emu, "ca-dev-2", &leaf_only).await;

    // Another device's certificate (CN = ca-dev-1) for ca-dev-2.
    refused(&emu, "ca-dev-2", Some(&ca_signed("ca-dev-1", &ca))).await;
    // Right CN, unknown CA.
    let stranger = device_ca("Unknown CA");
    refused(&emu, "ca-dev-1", Some(&ca_signed("ca-dev-1", &stranger))).await;
    // Right CN, self-signed.
    refused(&emu, "ca-dev-1", Some(&self_signed("ca-dev-1"))).await;
    refused(&emu, "ca-dev-1", None).await;
    emu.shutdown().await.unwrap();
}

#[tokio::test]
async fn sas_devices_are_unaffected_by_client_certificates() {
    let ca = device_ca("Test Device CA");
    let emu = emulator(&ca).await;
    let id = dev_keys::DEV_DEVICE_ID;
    let token = SasToken::for_device(
        "localhost",
        id,
        &Secret::new(dev_keys::DEV_DEVICE_PRIMARY_KEY),
        far(),
    )
    .unwrap();
    // A SAS password, no certificate: connects.
    let (client, mut ev) = device(&emu, id, None, token.as_secret().expose());
    assert_eq!(connack(&mut ev).await, ConnectReturnCode::Success);
    client.disconnect().await.unwrap();
    // A SAS password and a certificate the device is not registered with: the password decides.
    let cred = ca_signed(id, &ca);
    let (client, mut ev) = device(&emu, id, Some(&cred), token.as_secret().expose());
    assert_eq!(connack(&mut ev).await, ConnectReturnCode::Success);
    client.disconnect().await.unwrap();
    // A certificate that chains to a trusted CA with CN = device id, but no password: a SAS
    // device still needs one.
    refused(&emu, id, Some(&cred)).await;
    refused(&emu, id, None).await;
    emu.shutdown().await.unwrap();
}

#[tokio::test]
async fn registry_refuses_malformed_x509_authentication() {
    let ca = device_ca("Test Device CA");
    let emu = emulator(&ca).await;
    let rest = Rest::new(&emu);
    for (id, auth) in [
        ("bad-1", self_signed_auth("not-hex", None)),
        ("bad-2", self_signed_auth("ABCD", None)),
        ("bad-3", json!({"type": "selfSigned"})),
        ("bad-4", json!({"type": "kerberos"})),
    ] {
        let (status, body) = rest.put_device(id, auth).await;
        assert_eq!(status, 400, "{id}: {body}");
    }
    emu.shutdown().await.unwrap();
}

#[tokio::test]
async fn x509_devices_connect_over_websockets_too() {
    let ca = device_ca("Test Device CA");
    let emu = emulator(&ca).await;
    let rest = Rest::new(&emu);
    let own = self_signed("ws-dev");
    let sha256 = Thumbprint::sha256(own.leaf());
    let (status, _) = rest
        .put_device("ws-ss", self_signed_auth(sha256.as_str(), None))
        .await;
    assert_eq!(status, 200);
    let (status, _) = rest
        .put_device("ws-ca", json!({"type": "certificateAuthority"}))
        .await;
    assert_eq!(status, 200);

    let (client, mut ev) = ws_device(&emu, "ws-ss", &own);
    assert_eq!(connack(&mut ev).await, ConnectReturnCode::Success);
    client
        .publish(
            "devices/ws-ss/messages/events/",
            QoS::AtLeastOnce,
            false,
            "over ws",
        )
        .await
        .unwrap();
    for _ in 0..EVENTS {
        let event = tokio::time::timeout(WAIT, ev.poll())
            .await
            .unwrap()
            .unwrap();
        if matches!(event, Event::Incoming(Packet::PubAck(_))) {
            break;
        }
    }
    assert_eq!(emu.hub().telemetry(Some("ws-ss")).len(), 1);
    client.disconnect().await.unwrap();

    let (client, mut ev) = ws_device(&emu, "ws-ca", &ca_signed("ws-ca", &ca));
    assert_eq!(connack(&mut ev).await, ConnectReturnCode::Success);
    client.disconnect().await.unwrap();

    let (_client, mut ev) = ws_device(&emu, "ws-ss", &self_signed("ws-dev"));
    assert_eq!(connack(&mut ev).await, ConnectReturnCode::NotAuthorized);
    let (_client, mut ev) = ws_device(&emu, "ws-ca", &ca_signed("ws-other", &ca));
    assert_eq!(connack(&mut ev).await, ConnectReturnCode::NotAuthorized);
    emu.shutdown().await.unwrap();
}

/// A scratch directory removed at the end of the test.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
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

#[tokio::test]
async fn device_cas_come_from_a_file_and_from_the_seed() {
    let dir = TempDir::new("seed");
    let (by_file, by_seed_path, by_seed_pem) = (
        device_ca("CA in a file"),
        device_ca("CA named by the seed"),
        device_ca("CA inline in the seed"),
    );
    std::fs::write(dir.0.join("file-ca.pem"), &by_file.pem).unwrap();
    std::fs::create_dir_all(dir.0.join("certs")).unwrap();
    std::fs::write(dir.0.join("certs/seed-ca.pem"), &by_seed_path.pem).unwrap();
    let seed = dir.0.join("seed.json");
    std::fs::write(
        &seed,
        json!({"devices": [{"deviceId": "seeded"}],
               "deviceCAs": ["certs/seed-ca.pem", by_seed_pem.pem]})
        .to_string(),
    )
    .unwrap();
    let emu = Emulator::builder()
        .device_ca_file(dir.0.join("file-ca.pem"))
        .seed_file(&seed)
        .start()
        .await
        .unwrap();
    let rest = Rest::new(&emu);
    let (status, _) = rest
        .put_device("ca-any", json!({"type": "certificateAuthority"}))
        .await;
    assert_eq!(status, 200);
    for ca in [&by_file, &by_seed_path, &by_seed_pem] {
        let (client, mut ev) = device(&emu, "ca-any", Some(&ca_signed("ca-any", ca)), "");
        assert_eq!(connack(&mut ev).await, ConnectReturnCode::Success);
        client.disconnect().await.unwrap();
    }
    refused(
        &emu,
        "ca-any",
        Some(&ca_signed("ca-any", &device_ca("other"))),
    )
    .await;
    emu.shutdown().await.unwrap();

    // A CA file that is not there, or holds no certificate: start fails and names it.
    let missing = dir.0.join("missing.pem");
    let e = Emulator::builder()
        .device_ca_file(&missing)
        .start()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("missing.pem"), "{e}");
    let e = Emulator::builder()
        .device_ca_pem("not a certificate")
        .start()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("device CA"), "{e}");
}

#[test]
fn the_cli_flag_reads_device_ca_files() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_iot-hub-emulator"))
        .args([
            "--mqtt-port",
            "0",
            "--https-port",
            "0",
            "--device-ca",
            "/nonexistent/device-ca.pem",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("device CA /nonexistent/device-ca.pem"),
        "{stderr}"
    );
}
