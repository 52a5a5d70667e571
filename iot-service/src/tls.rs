//! The service client's rustls configuration: the platform's roots (read here, once: that is
//! I/O) plus an optional extra CA, built by `iot_common::tls` like the device client's.

use crate::{Error, ErrorKind, Result};
use std::sync::{Arc, OnceLock};

/// A rustls configuration trusting the platform roots and `extra_ca_pem` (`iot_common::tls`,
/// shared with the device client), offering HTTP/1.1.
pub(crate) fn client_config(extra_ca_pem: Option<&str>) -> Result<Arc<rustls::ClientConfig>> {
    static NATIVE: OnceLock<rustls::RootCertStore> = OnceLock::new();
    let roots = NATIVE
        .get_or_init(|| {
            let mut store = rustls::RootCertStore::empty();
            store.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            store
        })
        .clone();
    iot_common::tls::client_config(roots, extra_ca_pem.map(str::as_bytes), &[b"http/1.1"])
        .map_err(|e| Error::new(ErrorKind::Configuration, e.to_string()).with_source(e))
}

/// The same trust for AMQP connections, without ALPN (AMQP over TLS negotiates none).
pub(crate) fn amqp_client_config(extra_ca_pem: Option<&str>) -> Result<Arc<rustls::ClientConfig>> {
    static NATIVE: OnceLock<rustls::RootCertStore> = OnceLock::new();
    let roots = NATIVE
        .get_or_init(|| {
            let mut store = rustls::RootCertStore::empty();
            store.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            store
        })
        .clone();
    iot_common::tls::client_config(roots, extra_ca_pem.map(str::as_bytes), &[])
        .map_err(|e| Error::new(ErrorKind::Configuration, e.to_string()).with_source(e))
}
