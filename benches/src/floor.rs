//! The physical floor of a round trip, measured in the same run as the figures it judges: a
//! bare request/response of a fixed size over loopback TLS with the same stack as the clients
//! and the emulator (rustls with the ring provider under tokio-rustls), with no HTTP, MQTT or
//! JSON. A direct method crosses two such round trips (service → emulator, emulator → device),
//! so round-trip figures are reported as multiples of twice this floor.

use crate::stats::Latency;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Measures `n` sequential round trips of `payload` bytes each way, after 100 unmeasured ones.
///
/// # Errors
/// Certificate generation, the TLS handshake or the socket failing.
pub async fn tls_round_trip(n: usize, payload: usize) -> Result<Latency, BoxError> {
    let identity = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    let cert = CertificateDer::from(identity.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        identity.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert)?;
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let echo = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        let mut tls = acceptor.accept(tcp).await?;
        let mut buf = vec![0u8; payload];
        // Ends when the client closes: read_exact then fails with UnexpectedEof.
        while tls.read_exact(&mut buf).await.is_ok() {
            tls.write_all(&buf).await?;
        }
        Ok::<_, std::io::Error>(())
    });

    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let mut tls = connector
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let request = vec![b'x'; payload];
    let mut answer = vec![0u8; payload];
    let mut samples = Vec::with_capacity(n);
    for i in 0..n + 100 {
        let t = Instant::now();
        tls.write_all(&request).await?;
        tls.read_exact(&mut answer).await?;
        if i >= 100 {
            samples.push(t.elapsed());
        }
    }
    tls.shutdown().await?;
    drop(tls);
    echo.await??;
    Ok(Latency::of(&mut samples))
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_floor_measures_every_round_trip() {
        let l = super::tls_round_trip(20, 200).await.unwrap();
        assert_eq!(l.count, 20);
        assert!(l.p50_ms > 0.0);
    }
}
