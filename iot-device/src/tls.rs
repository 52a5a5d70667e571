//! rustls client configurations (ring provider): the platform's roots, optionally plus a CA
//! such as the emulator's. Built once and shared, so thousands of clients cost one config.

use crate::{Error, ErrorKind, Result};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::sync::{Arc, OnceLock};

fn native_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut store = RootCertStore::empty();
        let loaded = rustls_native_certs::load_native_certs();
        let (added, _ignored) = store.add_parsable_certificates(loaded.certs);
        tracing::debug!(added, "loaded platform root certificates");
        store
    })
}

/// Builds a client configuration trusting the platform roots and `extra_ca_pem`.
pub(crate) fn client_config(extra_ca_pem: Option<&str>) -> Result<Arc<ClientConfig>> {
    let mut roots = native_roots().clone();
    if let Some(pem) = extra_ca_pem {
        let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| {
                Error::new(ErrorKind::Configuration, "the CA file is not PEM").with_source(e)
            })?;
        if certs.is_empty() {
            return Err(Error::new(
                ErrorKind::Configuration,
                "the CA file holds no certificate",
            ));
        }
        for c in certs {
            roots.add(c).map_err(|e| {
                Error::new(ErrorKind::Configuration, "the CA certificate is invalid").with_source(e)
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::new(ErrorKind::Configuration, "tls setup failed").with_source(e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The shared default configuration (platform roots only).
pub(crate) fn default_config() -> Result<Arc<ClientConfig>> {
    static DEFAULT: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    if let Some(c) = DEFAULT.get() {
        return Ok(c.clone());
    }
    let c = client_config(None)?;
    Ok(DEFAULT.get_or_init(|| c).clone())
}
