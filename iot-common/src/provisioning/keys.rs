//! Derived keys for symmetric-key enrollment groups, and registration id rules.

use super::ProvisioningError;
use crate::{Secret, sas::SasError};
use base64::Engine as _;
use hmac::Mac as _;

/// The longest registration id DPS accepts.
pub const MAX_REGISTRATION_ID_LEN: usize = 128;

/// The key a device in a symmetric-key enrollment group signs with:
/// `base64(HMAC-SHA256(base64decode(group_key), registration_id))`.
///
/// DPS checks a registration under a group with this key, and the device identity it creates
/// in the hub gets the same key, so the result is also the device's hub key.
///
/// ```
/// use iot_common::{Secret, provisioning::derive_device_key};
/// let group = Secret::new("Z3JvdXAta2V5LTAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OQ==");
/// let key = derive_device_key(&group, "dev-sym-1")?;
/// assert_eq!(key.expose(), "yPL9QT/tTWKRYzS9kl//4PPrl6+cNyBA1FKqlh67HK0=");
/// # Ok::<(), iot_common::SasError>(())
/// ```
///
/// # Errors
/// [`SasError::InvalidKey`] when the group key is not base64.
pub fn derive_device_key(group_key: &Secret, registration_id: &str) -> Result<Secret, SasError> {
    let mut mac = crate::sas::hmac(group_key)?;
    mac.update(registration_id.as_bytes());
    let derived = mac.finalize().into_bytes();
    Ok(Secret::new(
        base64::engine::general_purpose::STANDARD.encode(derived),
    ))
}

/// Checks a registration id against DPS's rules: 1 to 128 characters, lower-case ASCII
/// letters, digits and `-` `.` `_` `:`.
///
/// # Errors
/// [`ProvisioningError::InvalidRegistrationId`] naming the rule that failed.
pub fn validate_registration_id(registration_id: &str) -> Result<(), ProvisioningError> {
    let invalid = |reason: &'static str| ProvisioningError::InvalidRegistrationId { reason };
    if registration_id.is_empty() {
        return Err(invalid("it is empty"));
    }
    if registration_id.len() > MAX_REGISTRATION_ID_LEN {
        return Err(invalid("it is longer than 128 characters"));
    }
    let allowed = |c: char| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '_' | ':')
    };
    if !registration_id.chars().all(allowed) {
        return Err(invalid(
            "only lower-case letters, digits and - . _ : are allowed",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_key_matches_the_reference_vector() {
        let group =
            Secret::new("Z3JvdXAta2V5LTAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OQ==");
        let key = derive_device_key(&group, "dev-sym-1").unwrap();
        assert_eq!(key.expose(), "yPL9QT/tTWKRYzS9kl//4PPrl6+cNyBA1FKqlh67HK0=");
    }

    #[test]
    fn a_group_key_that_is_not_base64_is_refused() {
        let err = derive_device_key(&Secret::new("not base64!"), "dev").unwrap_err();
        assert_eq!(err, SasError::InvalidKey);
    }

    #[test]
    fn registration_ids_follow_the_service_rules() {
        assert!(validate_registration_id("dev-sym-1").is_ok());
        assert!(validate_registration_id("a.b_c:d").is_ok());
        for bad in ["", "Dev", "dev 1", "dév", &"a".repeat(129)] {
            assert!(validate_registration_id(bad).is_err(), "{bad:?}");
        }
    }
}
