//! DPS X.509 attestation over real sockets: enrollments created through the enrollment
//! service API, devices registering over MQTT (and HTTPS) with a client certificate and no
//! SAS token, then connecting to the assigned hub with the same certificate.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use iot_common::{SasToken, Secret, Thumbprint};
use iot_hub_emulator::{Emulator, RunningEmulator, dev_keys};
use rumqttc::{
    AsyncClient, ConnectReturnCode, EventLoop, MqttOptions, QoS, TlsConfiguration, Transport,
};
use serde_json::{Value, json};
use std::time::Duration;
use support::*;

const DPS_API: &str = "api-version=2021-10-01";

/// The enrollment service API with `provisioningserviceowner`.
struct Enrollments {
    rest: Rest,
}

impl Enrollments {
    fn new(emu: &RunningEmulator) -> Self {
        let mut rest = Rest::new(emu);
        rest.auth = SasToken::for_service(
            "localhost",
            "provisioningserviceowner",
            &Secret::new(dev_keys::DEV_POLICY_PRIMARY_KEY),
            far(),
        )
        .unwrap()
        .as_secret()
        .expose()
        .to_owned();
        Self { rest }
    }

    async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .rest
            .http
            .put(format!("{}{path}?{DPS_API}", self.rest.base))
            .header("Authorization", &self.rest.auth)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

fn pem_of(c: &Credential, i: usize) -> String {
    let der = c.chain[i].as_ref();
    let b64 = base64_encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|l| std::str::from_utf8(l).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A DPS device over MQTT: client id and user name from the registration id, no password.
fn dps_device(
    emu: &RunningEmulator,
    rid: &str,
    cred: Option<&Credential>,
) -> (AsyncClient, EventLoop) {
    let mut o = MqttOptions::new(rid, "localhost", emu.mqtt_addr().port());
    o.set_keep_alive(Duration::from_secs(60));
    o.set_credentials(
        format!(
            "{}/registrations/{rid}/api-version=2019-03-31&ClientVersion=test",
            emu.id_scope()
        ),
        "",
    );
    o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        client_config(emu, cred),
    )));
    AsyncClient::new(o, 16)
}

/// Registers over MQTT and polls until the operation is no longer `assigning`; returns the
/// final operation.
async fn register(emu: &RunningEmulator, rid: &str, cred: &Credential) -> Value {
    let (client, mut ev) = dps_device(emu, rid, Some(cred));
    assert_eq!(connack(&mut ev).await, ConnectReturnCode::Success);
    client
        .subscribe("$dps/registrations/res/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    client
        .publish(
            "$dps/registrations/PUT/iotdps-register/?$rid=1",
            QoS::AtLeastOnce,
            false,
            json!({ "registrationId": rid }).to_string(),
        )
        .await
        .unwrap();
    let mut answer = next_publish(&mut ev).await;
    for poll in 2..20 {
        let body: Value = serde_json::from_slice(&answer.payload).unwrap();
        if body["status"] != "assigning" {
            client.disconnect().await.unwrap();
            return body;
        }
        assert!(
            answer.topic.starts_with("$dps/registrations/res/202/"),
            "{}",
            answer.topic
        );
        let op = body["operationId"].as_str().unwrap();
        client
            .publish(
                format!(
                    "$dps/registrations/GET/iotdps-get-operationstatus/?$rid={poll}&operationId={op}"
                ),
                QoS::AtLeastOnce,
                false,
                "",
            )
            .await
            .unwrap();
        answer = next_publish(&mut ev).await;
    }
    panic!("still assigning after 18 polls");
}

async fn start() -> RunningEmulator {
    Emulator::builder()
        .dps_retry_after(Duration::ZERO)
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn individual_x509_enrollment_assigns_a_self_signed_device() {
    let emu = start().await;
    let dps = Enrollments::new(&emu);
    let cred = self_signed("x509-ind-1");
    let (status, body) = dps
        .put(
            "/enrollments/x509-ind-1",
            json!({"registrationId": "x509-ind-1",
                   "attestation": {"type": "x509", "x509": {"clientCertificates": {
                       "primary": {"certificate": pem_of(&cred, 0)}}}},
                   "initialTwin": {"tags": {"floor": 3}}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let op = register(&emu, "x509-ind-1", &cred).await;
    assert_eq!(op["status"], "assigned", "{op}");
    assert_eq!(op["registrationState"]["deviceId"], "x509-ind-1");
    assert_eq!(op["registrationState"]["assignedHub"], "localhost");

    let rest = Rest::new(&emu);
    let device = rest.get("/devices/x509-ind-1").await;
    assert_eq!(device["authentication"]["type"], "selfSigned");
    assert_eq!(
        device["authentication"]["x509Thumbprint"]["primaryThumbprint"],
        Thumbprint::sha256(cred.leaf()).as_str()
    );
    let twin = rest.get("/twins/x509-ind-1").await;
    assert_eq!(twin["tags"]["floor"], 3);
    // The device connects to the assigned hub with the same certificate.
    connects_and_works(&emu, "x509-ind-1", &cred).await;

    // Another certificate with the right CN is not the enrolled one.
    let (_c, mut ev) = dps_device(&emu, "x509-ind-1", Some(&self_signed("x509-ind-1")));
    assert_eq!(connack(&mut ev).await, ConnectReturnCode::NotAuthorized);
    // No certificate and no token.
    let (_c, mut ev) = dps_device(&emu, "x509-ind-1", None);
    assert_eq!(connack(&mut ev).await, ConnectReturnCode::NotAuthorized);
    emu.shutdown().await.unwrap();
}

#[tokio::test]
async fn group_x509_enrollment_assigns_ca_devices_the_hub_then_trusts() {
    let emu = start().await;
    let dps = Enrollments::new(&emu);
    let ca = device_ca("Group signing CA");
    let (status, body) = dps
        .put(
            "/enrollmentGroups/grp-x509",
            json!({"enrollmentGroupId": "grp-x509",
                   "attestation": {"type": "x509", "x509": {"signingCertificates": {
                       "primary": {"certificate": ca.pem}}}}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let cred = ca_signed("grp-dev-1", &ca);
    let op = register(&emu, "grp-dev-1", &cred).await;
    assert_eq!(op["status"], "assigned", "{op}");
    assert_eq!(op["registrationState"]["deviceId"], "grp-dev-1");
    let device = Rest::new(&emu).get("/devices/grp-dev-1").await;
    assert_eq!(device["authentication"]["type"], "certificateAuthority");
    // No --device-ca was given: the hub trusts the group's signing certificate.
    connects_and_works(&emu, "grp-dev-1", &cred).await;

    // The leaf's CN must be the registration id.
    let (_c, mut ev) = dps_device(&emu, "grp-dev-2", Some(&ca_signed("grp-dev-1", &ca)));
    assert_eq!(connack(&mut ev).await, ConnectReturnCode::NotAuthorized);
    // A chain to another CA matches no group.
    let other = device_ca("Another CA");
    let (_c, mut ev) = dps_device(&emu, "grp-dev-2", Some(&ca_signed("grp-dev-2", &other)));
    assert_eq!(connack(&mut ev).await, ConnectReturnCode::NotAuthorized);
    emu.shutdown().await.unwrap();
}

#[tokio::test]
async fn x509_enrollments_without_usable_certificates_are_refused() {
    let emu = start().await;
    let dps = Enrollments::new(&emu);
    for (path, body) in [
        (
            "/enrollments/bad-1",
            json!({"attestation": {"type": "x509", "x509": {"clientCertificates": {
                "primary": {"certificate": "not a pem"}}}}}),
        ),
        (
            "/enrollments/bad-2",
            json!({"attestation": {"type": "x509", "x509": {"signingCertificates": {
                "primary": {"certificate": ca_pem_for_test()}}}}}),
        ),
        (
            "/enrollmentGroups/bad-3",
            json!({"attestation": {"type": "x509", "x509": {"caReferences": {"primary": "ca"}}}}),
        ),
    ] {
        let (status, answer) = dps.put(path, body).await;
        assert_eq!(status, 400, "{path}: {answer}");
    }
    emu.shutdown().await.unwrap();
}

fn ca_pem_for_test() -> String {
    device_ca("any").pem
}

#[tokio::test]
async fn registers_over_https_with_a_client_certificate() {
    let emu = start().await;
    let dps = Enrollments::new(&emu);
    let cred = self_signed("x509-https");
    let (status, body) = dps
        .put(
            "/enrollments/x509-https",
            json!({"attestation": {"type": "x509", "x509": {"clientCertificates": {
                "primary": {"certificate": pem_of(&cred, 0)}}}}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let device_http = |cred: Option<&Credential>| {
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config(&emu, cred, b"http/1.1").as_ref().clone())
            .timeout(WAIT)
            .build()
            .unwrap()
    };
    let url = format!(
        "{}/{}/registrations/x509-https/register?api-version=2019-03-31",
        emu.https_url(),
        emu.id_scope()
    );
    let body = json!({"registrationId": "x509-https"});
    // Without a certificate (and no Authorization): 401.
    let r = device_http(None)
        .put(&url)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);

    let http = device_http(Some(&cred));
    let r = http.put(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let first: Value = r.json().await.unwrap();
    let op = first["operationId"].as_str().unwrap();
    let poll = format!(
        "{}/{}/registrations/x509-https/operations/{op}?api-version=2019-03-31",
        emu.https_url(),
        emu.id_scope()
    );
    let done: Value = http.get(&poll).send().await.unwrap().json().await.unwrap();
    assert_eq!(done["status"], "assigned", "{done}");
    connects_and_works(&emu, "x509-https", &cred).await;
    emu.shutdown().await.unwrap();
}
