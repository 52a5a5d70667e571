//! Device client certificates: what a TLS peer presented, the fields of its leaf that
//! authentication needs (subject CN, validity), and the device CAs registered with the
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

/// The fields of a leaf certificate that device authentication reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LeafInfo {
    /// The subject's first common name, when it has one in a string type.
    pub(crate) common_name: Option<String>,
    /// Validity, in Unix seconds.
    pub(crate) not_before: i64,
    pub(crate) not_after: i64,
}

impl LeafInfo {
    /// Reads the subject CN and validity of a DER certificate; `None` when it is not one.
    pub(crate) fn parse(der: &[u8]) -> Option<Self> {
        let (0x30, cert, _) = tlv(der)? else {
            return None;
        };
        let (0x30, tbs, _) = tlv(cert)? else {
            return None;
        };
        let mut rest = tbs;
        let mut next = || -> Option<(u8, &[u8])> {
            let (tag, body, r) = tlv(rest)?;
            rest = r;
            Some((tag, body))
        };
        let mut field = next()?;
        if field.0 == 0xA0 {
            field = next()?; // explicit version; the serial follows
        }
        let (0x02, _serial) = field else { return None };
        let (0x30, _signature) = next()? else {
            return None;
        };
        let (0x30, _issuer) = next()? else {
            return None;
        };
        let (0x30, validity) = next()? else {
            return None;
        };
        let (0x30, subject) = next()? else {
            return None;
        };
        let (t1, nb, r) = tlv(validity)?;
        let (t2, na, _) = tlv(r)?;
        Some(Self {
            common_name: common_name(subject),
            not_before: time(t1, nb)?,
            not_after: time(t2, na)?,
        })
    }
}

/// One DER tag-length-value at the start of `input`: its tag, contents and what follows.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let (bytes, rest) = rest.split_at_checked(n)?;
        (
            bytes.iter().fold(0usize, |a, b| (a << 8) | usize::from(*b)),
            rest,
        )
    };
    let (body, rest) = rest.split_at_checked(len)?;
    Some((tag, body, rest))
}

/// The first `CN` (OID 2.5.4.3) of an X.501 Name, in a UTF8, printable, IA5 or T61 string.
fn common_name(mut name: &[u8]) -> Option<String> {
    const CN: &[u8] = &[0x55, 0x04, 0x03];
    while let Some((0x31, mut set, rest)) = tlv(name) {
        name = rest;
        while let Some((0x30, attr, r)) = tlv(set) {
            set = r;
            let (0x06, oid, value) = tlv(attr)? else {
                return None;
            };
            if oid == CN {
                let (tag, text, _) = tlv(value)?;
                return matches!(tag, 0x0c | 0x13 | 0x14 | 0x16)
                    .then(|| String::from_utf8(text.to_vec()).ok())
                    .flatten();
            }
        }
    }
    None
}

/// A UTCTime (`YYMMDDHHMMSSZ`, years 50-99 are 19xx) or GeneralizedTime
/// (`YYYYMMDDHHMMSSZ`) as Unix seconds.
fn time(tag: u8, body: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(body).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 => {
            let yy: i32 = text.get(..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, text.get(2..)?)
        }
        0x18 => (text.get(..4)?.parse().ok()?, text.get(4..)?),
        _ => return None,
    };
    if rest.len() != 10 || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |i: usize| rest.get(i..i + 2).and_then(|s| s.parse::<u32>().ok());
    let date = chrono::NaiveDate::from_ymd_opt(year, n(0)?, n(2)?)?;
    Some(date.and_hms_opt(n(4)?, n(6)?, n(8)?)?.and_utc().timestamp())
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
        let info = LeafInfo::parse(cert("dev-1").der()).unwrap();
        assert_eq!(info.common_name.as_deref(), Some("dev-1"));
        assert_eq!(info.not_before, 1_577_923_200); // 2020-01-02T00:00:00Z
        assert_eq!(info.not_after, 2_845_584_000); // 2060-03-04T00:00:00Z (GeneralizedTime)
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert_eq!(LeafInfo::parse(b""), None);
        assert_eq!(LeafInfo::parse(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        let der = cert("x").der().to_vec();
        // Every truncation, and every single-byte corruption, is refused or read without a
        // panic; a truncated certificate is never read as one.
        for end in 0..der.len() {
            assert_eq!(LeafInfo::parse(&der[..end]), None);
        }
        for i in 0..der.len() {
            let mut bad = der.clone();
            bad[i] ^= 0xff;
            let _ = LeafInfo::parse(&bad);
        }
    }

    #[test]
    fn a_pem_without_certificates_is_refused_by_name() {
        let e = DeviceCas::from_pems(&[("ca.pem".into(), "hello".into())]).unwrap_err();
        assert!(e.to_string().contains("ca.pem"), "{e}");
        assert!(DeviceCas::default().verify(&[], 0).is_err());
    }
}
