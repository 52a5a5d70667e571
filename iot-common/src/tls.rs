//! The one TLS client configuration of both clients, built from PEM bytes: the roots the
//! caller loaded (the platform's, read by the client crate: that is I/O) plus an optional
//! extra CA such as the emulator's, on rustls with the ring provider. rustls does no I/O
//! itself, so this stays sans-IO; reading CA files stays in the clients.

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::sync::Arc;

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// The CA text is not PEM.
    #[error("the CA file is not PEM")]
    NotPem(#[source] rustls_pki_types::pem::Error),
    /// The PEM holds no certificate.
    #[error("the CA file holds no certificate")]
    NoCertificate,
    /// A certificate could not be used as a trust anchor.
    #[error("the CA certificate is invalid")]
    InvalidCertificate(#[source] rustls::Error),
    /// rustls refused the protocol set-up.
    #[error("tls setup failed")]
    Setup(#[source] rustls::Error),
}

/// The certificates in a PEM text (at least one).
///
/// # Errors
/// [`TlsConfigError::NotPem`] or [`TlsConfigError::NoCertificate`].
pub fn parse_ca_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(TlsConfigError::NotPem)?;
    if certs.is_empty() {
        return Err(TlsConfigError::NoCertificate);
    }
    Ok(certs)
}

/// A client configuration trusting `roots` and the CA certificates in `extra_ca_pem`,
/// offering `alpn` protocols (empty: none).
///
/// ```
/// let config = iot_common::tls::client_config(rustls::RootCertStore::empty(), None, &[]).unwrap();
/// assert!(config.alpn_protocols.is_empty());
/// assert!(matches!(
///     iot_common::tls::client_config(rustls::RootCertStore::empty(), Some(b"no pem"), &[]),
///     Err(iot_common::tls::TlsConfigError::NoCertificate)
/// ));
/// ```
///
/// # Errors
/// The PEM is unusable ([`parse_ca_pem`]), a certificate is not a valid trust anchor, or
/// rustls refuses the set-up.
pub fn client_config(
    mut roots: RootCertStore,
    extra_ca_pem: Option<&[u8]>,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, TlsConfigError> {
    if let Some(pem) = extra_ca_pem {
        for c in parse_ca_pem(pem)? {
            roots.add(c).map_err(TlsConfigError::InvalidCertificate)?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsConfigError::Setup)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}
