//! X.509 attestation: the certificates an enrollment's `attestation.x509` carries
//! (`clientCertificates` for an individual enrollment, `signingCertificates` for a group), and
//! checking a registration's client certificate chain against them.

use super::{Dps, DpsError};
use crate::client_cert::DeviceCas;
use iot_common::provisioning::AttestationType;
use iot_common::tls::CertificateInfo;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use serde_json::Value;

/// Which list of certificates an X.509 attestation must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// An individual enrollment: the device's own certificate(s).
    Client,
    /// A group: the root or intermediate CA its devices' chains reach.
    Signing,
}

impl Role {
    fn field(self) -> &'static str {
        match self {
            Self::Client => "clientCertificates",
            Self::Signing => "signingCertificates",
        }
    }
}

/// The PEMs of `x509.{field}.{primary,secondary}.certificate`, with where each came from.
fn pems(x509: &Value, role: Role) -> Vec<(String, String)> {
    let field = role.field();
    ["primary", "secondary"]
        .into_iter()
        .filter_map(|slot| {
            let pem = x509.get(field)?.get(slot)?.get("certificate")?.as_str()?;
            Some((format!("x509.{field}.{slot}"), pem.to_owned()))
        })
        .collect()
}

/// The certificates of an individual enrollment's `clientCertificates`.
fn client_certificates(x509: &Value) -> Vec<CertificateDer<'static>> {
    pems(x509, Role::Client)
        .iter()
        .flat_map(|(_, pem)| CertificateDer::pem_slice_iter(pem.as_bytes()).flatten())
        .collect()
}

/// The CAs of a group's `signingCertificates`.
fn signing_cas(x509: &Value) -> Result<DeviceCas, String> {
    DeviceCas::from_pems(&pems(x509, Role::Signing)).map_err(|e| e.to_string())
}

/// Checks an enrollment's X.509 attestation when it is written: the certificates it must
/// carry are there and parse. `caReferences` (CAs uploaded to DPS by name) are not emulated.
pub(crate) fn check_attestation(x509: &Value, role: Role) -> Result<(), DpsError> {
    if x509.get("caReferences").is_some_and(|c| !c.is_null()) {
        return Err(DpsError::bad_request(
            "x509.caReferences is not supported by the emulator; give signingCertificates.",
        ));
    }
    let pems = pems(x509, role);
    if pems.is_empty() {
        return Err(DpsError::bad_request(format!(
            "An x509 attestation here needs x509.{}.primary.certificate (PEM).",
            role.field()
        )));
    }
    for (origin, pem) in &pems {
        let n = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| DpsError::bad_request(format!("{origin}: not a PEM certificate ({e})")))?
            .len();
        if n == 0 {
            return Err(DpsError::bad_request(format!(
                "{origin}: no PEM certificate in it"
            )));
        }
    }
    if role == Role::Signing {
        signing_cas(x509).map_err(DpsError::bad_request)?;
    }
    Ok(())
}

fn refused(why: impl Into<String>) -> DpsError {
    DpsError::new(401, 401002, why)
}

/// Who an X.509 registration was proven to be.
pub(crate) enum X509Match {
    Individual,
    Group(String),
}

impl Dps {
    /// Checks a registration's client certificate chain (leaf first): the leaf must be valid
    /// now and have the registration id as its subject CN; then the individual enrollment of
    /// that id (which takes precedence) must list the leaf in `clientCertificates`, or else
    /// the chain must reach an X.509 group's `signingCertificates`.
    pub(crate) fn match_x509(
        &self,
        registration_id: &str,
        chain: &[CertificateDer<'_>],
        now: u64,
    ) -> Result<X509Match, DpsError> {
        let leaf = chain
            .first()
            .ok_or_else(|| refused("Neither a SAS token nor a client certificate."))?;
        let info = CertificateInfo::parse(leaf)
            .map_err(|_| refused("The client certificate is unreadable."))?;
        let now_i = i64::try_from(now).unwrap_or(i64::MAX);
        if now_i < info.not_before || now_i >= info.not_after {
            return Err(refused(
                "The client certificate is expired or not yet valid.",
            ));
        }
        if info.common_name.as_deref() != Some(registration_id) {
            return Err(refused(
                "The client certificate's subject CN is not the registration id.",
            ));
        }
        let s = self.lock();
        if let Some(e) = s.individual.get(registration_id) {
            let listed = e.attestation.kind == AttestationType::X509
                && e.attestation
                    .x509
                    .as_ref()
                    .is_some_and(|x| client_certificates(x).iter().any(|c| c == leaf));
            return if listed {
                Ok(X509Match::Individual)
            } else {
                Err(refused(
                    "The client certificate is not the individual enrollment's.",
                ))
            };
        }
        s.groups
            .values()
            .find(|g| {
                g.attestation.kind == AttestationType::X509
                    && g.attestation
                        .x509
                        .as_ref()
                        .and_then(|x| signing_cas(x).ok())
                        .is_some_and(|cas| cas.verify(chain, now).is_ok())
            })
            .map(|g| X509Match::Group(g.enrollment_group_id.clone()))
            .ok_or_else(|| refused("The client certificate chains to no X.509 enrollment group."))
    }

    /// Whether `chain` reaches the signing certificate of an X.509 enrollment group: the
    /// hub trusts these CAs for the `certificateAuthority` devices DPS assigns to it.
    pub(crate) fn trusts_chain(&self, chain: &[CertificateDer<'_>], now: u64) -> bool {
        let s = self.lock();
        s.groups.values().any(|g| {
            g.attestation.kind == AttestationType::X509
                && g.attestation
                    .x509
                    .as_ref()
                    .and_then(|x| signing_cas(x).ok())
                    .is_some_and(|cas| cas.verify(chain, now).is_ok())
        })
    }
}
