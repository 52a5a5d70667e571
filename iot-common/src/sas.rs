//! Shared access signature tokens: signing, parsing and constant-time verification.

use crate::{Secret, encoding};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

const PREFIX: &str = "SharedAccessSignature ";

/// Why a token could not be built, parsed or verified. Never contains key or signature bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SasError {
    /// The key is not valid base64.
    #[error("shared access key is not valid base64")]
    InvalidKey,
    /// The token does not start with `SharedAccessSignature `.
    #[error("token does not start with `SharedAccessSignature `")]
    MissingPrefix,
    /// A required field (`sr`, `sig`, `se`) is missing.
    #[error("token is missing `{0}`")]
    MissingField(&'static str),
    /// A field appears twice or is malformed.
    #[error("token field `{0}` is malformed or repeated")]
    MalformedField(&'static str),
    /// The signature does not match the key.
    #[error("token signature does not match")]
    BadSignature,
    /// The token expired.
    #[error("token expired")]
    Expired,
}

/// A parsed or freshly signed SAS token.
///
/// ```
/// use iot_common::{SasToken, Secret};
/// let key = Secret::new("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=");
/// let token = SasToken::for_device("myhub.azure-devices.net", "dev1", &key, 1_700_000_000)?;
/// assert_eq!(
///     token.as_secret().expose(),
///     "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdev1&sig=i%2BYmMcSSZc4KzBi6ejz3l0iL%2B2sN0CE3q6vSm837h2g%3D&se=1700000000"
/// );
/// token.verify(&key)?;
/// # Ok::<(), iot_common::SasError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SasToken {
    resource: String,
    signature: Secret,
    expiry_raw: String,
    expiry: u64,
    key_name: Option<String>,
    wire: Secret,
}

/// Service Bus's HMAC: keyed with the key's text.
fn text_hmac(key: &Secret) -> Result<Hmac<Sha256>, SasError> {
    let key = key.expose().trim();
    if key.is_empty() {
        return Err(SasError::InvalidKey);
    }
    Hmac::<Sha256>::new_from_slice(key.as_bytes()).map_err(|_| SasError::InvalidKey)
}

pub(crate) fn hmac(key: &Secret) -> Result<Hmac<Sha256>, SasError> {
    let key = base64::engine::general_purpose::STANDARD
        .decode(key.expose().trim())
        .map_err(|_| SasError::InvalidKey)?;
    Hmac::<Sha256>::new_from_slice(&key).map_err(|_| SasError::InvalidKey)
}

impl SasToken {
    /// Signs a token for `resource_uri` (for example `{host}/devices/{id}`), expiring at
    /// `expires_at` (seconds since the Unix epoch). The resource is percent-encoded with
    /// upper-case hex before signing, as the Python, Node and C# SDKs do.
    ///
    /// # Errors
    /// [`SasError::InvalidKey`] when the key is not base64.
    pub fn sign(
        resource_uri: &str,
        key: &Secret,
        key_name: Option<&str>,
        expires_at: u64,
    ) -> Result<Self, SasError> {
        Self::sign_with(resource_uri, hmac(key)?, key_name, expires_at)
    }

    /// An Event Hubs (Service Bus) token for `uri`, e.g. `sb://{host}/{entity}`: what an Event
    /// Hub-compatible endpoint takes on its `$cbs` node. Unlike IoT Hub's, Service Bus signs
    /// with the key's text (its UTF-8 bytes) as the HMAC key, not its base64-decoded bytes.
    ///
    /// ```
    /// use iot_common::{SasToken, Secret};
    /// let key = Secret::new("c2VjcmV0");
    /// let t = SasToken::for_event_hub("sb://localhost/myhub", "iothubowner", &key, 4_000_000_000)?;
    /// assert!(t.verify_event_hub(&key).is_ok());
    /// assert!(t.verify(&key).is_err());
    /// assert_eq!(t.resource(), "sb://localhost/myhub");
    /// # Ok::<(), iot_common::SasError>(())
    /// ```
    ///
    /// # Errors
    /// [`SasError::InvalidKey`] when the key is empty.
    pub fn for_event_hub(
        uri: &str,
        policy: &str,
        key: &Secret,
        expires_at: u64,
    ) -> Result<Self, SasError> {
        Self::sign_with(uri, text_hmac(key)?, Some(policy), expires_at)
    }

    fn sign_with(
        resource_uri: &str,
        mut mac: Hmac<Sha256>,
        key_name: Option<&str>,
        expires_at: u64,
    ) -> Result<Self, SasError> {
        let resource = encoding::encode(resource_uri).into_owned();
        let expiry_raw = expires_at.to_string();
        mac.update(resource.as_bytes());
        mac.update(b"\n");
        mac.update(expiry_raw.as_bytes());
        let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        let sig = encoding::encode(&sig).into_owned();
        let mut wire = format!("{PREFIX}sr={resource}&sig={sig}&se={expiry_raw}");
        if let Some(name) = key_name {
            wire.push_str("&skn=");
            wire.push_str(&encoding::encode(name));
        }
        Ok(Self {
            resource,
            signature: Secret::new(sig),
            expiry_raw,
            expiry: expires_at,
            key_name: key_name.map(str::to_owned),
            wire: Secret::new(wire),
        })
    }

    /// A device token: resource `{host}/devices/{device_id}`, no `skn`.
    ///
    /// # Errors
    /// [`SasError::InvalidKey`] when the key is not base64.
    pub fn for_device(
        host: &str,
        device_id: &str,
        key: &Secret,
        expires_at: u64,
    ) -> Result<Self, SasError> {
        Self::sign(
            &device_resource(host, device_id, None),
            key,
            None,
            expires_at,
        )
    }

    /// A module token: resource `{host}/devices/{device_id}/modules/{module_id}`, no `skn`.
    ///
    /// # Errors
    /// [`SasError::InvalidKey`] when the key is not base64.
    pub fn for_module(
        host: &str,
        device_id: &str,
        module_id: &str,
        key: &Secret,
        expires_at: u64,
    ) -> Result<Self, SasError> {
        let resource = device_resource(host, device_id, Some(module_id));
        Self::sign(&resource, key, None, expires_at)
    }

    /// A service token signed with a shared access policy: resource `{host}`, `skn={policy}`.
    ///
    /// # Errors
    /// [`SasError::InvalidKey`] when the key is not base64.
    pub fn for_service(
        host: &str,
        policy: &str,
        key: &Secret,
        expires_at: u64,
    ) -> Result<Self, SasError> {
        Self::sign(host, key, Some(policy), expires_at)
    }

    /// Parses a token; the fields may come in any order, unknown fields are ignored.
    ///
    /// # Errors
    /// [`SasError::MissingPrefix`], [`SasError::MissingField`] or [`SasError::MalformedField`].
    pub fn parse(token: &str) -> Result<Self, SasError> {
        let token = token.trim();
        let body = token.strip_prefix(PREFIX).ok_or(SasError::MissingPrefix)?;
        let (mut sr, mut sig, mut se, mut skn) = (None, None, None, None);
        for pair in body.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let (slot, name) = match k {
                "sr" => (&mut sr, "sr"),
                "sig" => (&mut sig, "sig"),
                "se" => (&mut se, "se"),
                "skn" => (&mut skn, "skn"),
                _ => continue,
            };
            if slot.is_some() || v.is_empty() {
                return Err(SasError::MalformedField(name));
            }
            *slot = Some(v);
        }
        let resource = sr.ok_or(SasError::MissingField("sr"))?.to_owned();
        let signature = Secret::new(sig.ok_or(SasError::MissingField("sig"))?);
        let expiry_raw = se.ok_or(SasError::MissingField("se"))?.to_owned();
        let expiry = expiry_raw
            .parse::<u64>()
            .map_err(|_| SasError::MalformedField("se"))?;
        let key_name = match skn {
            Some(n) => Some(
                encoding::decode(n)
                    .map_err(|_| SasError::MalformedField("skn"))?
                    .into_owned(),
            ),
            None => None,
        };
        Ok(Self {
            resource,
            signature,
            expiry_raw,
            expiry,
            key_name,
            wire: Secret::new(token),
        })
    }

    /// Checks the signature against `key` in constant time. The HMAC is computed over `sr`
    /// exactly as it appears in the token (raw, upper- or lower-case hex), as the hub does.
    /// Expiry is not checked here; see [`SasToken::check_expiry`].
    ///
    /// # Errors
    /// [`SasError::BadSignature`] or [`SasError::InvalidKey`].
    pub fn verify(&self, key: &Secret) -> Result<(), SasError> {
        self.verify_with(hmac(key)?)
    }

    /// Checks the signature as Service Bus does (see [`SasToken::for_event_hub`]). Does not
    /// check expiry.
    ///
    /// # Errors
    /// [`SasError::BadSignature`], or [`SasError::InvalidKey`] for an empty key.
    pub fn verify_event_hub(&self, key: &Secret) -> Result<(), SasError> {
        self.verify_with(text_hmac(key)?)
    }

    fn verify_with(&self, mut mac: Hmac<Sha256>) -> Result<(), SasError> {
        let sig = encoding::decode(self.signature.expose()).map_err(|_| SasError::BadSignature)?;
        let sig = base64::engine::general_purpose::STANDARD
            .decode(sig.as_bytes())
            .map_err(|_| SasError::BadSignature)?;
        mac.update(self.resource.as_bytes());
        mac.update(b"\n");
        mac.update(self.expiry_raw.as_bytes());
        mac.verify_slice(&sig).map_err(|_| SasError::BadSignature)
    }

    /// Fails with [`SasError::Expired`] when `now` (seconds since the Unix epoch) is past the
    /// token's expiry.
    ///
    /// # Errors
    /// [`SasError::Expired`].
    pub fn check_expiry(&self, now: u64) -> Result<(), SasError> {
        if now > self.expiry {
            Err(SasError::Expired)
        } else {
            Ok(())
        }
    }

    /// The `sr` field as it appears in the token (usually percent-encoded).
    pub fn raw_resource(&self) -> &str {
        &self.resource
    }

    /// The `sr` field, percent-decoded (once).
    pub fn resource(&self) -> String {
        encoding::decode(&self.resource)
            .map(|s| s.into_owned())
            .unwrap_or_else(|_| self.resource.clone())
    }

    /// Expiry, seconds since the Unix epoch.
    pub fn expires_at(&self) -> u64 {
        self.expiry
    }

    /// The policy name (`skn`), for policy-signed tokens.
    pub fn key_name(&self) -> Option<&str> {
        self.key_name.as_deref()
    }

    /// The token as sent on the wire (`SharedAccessSignature sr=…`).
    pub fn as_secret(&self) -> &Secret {
        &self.wire
    }
}

impl fmt::Debug for SasToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SasToken")
            .field("resource", &self.resource)
            .field("expires_at", &self.expiry)
            .field("key_name", &self.key_name)
            .finish_non_exhaustive()
    }
}

/// `time` as SAS expiries count it: whole seconds since the Unix epoch (0 before it). The
/// clients pass `SystemTime::now()`; this crate reads no clock itself.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_999);
/// assert_eq!(iot_common::sas::unix_seconds(t), 1_700_000_000);
/// ```
pub fn unix_seconds(time: std::time::SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// When a token valid for `ttl` should be replaced, counted from its signing: after 85 % of
/// its lifetime, earlier when the holder needs `lead` to act on it (the device client notices
/// a due renewal only between MQTT events, so it passes twice its keep-alive), never before
/// half of it. Both clients renew by this one rule.
///
/// ```
/// use std::time::Duration;
/// use iot_common::sas::renew_after;
/// let hour = Duration::from_secs(3600);
/// assert_eq!(renew_after(hour, Duration::ZERO), Duration::from_secs(3060));
/// assert_eq!(renew_after(hour, Duration::from_secs(1200)), Duration::from_secs(2400));
/// assert_eq!(renew_after(hour, hour), Duration::from_secs(1800));
/// ```
pub fn renew_after(ttl: std::time::Duration, lead: std::time::Duration) -> std::time::Duration {
    let margin = ttl.mul_f64(0.15).max(lead);
    ttl.saturating_sub(margin).max(ttl / 2)
}

/// The resource URI of a device or module identity: `{host}/devices/{id}[/modules/{mid}]`.
pub fn device_resource(host: &str, device_id: &str, module_id: Option<&str>) -> String {
    match module_id {
        Some(m) => format!("{host}/devices/{device_id}/modules/{m}"),
        None => format!("{host}/devices/{device_id}"),
    }
}

/// `true` when `scope` covers `target` by whole path segments (`a/b` covers `a/b/c`, not
/// `a/bc`); the host part compares case-insensitively and may omit or carry a `:port`.
pub fn scope_covers(scope: &str, target: &str) -> bool {
    fn split(s: &str) -> (&str, &str) {
        let s = s.trim_end_matches('/');
        match s.find('/') {
            Some(i) => (&s[..i], &s[i..]),
            None => (s, ""),
        }
    }
    fn bare(host: &str) -> &str {
        host.rsplit_once(':').map_or(host, |(h, p)| {
            if p.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        })
    }
    let (scope_host, scope_path) = split(scope);
    let (target_host, target_path) = split(target);
    if !bare(scope_host).eq_ignore_ascii_case(bare(target_host)) {
        return false;
    }
    target_path == scope_path
        || (target_path.starts_with(scope_path)
            && target_path.as_bytes().get(scope_path.len()) == Some(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const HOST: &str = "myhub.azure-devices.net";

    fn key() -> Secret {
        Secret::new(KEY)
    }

    // Vectors from the protocol reference, section 2.5.
    #[test]
    fn reference_vectors_byte_for_byte() {
        let t = SasToken::for_device(HOST, "dev1", &key(), 1_700_000_000).unwrap();
        assert_eq!(
            t.as_secret().expose(),
            "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdev1&sig=i%2BYmMcSSZc4KzBi6ejz3l0iL%2B2sN0CE3q6vSm837h2g%3D&se=1700000000"
        );
        let t = SasToken::for_module(HOST, "dev1", "mod1", &key(), 1_700_000_000).unwrap();
        assert_eq!(
            t.as_secret().expose(),
            "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdev1%2Fmodules%2Fmod1&sig=kA6xjFLkZvk4Cdh0nD8uWAzassq6PB47f7BepMMtmlY%3D&se=1700000000"
        );
        let t = SasToken::for_service(HOST, "iothubowner", &key(), 1_700_000_000).unwrap();
        assert_eq!(
            t.as_secret().expose(),
            "SharedAccessSignature sr=myhub.azure-devices.net&sig=iIzEw6hi6GK79RY5jNXO6QeQkSL%2FAx4zTmy44X2G1VY%3D&se=1700000000&skn=iothubowner"
        );
    }

    #[test]
    fn verifies_every_spelling_of_sr_as_received() {
        // C SDK style: raw sr, lower-case hex signature.
        let c_style = "SharedAccessSignature sr=myhub.azure-devices.net/devices/dev1&sig=MXrV7dIYA4Nv1boM3d4kgQQtxA3MyMN%2fBRPwZ8fvsA0%3d&se=1700000000";
        SasToken::parse(c_style).unwrap().verify(&key()).unwrap();
        // Lower-case hex sr (doc-example style), fields in another order.
        let lower = "SharedAccessSignature se=1700000000&sig=dUk3ecSsggNPeQNG98fO6Pv16mCcXEgP6lT2QfotQ4s%3D&sr=myhub.azure-devices.net%2fdevices%2fdev1";
        let t = SasToken::parse(lower).unwrap();
        t.verify(&key()).unwrap();
        assert_eq!(t.resource(), "myhub.azure-devices.net/devices/dev1");
        // Python service SDK leaves `/` in the signature unencoded.
        let py = "SharedAccessSignature sr=myhub.azure-devices.net&sig=iIzEw6hi6GK79RY5jNXO6QeQkSL/Ax4zTmy44X2G1VY%3D&se=1700000000&skn=iothubowner";
        let t = SasToken::parse(py).unwrap();
        t.verify(&key()).unwrap();
        assert_eq!(t.key_name(), Some("iothubowner"));
    }

    #[test]
    fn wrong_key_and_tampering_are_refused() {
        let t = SasToken::for_device(HOST, "dev1", &key(), 1_700_000_000).unwrap();
        let other = Secret::new("AQECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=");
        assert_eq!(t.verify(&other), Err(SasError::BadSignature));
        let tampered = t.as_secret().expose().replace("dev1", "dev2");
        assert_eq!(
            SasToken::parse(&tampered).unwrap().verify(&key()),
            Err(SasError::BadSignature)
        );
        assert_eq!(t.check_expiry(1_700_000_001), Err(SasError::Expired));
        assert_eq!(t.check_expiry(1_700_000_000), Ok(()));
    }

    #[test]
    fn parse_errors() {
        assert_eq!(
            SasToken::parse("sr=a&sig=b&se=1"),
            Err(SasError::MissingPrefix)
        );
        assert_eq!(
            SasToken::parse("SharedAccessSignature sr=a&se=1"),
            Err(SasError::MissingField("sig"))
        );
        assert_eq!(
            SasToken::parse("SharedAccessSignature sr=a&sig=b&se=x"),
            Err(SasError::MalformedField("se"))
        );
        assert_eq!(
            SasToken::parse("SharedAccessSignature sr=a&sr=a&sig=b&se=1"),
            Err(SasError::MalformedField("sr"))
        );
    }

    #[test]
    fn debug_hides_signature() {
        let t = SasToken::for_device(HOST, "dev1", &key(), 1_700_000_000).unwrap();
        let dbg = format!("{t:?}");
        assert!(!dbg.contains("i%2BYm") && !dbg.contains("sig="), "{dbg}");
    }

    #[test]
    fn scope_rules() {
        assert!(scope_covers("h", "h/devices/d"));
        assert!(scope_covers("H:443", "h/devices/d"));
        assert!(scope_covers("h/devices", "h/devices/d/modules/m"));
        assert!(scope_covers("h/devices/d", "h/devices/d"));
        assert!(!scope_covers("h/devices/d", "h/devices/dd"));
        assert!(!scope_covers("h/devices/d", "h/devices/e"));
        assert!(!scope_covers("other", "h/devices/d"));
    }
}
