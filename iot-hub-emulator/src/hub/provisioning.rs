//! What the hub does for its Device Provisioning Service: create or update the assigned
//! device, and give a first registration the enrollment's initial twin.

use super::Hub;
use crate::dps::{ProvisionedDevice, Provisioner, X509Credential};
use iot_common::ErrorCode;
use iot_common::registry::{AuthenticationMechanism, Device, SymmetricKey, X509Thumbprint};
use serde_json::{Value, json};

/// The hub identity's authentication for a provisioned device: its SAS keys, or for X.509
/// attestation `selfSigned` with the registered leaf's thumbprint or `certificateAuthority`.
fn authentication(d: &ProvisionedDevice) -> AuthenticationMechanism {
    let mut auth = AuthenticationMechanism::sas(d.keys.clone());
    match &d.x509 {
        None => {}
        Some(X509Credential::SelfSigned(thumbprint)) => {
            auth.kind = "selfSigned".into();
            let mut t = X509Thumbprint::default();
            t.primary_thumbprint = Some(thumbprint.to_string());
            auth.x509_thumbprint = Some(t);
            auth.symmetric_key = Some(SymmetricKey::default());
        }
        Some(X509Credential::CertificateAuthority) => {
            auth.kind = "certificateAuthority".into();
            auth.x509_thumbprint = Some(X509Thumbprint::default());
            auth.symmetric_key = Some(SymmetricKey::default());
        }
    }
    auth
}

impl Provisioner for Hub {
    fn provision(&self, d: &ProvisionedDevice) -> Result<(), String> {
        let auth = authentication(d);
        match self.get_device(&d.device_id) {
            Ok(mut existing) => {
                if existing.authentication != auth {
                    existing.authentication = auth;
                    let etag = existing.etag.clone();
                    self.put_device(&d.device_id, existing, etag.as_deref().or(Some("*")))
                        .map_err(|e| e.message)?;
                }
            }
            Err(e) if e.code == ErrorCode::DeviceNotFound => {
                let mut device = Device::new(&d.device_id, None);
                device.authentication = auth;
                self.put_device(&d.device_id, device, None)
                    .map_err(|e| e.message)?;
            }
            Err(e) => return Err(e.message),
        }
        if d.reset_twin
            && let Some(initial) = &d.initial_twin
        {
            // The enrollment's `initialTwin` has the service twin's shape; only tags and
            // desired properties are the service's to set. Merged, so that a device created
            // through the registry before its first registration keeps what it had.
            let mut body = serde_json::Map::new();
            if let Some(tags) = initial.get("tags").filter(|t| t.is_object()) {
                body.insert("tags".into(), tags.clone());
            }
            if let Some(desired) = initial
                .pointer("/properties/desired")
                .filter(|d| d.is_object())
            {
                body.insert("properties".into(), json!({ "desired": desired }));
            }
            if !body.is_empty() {
                self.update_twin(&d.device_id, None, &Value::Object(body), None, false)
                    .map_err(|e| e.message)?;
            }
        }
        Ok(())
    }
}
