//! Identity registry models: devices, modules, their keys, and registry statistics.

use crate::twin::{Capabilities, ConnectionState, DeviceStatus};
use crate::{Secret, Timestamp};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The pair of symmetric keys of an identity.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SymmetricKey {
    /// Primary key (base64).
    #[serde(default)]
    pub primary_key: Option<Secret>,
    /// Secondary key (base64).
    #[serde(default)]
    pub secondary_key: Option<Secret>,
}

impl SymmetricKey {
    /// Both keys.
    pub fn new(primary: Secret, secondary: Secret) -> Self {
        Self {
            primary_key: Some(primary),
            secondary_key: Some(secondary),
        }
    }
}

impl fmt::Debug for SymmetricKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SymmetricKey")
            .field("primary_key", &self.primary_key.as_ref().map(|_| ".."))
            .field("secondary_key", &self.secondary_key.as_ref().map(|_| ".."))
            .finish()
    }
}

/// Certificate thumbprints for X.509 identities.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct X509Thumbprint {
    /// Primary thumbprint.
    #[serde(default)]
    pub primary_thumbprint: Option<String>,
    /// Secondary thumbprint.
    #[serde(default)]
    pub secondary_thumbprint: Option<String>,
}

/// How an identity authenticates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct AuthenticationMechanism {
    /// Symmetric keys (for `sas`).
    #[serde(default)]
    pub symmetric_key: Option<SymmetricKey>,
    /// Thumbprints (for `selfSigned`).
    #[serde(default)]
    pub x509_thumbprint: Option<X509Thumbprint>,
    /// `sas`, `selfSigned`, `certificateAuthority` or `none`.
    #[serde(rename = "type", default = "sas")]
    pub kind: String,
}

fn sas() -> String {
    "sas".to_owned()
}

impl Default for AuthenticationMechanism {
    fn default() -> Self {
        Self {
            symmetric_key: None,
            x509_thumbprint: None,
            kind: sas(),
        }
    }
}

impl AuthenticationMechanism {
    /// SAS authentication with the given keys.
    pub fn sas(keys: SymmetricKey) -> Self {
        Self {
            symmetric_key: Some(keys),
            ..Default::default()
        }
    }

    /// X.509 authentication by certificate thumbprint (`selfSigned`): the device presents a
    /// certificate whose SHA-1 or SHA-256 thumbprint is one of these.
    ///
    /// ```
    /// use iot_common::{Thumbprint, registry::AuthenticationMechanism};
    /// let auth = AuthenticationMechanism::self_signed(Thumbprint::sha256(b"der"), None);
    /// assert_eq!(auth.kind, "selfSigned");
    /// ```
    pub fn self_signed(primary: crate::Thumbprint, secondary: Option<crate::Thumbprint>) -> Self {
        Self {
            symmetric_key: None,
            x509_thumbprint: Some(X509Thumbprint {
                primary_thumbprint: Some(primary.to_string()),
                secondary_thumbprint: secondary.map(|t| t.to_string()),
            }),
            kind: "selfSigned".to_owned(),
        }
    }

    /// X.509 authentication by a CA registered with the hub (`certificateAuthority`): the
    /// device's certificate chains to it and its subject CN is the device id.
    pub fn certificate_authority() -> Self {
        Self {
            symmetric_key: None,
            x509_thumbprint: None,
            kind: "certificateAuthority".to_owned(),
        }
    }
}

/// A device identity (`GET /devices/{id}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Device {
    /// Device id.
    pub device_id: String,
    /// Distinguishes identities that reused an id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation_id: Option<String>,
    /// Opaque identity etag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Connected or not.
    #[serde(default)]
    pub connection_state: ConnectionState,
    /// Enabled or disabled.
    #[serde(default)]
    pub status: DeviceStatus,
    /// Why the status was set.
    #[serde(default)]
    pub status_reason: Option<String>,
    /// When the connection state changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_state_updated_time: Option<Timestamp>,
    /// When the status changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_updated_time: Option<Timestamp>,
    /// Last activity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activity_time: Option<Timestamp>,
    /// Pending cloud-to-device messages.
    #[serde(default)]
    pub cloud_to_device_message_count: u64,
    /// Credentials.
    #[serde(default)]
    pub authentication: AuthenticationMechanism,
    /// Capabilities.
    #[serde(default)]
    pub capabilities: Capabilities,
}

impl Device {
    /// A new, enabled SAS device; the hub generates keys when `keys` is `None`.
    pub fn new(device_id: impl Into<String>, keys: Option<SymmetricKey>) -> Self {
        Self {
            device_id: device_id.into(),
            authentication: AuthenticationMechanism::sas(keys.unwrap_or_default()),
            ..Default::default()
        }
    }
}

/// A module identity (`GET /devices/{id}/modules/{mid}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Module {
    /// Module id.
    pub module_id: String,
    /// Device id.
    #[serde(default)]
    pub device_id: String,
    /// Who manages it (e.g. `IotEdge`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_by: Option<String>,
    /// Generation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation_id: Option<String>,
    /// Opaque etag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Connected or not.
    #[serde(default)]
    pub connection_state: ConnectionState,
    /// When the connection state changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_state_updated_time: Option<Timestamp>,
    /// Last activity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activity_time: Option<Timestamp>,
    /// Pending cloud-to-device messages.
    #[serde(default)]
    pub cloud_to_device_message_count: u64,
    /// Credentials.
    #[serde(default)]
    pub authentication: AuthenticationMechanism,
}

impl Module {
    /// A new SAS module; the hub generates keys when `keys` is `None`.
    pub fn new(
        device_id: impl Into<String>,
        module_id: impl Into<String>,
        keys: Option<SymmetricKey>,
    ) -> Self {
        Self {
            module_id: module_id.into(),
            device_id: device_id.into(),
            authentication: AuthenticationMechanism::sas(keys.unwrap_or_default()),
            ..Default::default()
        }
    }
}

/// `GET /statistics/devices`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct RegistryStatistics {
    /// All devices.
    pub total_device_count: u64,
    /// Enabled devices.
    pub enabled_device_count: u64,
    /// Disabled devices.
    pub disabled_device_count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_debug_redacts_keys_and_serde_keeps_them() {
        let key = Secret::new("a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s=");
        let d = Device::new("d", Some(SymmetricKey::new(key.clone(), key)));
        assert!(!format!("{d:?}").contains("a2tr"));
        let json = serde_json::to_string(&d).unwrap();
        assert!(json.contains("a2tr"));
        let back: Device = serde_json::from_str(&json).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn reads_the_python_sdk_create_body() {
        let body = r#"{"deviceId": "offlineDevice", "status": "enabled", "authentication": {"symmetricKey": {"primaryKey": "a2tr", "secondaryKey": null}, "type": "sas"}, "capabilities": {"iotEdge": false}}"#;
        let d: Device = serde_json::from_str(body).unwrap();
        assert_eq!(d.device_id, "offlineDevice");
        let keys = d.authentication.symmetric_key.unwrap();
        assert!(keys.primary_key.is_some() && keys.secondary_key.is_none());
    }
}
