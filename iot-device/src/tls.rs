//! rustls client configurations (ring provider): the platform's roots, optionally plus a CA
//! such as the emulator's. Built once and shared, so thousands of clients cost one config.

use crate::{Error, ErrorKind, Result};
use iot_common::tls::ClientIdentity;
use rustls::{ClientConfig, RootCertStore};
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

/// Builds a client configuration trusting the platform roots and `extra_ca_pem`
/// (`iot_common::tls`, shared with the service client), presenting `identity` if given.
pub(crate) fn client_config(
    extra_ca_pem: Option<&str>,
    identity: Option<&ClientIdentity>,
) -> Result<Arc<ClientConfig>> {
    iot_common::tls::client_config_with_identity(
        native_roots().clone(),
        extra_ca_pem.map(str::as_bytes),
        &[],
        identity,
    )
    .map_err(|e| Error::new(ErrorKind::Configuration, e.to_string()).with_source(e))
}

/// The shared default configuration (platform roots only).
pub(crate) fn default_config() -> Result<Arc<ClientConfig>> {
    static DEFAULT: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    if let Some(c) = DEFAULT.get() {
        return Ok(c.clone());
    }
    let c = client_config(None, None)?;
    Ok(DEFAULT.get_or_init(|| c).clone())
}
