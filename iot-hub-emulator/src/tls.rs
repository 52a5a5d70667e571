//! The emulator's TLS identity: a CA and a server certificate, generated once (rcgen) or loaded
//! from `--cert-dir`, so that clients trust the emulator by trusting one CA file.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::DigitallySignedStruct;
use rustls::ServerConfig;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::EmulatorError;

const CA_FILE: &str = "ca.pem";
const CERT_FILE: &str = "server.pem";
const KEY_FILE: &str = "server-key.pem";

/// The CA and server certificate in PEM.
#[derive(Clone)]
pub(crate) struct TlsMaterial {
    pub(crate) ca_pem: String,
    pub(crate) cert_pem: String,
    key_pem: String,
    pub(crate) ca_path: Option<PathBuf>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("ca_path", &self.ca_path)
            .finish_non_exhaustive()
    }
}

fn tls_err(e: impl std::fmt::Display) -> EmulatorError {
    EmulatorError::Tls(e.to_string())
}

/// Loads `ca.pem`, `server.pem` and `server-key.pem` from `dir` when all exist; otherwise
/// generates them for `names` (and writes them to `dir` when given).
pub(crate) fn load_or_generate(
    dir: Option<&Path>,
    names: &[String],
) -> Result<TlsMaterial, EmulatorError> {
    if let Some(dir) = dir {
        let paths = [CA_FILE, CERT_FILE, KEY_FILE].map(|f| dir.join(f));
        if paths.iter().all(|p| p.exists()) {
            let [ca, cert, key] = paths.map(std::fs::read_to_string);
            return Ok(TlsMaterial {
                ca_pem: ca?,
                cert_pem: cert?,
                key_pem: key?,
                ca_path: Some(dir.join(CA_FILE)),
            });
        }
    }
    let mut material = generate(names)?;
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join(CA_FILE), &material.ca_pem)?;
        std::fs::write(dir.join(CERT_FILE), &material.cert_pem)?;
        write_private(&dir.join(KEY_FILE), material.key_pem.as_bytes())?;
        material.ca_path = Some(dir.join(CA_FILE));
    }
    Ok(material)
}

/// Writes a file that only its owner may read (the server's private key).
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let mut f = o.open(path)?;
    // A file left by an older version keeps its mode on open: tighten it too.
    #[cfg(unix)]
    f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn generate(names: &[String]) -> Result<TlsMaterial, EmulatorError> {
    let ca_key = KeyPair::generate().map_err(tls_err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(tls_err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "IoT Hub Emulator Development CA");
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(tls_err)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut sans: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    for n in names {
        if !sans.contains(n) {
            sans.push(n.clone());
        }
    }
    let leaf_key = KeyPair::generate().map_err(tls_err)?;
    let mut params = CertificateParams::new(sans).map_err(tls_err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "localhost");
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&leaf_key, &issuer).map_err(tls_err)?;
    Ok(TlsMaterial {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: leaf_key.serialize_pem(),
        ca_path: None,
    })
}

/// Asks every client for a certificate without requiring one, as the hub does: SAS devices
/// send none, X.509 devices send their chain. Any chain passes the handshake; whether it
/// authenticates a device is decided at CONNECT, where the device's registration is known
/// (a handshake failure would give the device no CONNACK to tell it why).
///
/// The handshake signature is still verified, so a presented certificate proves possession
/// of its private key.
#[derive(Debug)]
struct RequestClientCert {
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for RequestClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A rustls server configuration (ring provider, TLS 1.2 and 1.3) for the material. With
/// `client_certs` it asks for (but does not require) a client certificate.
pub(crate) fn server_config(
    m: &TlsMaterial,
    alpn: &[&[u8]],
    client_certs: bool,
) -> Result<Arc<ServerConfig>, EmulatorError> {
    let certs = CertificateDer::pem_slice_iter(m.cert_pem.as_bytes())
        .chain(CertificateDer::pem_slice_iter(m.ca_pem.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(tls_err)?;
    let key = PrivateKeyDer::from_pem_slice(m.key_pem.as_bytes()).map_err(tls_err)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let algorithms = provider.signature_verification_algorithms;
    let builder = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?;
    let builder = if client_certs {
        builder.with_client_cert_verifier(Arc::new(RequestClientCert { algorithms }))
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder.with_single_cert(certs, key).map_err(tls_err)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}
