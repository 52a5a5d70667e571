//! `c2d send` and `monitor` against a hub that is not the emulator: a plain HTTPS server on
//! loopback that answers 404 to everything, as a real IoT Hub does for `/emulator/…`. They
//! must fail with exit code 5 and say why, never report a success.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A CA (PEM) and a rustls server config for `localhost` signed by it.
fn tls() -> (String, Arc<rustls::ServerConfig>) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "not-the-emulator test CA");
    ca.distinguished_name = dn;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let chain = vec![CertificateDer::from_pem_slice(cert.pem().as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    (ca_cert.pem(), Arc::new(config))
}

/// Serves `404 Not Found` to every request; returns the port.
async fn not_found_server(config: Arc<rustls::ServerConfig>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                // Bounded: a request head of at most 64 KiB, then one answer and close.
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65_536 {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn c2d_and_monitor_refuse_a_hub_that_is_not_the_emulator() {
    let (ca_pem, config) = tls();
    let port = not_found_server(config).await;
    let ca = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "iothub-cli-not-emulator-{}.pem",
        std::process::id()
    ));
    std::fs::write(&ca, ca_pem).unwrap();
    let cs = format!(
        "HostName=localhost:{port};SharedAccessKeyName=iothubowner;SharedAccessKey={}",
        "SW9USHViRW11bGF0b3JEZXZlbG9wbWVudE93bmVyMDE="
    );
    for (args, what) in [
        (&["c2d", "send", "dev", "hi"][..], "AMQP"),
        (&["monitor", "--count", "1", "--timeout", "10"], "Event Hub"),
    ] {
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::process::Command::new(env!("CARGO_BIN_EXE_iothub"))
                .args(args)
                .env("IOTHUB_CONNECTION_STRING", &cs)
                .env("IOTHUB_CA_CERT", &ca)
                .kill_on_drop(true)
                .output(),
        )
        .await
        .unwrap()
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(5), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("not the emulator") && stderr.contains(what),
            "{stderr}"
        );
    }
    std::fs::remove_file(&ca).unwrap();
}
