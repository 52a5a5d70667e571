//! The web console's HTTP surface without a browser: on and off, the loopback rule, the
//! token it hands out, the login off loopback. (tests/tests/console_browser.rs drives the
//! pages themselves in Chromium.)

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use iot_hub_emulator::{Emulator, RunningEmulator};
use std::sync::Arc;
use std::time::Duration;

fn client(hub: &RunningEmulator) -> reqwest::Client {
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
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .resolve(
            "localhost",
            std::net::SocketAddr::from(([127, 0, 0, 1], hub.https_addr().port())),
        )
        .build()
        .unwrap()
}

fn base(hub: &RunningEmulator) -> String {
    format!("https://localhost:{}", hub.https_addr().port())
}

#[tokio::test]
async fn turned_off_the_console_paths_answer_the_usual_404() {
    let hub = Emulator::builder().console(false).start().await.unwrap();
    let http = client(&hub);
    for path in [
        "/",
        "/console/token",
        "/console/events",
        "/console/assets/console.js",
    ] {
        let r = http
            .get(format!("{}{path}", base(&hub)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
        assert!(r.headers().contains_key("iothub-errorcode"), "{path}");
    }
}

#[tokio::test]
async fn on_loopback_the_console_opens_and_its_token_works_on_the_rest_api() {
    let hub = Emulator::builder().start().await.unwrap();
    let http = client(&hub);
    let page = http.get(format!("{}/", base(&hub))).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(page.text().await.unwrap().contains("id=\"device-table\""));

    let token: serde_json::Value = http
        .get(format!("{}/console/token", base(&hub)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let auth = token["authorization"].as_str().unwrap();
    let devices = http
        .get(format!("{}/devices?api-version=2021-04-12", base(&hub)))
        .header("authorization", auth)
        .send()
        .await
        .unwrap();
    assert_eq!(devices.status(), 200);
    assert_eq!(
        token["serviceConnectionString"].as_str().unwrap(),
        hub.service_connection_string()
    );
    // The device connection string the page builds is the emulator's own.
    let dev: serde_json::Value = devices.json().await.unwrap();
    let key = dev[0]["authentication"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap();
    let built = format!(
        "HostName={};DeviceId={};SharedAccessKey={key};GatewayHostName={}",
        token["hostName"].as_str().unwrap(),
        dev[0]["deviceId"].as_str().unwrap(),
        token["deviceGateway"].as_str().unwrap()
    );
    assert_eq!(
        Some(built),
        hub.device_connection_string(dev[0]["deviceId"].as_str().unwrap())
    );

    // A page elsewhere that rebinds its name to 127.0.0.1 sends its own Host: refused.
    for path in ["/", "/console/token", "/console/events"] {
        let r = http
            .get(format!("{}{path}", base(&hub)))
            .header("host", "attacker.example")
            .send()
            .await
            .unwrap();
        assert!(
            r.status() == 403 || r.status() == 401,
            "{path}: {}",
            r.status()
        );
    }
}

#[tokio::test]
async fn off_loopback_the_key_buys_an_http_only_secure_cookie_and_nothing_else_does() {
    let hub = Emulator::builder()
        .bind(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
        .start()
        .await
        .unwrap();
    let http = client(&hub);
    let key = hub
        .service_connection_string()
        .split("SharedAccessKey=")
        .nth(1)
        .unwrap()
        .to_owned();
    let token = http
        .get(format!("{}/console/token", base(&hub)))
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), 401);
    let page = http.get(format!("{}/", base(&hub))).send().await.unwrap();
    assert!(page.text().await.unwrap().contains("name=\"key\""));

    let wrong = http
        .post(format!("{}/console/login", base(&hub)))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("key=bm90IHRoZSBrZXk%3D")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());

    let form = format!(
        "key={}",
        key.replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D")
    );
    let ok = http
        .post(format!("{}/console/login", base(&hub)))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 303);
    let cookie = ok.headers()["set-cookie"].to_str().unwrap().to_owned();
    for flag in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(flag), "{flag} missing");
    }
    assert!(!cookie.contains(&key));
    let session = cookie.split(';').next().unwrap().to_owned();
    let token = http
        .get(format!("{}/console/token", base(&hub)))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), 200);
    assert_eq!(token.headers()["cache-control"], "no-store");

    // A cookie signed by another emulator (or tampered with) is refused.
    let forged = session.replace("sig=", "sig=A");
    let token = http
        .get(format!("{}/console/token", base(&hub)))
        .header("cookie", forged)
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), 401);
}
