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
    /// The client certificate's PEM holds no private key (or it is not PEM).
    #[error("the client key file holds no private key (PKCS#8, PKCS#1 or SEC1 PEM)")]
    NoPrivateKey,
    /// The private key does not belong to the client certificate.
    #[error("the private key does not match the client certificate `{subject}`")]
    KeyMismatch {
        /// The certificate's subject.
        subject: String,
    },
    /// The key's algorithm is not supported, or the key is malformed.
    #[error("the client key cannot be used: {0}")]
    UnsupportedKey(#[source] rustls::Error),
    /// The client certificate is not a readable X.509 certificate.
    #[error("the client certificate is not a valid X.509 certificate: {0}")]
    BadCertificate(String),
    /// The client certificate expired.
    #[error("the client certificate `{subject}` expired at {not_after}")]
    Expired {
        /// The certificate's subject.
        subject: String,
        /// When it expired (RFC 2822).
        not_after: String,
    },
    /// The client certificate is not valid yet.
    #[error("the client certificate `{subject}` is not valid before {not_before}")]
    NotYetValid {
        /// The certificate's subject.
        subject: String,
        /// When it becomes valid (RFC 2822).
        not_before: String,
    },
}

/// What device authentication reads from a leaf certificate: its subject, its first common
/// name, and its validity in Unix seconds. Both the client (before it connects) and the hub
/// (when a device presents a certificate) read certificates through this one parser.
///
/// ```
/// let cert = rcgen::generate_simple_self_signed(vec!["dev-1".to_owned()]).unwrap();
/// let info = iot_common::tls::CertificateInfo::parse(cert.cert.der()).unwrap();
/// assert!(info.not_before < info.not_after);
/// assert!(iot_common::tls::CertificateInfo::parse(b"not DER").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// The subject, as text.
    pub subject: String,
    /// The subject's first common name, when it is a string.
    pub common_name: Option<String>,
    /// Not valid before this (Unix seconds).
    pub not_before: i64,
    /// Not valid after this (Unix seconds).
    pub not_after: i64,
}

impl CertificateInfo {
    /// Reads a DER certificate.
    ///
    /// # Errors
    /// Why it is not a readable X.509 certificate.
    pub fn parse(der: &[u8]) -> Result<Self, String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
        let validity = cert.validity();
        Ok(Self {
            subject: cert.subject().to_string(),
            common_name: cert
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(str::to_owned),
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
        })
    }
}

/// A TLS client identity for X.509 authentication: a certificate chain (leaf first) and the
/// leaf's private key, checked to belong together when built. `Debug` shows the subject and
/// the expiry, never the key.
///
/// ```
/// let cert = rcgen::generate_simple_self_signed(vec!["dev-1".to_owned()]).unwrap();
/// let identity = iot_common::tls::ClientIdentity::from_pem(
///     cert.cert.pem().as_bytes(),
///     cert.signing_key.serialize_pem().as_bytes(),
/// )?;
/// assert!(identity.check_validity(std::time::SystemTime::now()).is_ok());
/// # Ok::<(), iot_common::tls::TlsConfigError>(())
/// ```
#[derive(Clone)]
pub struct ClientIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: Arc<rustls_pki_types::PrivateKeyDer<'static>>,
    leaf: CertificateInfo,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("subject", &self.leaf.subject)
            .field("chain_len", &self.chain.len())
            .field("not_after_unix", &self.leaf.not_after)
            .finish_non_exhaustive()
    }
}

fn rfc2822(unix: i64) -> String {
    x509_parser::time::ASN1Time::from_timestamp(unix)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| unix.to_string())
}

impl ClientIdentity {
    /// An identity from a PEM certificate chain (leaf first; a CA-signed leaf may carry its
    /// intermediates) and the leaf's PEM private key.
    ///
    /// # Errors
    /// [`TlsConfigError::NotPem`], [`TlsConfigError::NoCertificate`],
    /// [`TlsConfigError::BadCertificate`], [`TlsConfigError::NoPrivateKey`],
    /// [`TlsConfigError::KeyMismatch`] or [`TlsConfigError::UnsupportedKey`].
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsConfigError> {
        use rustls_pki_types::PrivateKeyDer;
        let chain = parse_ca_pem(chain_pem)?;
        let key =
            PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| TlsConfigError::NoPrivateKey)?;
        let leaf =
            CertificateInfo::parse(chain[0].as_ref()).map_err(TlsConfigError::BadCertificate)?;
        let provider = rustls::crypto::ring::default_provider();
        match rustls::sign::CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider) {
            Ok(_) => {}
            Err(rustls::Error::InconsistentKeys(_)) => {
                return Err(TlsConfigError::KeyMismatch {
                    subject: leaf.subject,
                });
            }
            Err(e) => return Err(TlsConfigError::UnsupportedKey(e)),
        }
        Ok(Self {
            chain,
            key: Arc::new(key),
            leaf,
        })
    }

    /// The leaf's subject common name (a CA-signed device's id; DPS's registration id).
    pub fn common_name(&self) -> Option<&str> {
        self.leaf.common_name.as_deref()
    }

    /// The leaf's subject, as text.
    pub fn subject(&self) -> &str {
        &self.leaf.subject
    }

    /// The leaf certificate (DER), e.g. for its [`Thumbprint`](crate::Thumbprint).
    pub fn leaf_der(&self) -> &[u8] {
        self.chain[0].as_ref()
    }

    /// Fails when the leaf is expired or not yet valid at `now` (the caller reads the clock).
    ///
    /// # Errors
    /// [`TlsConfigError::Expired`] or [`TlsConfigError::NotYetValid`].
    pub fn check_validity(&self, now: std::time::SystemTime) -> Result<(), TlsConfigError> {
        let now = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        if now > self.leaf.not_after {
            return Err(TlsConfigError::Expired {
                subject: self.leaf.subject.clone(),
                not_after: rfc2822(self.leaf.not_after),
            });
        }
        if now < self.leaf.not_before {
            return Err(TlsConfigError::NotYetValid {
                subject: self.leaf.subject.clone(),
                not_before: rfc2822(self.leaf.not_before),
            });
        }
        Ok(())
    }
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
    roots: RootCertStore,
    extra_ca_pem: Option<&[u8]>,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, TlsConfigError> {
    client_config_with_identity(roots, extra_ca_pem, alpn, None)
}

/// As [`client_config`], presenting `identity` as the TLS client certificate when given.
///
/// # Errors
/// As [`client_config`].
pub fn client_config_with_identity(
    mut roots: RootCertStore,
    extra_ca_pem: Option<&[u8]>,
    alpn: &[&[u8]],
    identity: Option<&ClientIdentity>,
) -> Result<Arc<ClientConfig>, TlsConfigError> {
    if let Some(pem) = extra_ca_pem {
        for c in parse_ca_pem(pem)? {
            roots.add(c).map_err(TlsConfigError::InvalidCertificate)?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsConfigError::Setup)?
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
            .map_err(TlsConfigError::UnsupportedKey)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

    fn cert(cn: &str, years: (i32, i32)) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![cn.to_owned()]).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.not_before = rcgen::date_time_ymd(years.0, 1, 1);
        params.not_after = rcgen::date_time_ymd(years.1, 1, 1);
        let c = params.self_signed(&key).unwrap();
        (c.pem(), key.serialize_pem())
    }

    #[test]
    fn an_identity_knows_its_common_name_and_validity() {
        let (c, k) = cert("dev-1", (2000, 2099));
        let id = ClientIdentity::from_pem(c.as_bytes(), k.as_bytes()).unwrap();
        assert_eq!(id.common_name(), Some("dev-1"));
        assert!(id.check_validity(std::time::SystemTime::now()).is_ok());
        assert!(!format!("{id:?}").contains("PRIVATE"));
        let config =
            client_config_with_identity(RootCertStore::empty(), None, &[], Some(&id)).unwrap();
        assert!(config.client_auth_cert_resolver.has_certs());
    }

    #[test]
    fn a_key_of_another_certificate_is_a_mismatch() {
        let (c, _) = cert("dev-1", (2000, 2099));
        let (_, other_key) = cert("dev-2", (2000, 2099));
        let err = ClientIdentity::from_pem(c.as_bytes(), other_key.as_bytes()).unwrap_err();
        assert!(matches!(err, TlsConfigError::KeyMismatch { .. }), "{err}");
        assert!(err.to_string().contains("dev-1"), "{err}");
    }

    #[test]
    fn missing_or_garbage_parts_are_named() {
        let (c, k) = cert("dev-1", (2000, 2099));
        assert!(matches!(
            ClientIdentity::from_pem(c.as_bytes(), b"no key here"),
            Err(TlsConfigError::NoPrivateKey)
        ));
        assert!(matches!(
            ClientIdentity::from_pem(b"no cert", k.as_bytes()),
            Err(TlsConfigError::NoCertificate)
        ));
    }

    #[test]
    fn expired_and_future_certificates_are_refused_at_a_given_time() {
        let (c, k) = cert("old", (2000, 2001));
        let id = ClientIdentity::from_pem(c.as_bytes(), k.as_bytes()).unwrap();
        let err = id.check_validity(std::time::SystemTime::now()).unwrap_err();
        assert!(matches!(err, TlsConfigError::Expired { .. }), "{err}");
        let (c, k) = cert("new", (2090, 2099));
        let id = ClientIdentity::from_pem(c.as_bytes(), k.as_bytes()).unwrap();
        assert!(matches!(
            id.check_validity(std::time::SystemTime::now()),
            Err(TlsConfigError::NotYetValid { .. })
        ));
    }
}
