//! Device client certificates: what a TLS peer presented, the fields of its leaf that
//! authentication needs (subject CN, validity, read by `iot_common::tls::CertificateInfo`), and the device CAs registered with the
//! emulator (`--device-ca`, [`EmulatorBuilder::device_ca_pem`](crate::EmulatorBuilder),
//! the seed file's `deviceCAs`).

use crate::EmulatorError;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};
use std::sync::Arc;
use std::time::Duration;

/// The certificate chain a TLS client presented, leaf first (empty when it sent none, or on
/// a plain TCP or WebSocket connection).
pub(crate) type PeerChain = Arc<[CertificateDer<'static>]>;

/// The chain of a finished server-side TLS handshake.
pub(crate) fn peer_chain(conn: &rustls::ServerConnection) -> PeerChain {
    conn.peer_certificates()
        .map(|c| c.iter().map(|d| d.clone().into_owned()).collect())
        .unwrap_or_else(|| Arc::from(Vec::new()))
}

/// The CAs that `certificateAuthority` devices' chains must reach.
#[derive(Default)]
pub(crate) struct DeviceCas {
    count: usize,
    verifier: Option<Arc<dyn ClientCertVerifier>>,
}

impl std::fmt::Debug for DeviceCas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCas")
            .field("count", &self.count)
            .finish()
    }
}

impl DeviceCas {
    /// The CAs in `pems`, each named by where it came from (for the error that names a bad
    /// one). Every PEM must hold at least one certificate.
    pub(crate) fn from_pems(pems: &[(String, String)]) -> Result<Self, EmulatorError> {
        let mut roots = rustls::RootCertStore::empty();
        for (origin, pem) in pems {
            let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| EmulatorError::Config(format!("device CA {origin}: {e}")))?;
            if certs.is_empty() {
                return Err(EmulatorError::Config(format!(
                    "device CA {origin}: no PEM certificate in it"
                )));
            }
            for c in certs {
                roots.add(c).map_err(|e| {
                    EmulatorError::Config(format!("device CA {origin}: not a usable CA ({e})"))
                })?;
            }
        }
        let count = roots.len();
        if count == 0 {
            return Ok(Self::default());
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| EmulatorError::Config(format!("device CAs: {e}")))?;
        Ok(Self {
            count,
            verifier: Some(verifier),
        })
    }

    /// How many CA certificates are trusted.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// Checks that `chain` (leaf first) reaches a registered CA and is valid at `now`; the
    /// error says why not.
    pub(crate) fn verify(&self, chain: &[CertificateDer<'_>], now: u64) -> Result<(), String> {
        let verifier = self
            .verifier
            .as_ref()
            .ok_or("no device CA is registered with the emulator")?;
        let (leaf, intermediates) = chain.split_first().ok_or("no client certificate")?;
        verifier
            .verify_client_cert(
                leaf,
                intermediates,
                UnixTime::since_unix_epoch(Duration::from_secs(now)),
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iot_common::tls::CertificateInfo;

    fn cert(cn: &str) -> rcgen::Certificate {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Contoso");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.not_before = rcgen::date_time_ymd(2020, 1, 2);
        params.not_after = rcgen::date_time_ymd(2060, 3, 4);
        params.self_signed(&key).unwrap()
    }

    #[test]
    fn reads_common_name_and_validity() {
        let info = CertificateInfo::parse(cert("dev-1").der()).unwrap();
        assert_eq!(info.common_name.as_deref(), Some("dev-1"));
        assert_eq!(info.not_before, 1_577_923_200); // 2020-01-02T00:00:00Z
        assert_eq!(info.not_after, 2_845_584_000); // 2060-03-04T00:00:00Z (GeneralizedTime)
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert_eq!(CertificateInfo::parse(b"").ok(), None);
        assert_eq!(
            CertificateInfo::parse(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).ok(),
            None
        );
        let der = cert("x").der().to_vec();
        // Every truncation, and every single-byte corruption, is refused or read without a
        // panic; a truncated certificate is never read as one.
        for end in 0..der.len() {
            assert_eq!(CertificateInfo::parse(&der[..end]).ok(), None);
        }
        for i in 0..der.len() {
            let mut bad = der.clone();
            bad[i] ^= 0xff;
            let _ = CertificateInfo::parse(&bad);
        }
    }

    #[test]
    fn a_pem_without_certificates_is_refused_by_name() {
        let e = DeviceCas::from_pems(&[("ca.pem".into(), "hello".into())]).unwrap_err();
        assert!(e.to_string().contains("ca.pem"), "{e}");
        assert!(DeviceCas::default().verify(&[], 0).is_err());
    }
}
