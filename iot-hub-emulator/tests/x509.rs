//! X.509 device authentication over real TLS sockets: devices registered through the REST API
//! as `selfSigned` (SHA-1 or SHA-256 thumbprints) or `certificateAuthority` connect with a
//! client certificate and no password (CONNACK 0, then telemetry and twin work); a wrong,
//! foreign or untrusted certificate gets CONNACK 5; SAS devices are unaffected.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use iot_common::{SasToken, Secret, Thumbprint};
use iot_hub_emulator::{Emulator, dev_keys};
use rumqttc::{ConnectReturnCode, Event, Packet, QoS};
use serde_json::{Value, json};
use support::*;

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
    // Queries see the type and the thumbprints, as on the hub.
    let rows: Value = rest
        .http
        .post(format!("{}/devices/query?{API}", rest.base))
        .header("Authorization", &rest.auth)
        .json(&json!({"query": "SELECT deviceId, x509Thumbprint FROM devices WHERE authenticationType = 'selfSigned'"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().any(|r| r["deviceId"] == "ss-sha256"
        && r["x509Thumbprint"]["secondaryThumbprint"] == sha256.as_str()));

    let cs = emu.device_connection_string("ss-sha1").unwrap();
    assert!(
        cs.contains(";x509=true") && !cs.contains("SharedAccessKey"),
        "{cs}"
    );
    let parsed: iot_common::DeviceConnectionString = cs.parse().unwrap();
    assert_eq!(parsed.device_id, "ss-sha1");
    assert_eq!(parsed.credential, iot_common::DeviceCredential::X509);

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
            "--amqp-port",
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

#[tokio::test]
async fn expired_and_not_yet_valid_certificates_are_refused() {
    let ca = device_ca("Test Device CA");
    let emu = emulator(&ca).await;
    let rest = Rest::new(&emu);
    let (status, _) = rest
        .put_device(
            "ca-dated",
            serde_json::json!({"type": "certificateAuthority"}),
        )
        .await;
    assert_eq!(status, 200);
    let dated = |from: (i32, u8, u8), to: (i32, u8, u8)| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = leaf_params("ca-dated");
        params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
        params.not_after = rcgen::date_time_ymd(to.0, to.1, to.2);
        let cert = params.signed_by(&key, &ca.issuer).unwrap();
        Credential {
            chain: vec![cert.der().clone()],
            key: key.serialize_der(),
        }
    };
    refused(&emu, "ca-dated", Some(&dated((2001, 1, 1), (2002, 1, 1)))).await;
    refused(&emu, "ca-dated", Some(&dated((2090, 1, 1), (2091, 1, 1)))).await;
    let current = dated((2001, 1, 1), (2090, 1, 1));
    connects_and_works(&emu, "ca-dated", &current).await;

    // The same for selfSigned, where no chain verification would catch it.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = leaf_params("ss-dated");
    params.not_before = rcgen::date_time_ymd(2001, 1, 1);
    params.not_after = rcgen::date_time_ymd(2002, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    let expired = Credential {
        chain: vec![cert.der().clone()],
        key: key.serialize_der(),
    };
    let thumbprint = Thumbprint::sha256(expired.leaf());
    let (status, _) = rest
        .put_device("ss-dated", self_signed_auth(thumbprint.as_str(), None))
        .await;
    assert_eq!(status, 200);
    refused(&emu, "ss-dated", Some(&expired)).await;
    emu.shutdown().await.unwrap();
}

#[tokio::test]
async fn modules_authenticate_with_their_own_x509_registration() {
    let ca = device_ca("Test Device CA");
    let emu = emulator(&ca).await;
    let rest = Rest::new(&emu);
    let (status, _) = rest
        .put_device("mod-dev", serde_json::json!({"type": "sas"}))
        .await;
    assert_eq!(status, 200);
    let put_module = |module: &'static str, auth: Value| {
        let r = rest
            .http
            .put(format!(
                "{}/devices/mod-dev/modules/{module}?{API}",
                rest.base
            ))
            .header("Authorization", &rest.auth)
            .json(&json!({"deviceId": "mod-dev", "moduleId": module, "authentication": auth}))
            .send();
        async move {
            let r = r.await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let own = self_signed("m-self");
    let (status, body) = put_module(
        "m-self",
        self_signed_auth(Thumbprint::sha1(own.leaf()).as_str(), None),
    )
    .await;
    assert!(status == 200 || status == 201, "{status} {body}");
    assert_eq!(body["authentication"]["type"], "selfSigned");
    let (status, _) = put_module("m-ca", json!({"type": "certificateAuthority"})).await;
    assert!(status == 200 || status == 201);
    let twin = rest.get("/twins/mod-dev/modules/m-self").await;
    // The module's own type, not its device's (sas).
    assert_eq!(twin["authenticationType"], "selfSigned");

    let (client, mut ev) = device(&emu, "mod-dev/m-self", Some(&own), "");
    assert_eq!(connack(&mut ev).await, ConnectReturnCode::Success);
    client.disconnect().await.unwrap();
    // A CA-signed module's leaf carries the device id as CN.
    let (client, mut ev) = device(&emu, "mod-dev/m-ca", Some(&ca_signed("mod-dev", &ca)), "");
    assert_eq!(connack(&mut ev).await, ConnectReturnCode::Success);
    client.disconnect().await.unwrap();

    refused(&emu, "mod-dev/m-self", Some(&self_signed("m-self"))).await;
    // The device itself is SAS: a certificate without a password does not make it X.509.
    refused(&emu, "mod-dev", Some(&own)).await;
    emu.shutdown().await.unwrap();
}
