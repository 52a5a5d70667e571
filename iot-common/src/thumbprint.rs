//! X.509 certificate thumbprints as IoT Hub and DPS store them: the SHA-1 or SHA-256 hash of
//! the certificate's DER bytes, in hex.

use serde::{Deserialize, Serialize};
use sha1::Digest as _;
use std::fmt;

/// A certificate thumbprint: 40 hex digits (SHA-1) or 64 (SHA-256), kept in upper case.
///
/// Parsing is forgiving the way the hub is: any case, `:` separators ignored.
///
/// ```
/// use iot_common::Thumbprint;
/// let t: Thumbprint = "58:c6:f4:e6:8d:db:8e:83:cc:80:e8:4e:fc:49:60:38:0b:43:77:37".parse()?;
/// assert_eq!(t.to_string(), "58C6F4E68DDB8E83CC80E84EFC4960380B437737");
/// assert_eq!(Thumbprint::sha256(b"der bytes").to_string().len(), 64);
/// # Ok::<(), iot_common::ThumbprintError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Thumbprint(String);

/// Why a thumbprint string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ThumbprintError {
    /// Not 40 (SHA-1) or 64 (SHA-256) hex digits once separators are removed.
    #[error("a thumbprint is 40 (SHA-1) or 64 (SHA-256) hex digits, this one has {0}")]
    Length(usize),
    /// A character that is neither a hex digit nor `:`.
    #[error("a thumbprint holds only hex digits and `:`")]
    NotHex,
}

impl Thumbprint {
    /// The SHA-1 thumbprint of a DER certificate.
    pub fn sha1(der: &[u8]) -> Self {
        Self(hex_upper(&sha1::Sha1::digest(der)))
    }

    /// The SHA-256 thumbprint of a DER certificate.
    pub fn sha256(der: &[u8]) -> Self {
        Self(hex_upper(&sha2::Sha256::digest(der)))
    }

    /// Whether this thumbprint is the hash of `der` (with its own algorithm, told by length).
    pub fn matches(&self, der: &[u8]) -> bool {
        let actual = if self.0.len() == 40 {
            Self::sha1(der)
        } else {
            Self::sha256(der)
        };
        // Thumbprints are public (the hub shows them); no constant-time compare needed.
        actual == *self
    }

    /// The upper-case hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn hex_upper(bytes: &[u8]) -> String {
    use fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02X}");
            s
        })
}

impl std::str::FromStr for Thumbprint {
    type Err = ThumbprintError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut digits = String::with_capacity(64);
        for c in s.trim().chars().filter(|c| *c != ':') {
            if !c.is_ascii_hexdigit() {
                return Err(ThumbprintError::NotHex);
            }
            digits.push(c.to_ascii_uppercase());
        }
        match digits.len() {
            40 | 64 => Ok(Self(digits)),
            n => Err(ThumbprintError::Length(n)),
        }
    }
}

impl TryFrom<String> for Thumbprint {
    type Error = ThumbprintError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Thumbprint> for String {
    fn from(t: Thumbprint) -> Self {
        t.0
    }
}

impl fmt::Display for Thumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Thumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Thumbprint({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_match_their_own_algorithm_only() {
        let der = b"not really a certificate";
        let sha1 = Thumbprint::sha1(der);
        let sha256 = Thumbprint::sha256(der);
        assert_eq!(sha1.as_str().len(), 40);
        assert!(sha1.matches(der) && sha256.matches(der));
        assert!(!sha1.matches(b"another") && !sha256.matches(b"another"));
        let lower: Thumbprint = sha256.as_str().to_lowercase().parse().unwrap();
        assert_eq!(lower, sha256);
    }

    #[test]
    fn bad_thumbprints_are_refused_with_the_reason() {
        assert_eq!("abc".parse::<Thumbprint>(), Err(ThumbprintError::Length(3)));
        assert_eq!(
            "zz".repeat(20).parse::<Thumbprint>(),
            Err(ThumbprintError::NotHex)
        );
        let json: Result<Thumbprint, _> = serde_json::from_str("\"12\"");
        assert!(json.is_err());
    }

    #[test]
    fn serialises_as_the_hub_shows_it() {
        let t: Thumbprint = "9129ab7800995267eea517efc7f59f849e34a8804dc262dbf643e41ea828b6e0"
            .parse()
            .unwrap();
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            "\"9129AB7800995267EEA517EFC7F59F849E34A8804DC262DBF643E41EA828B6E0\""
        );
    }
}
