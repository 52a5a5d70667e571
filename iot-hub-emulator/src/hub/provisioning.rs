//! What the hub does for its Device Provisioning Service: create or update the assigned
//! device, and give a first registration the enrollment's initial twin.

use super::Hub;
use crate::dps::{ProvisionedDevice, Provisioner};
use iot_common::ErrorCode;
use iot_common::registry::{AuthenticationMechanism, Device};
use serde_json::{Value, json};

impl Provisioner for Hub {
    fn provision(&self, d: &ProvisionedDevice) -> Result<(), String> {
        match self.get_device(&d.device_id) {
            Ok(mut existing) => {
                if existing.authentication.symmetric_key.as_ref() != Some(&d.keys) {
                    existing.authentication = AuthenticationMechanism::sas(d.keys.clone());
                    let etag = existing.etag.clone();
                    self.put_device(&d.device_id, existing, etag.as_deref().or(Some("*")))
                        .map_err(|e| e.message)?;
                }
            }
            Err(e) if e.code == ErrorCode::DeviceNotFound => {
                self.put_device(
                    &d.device_id,
                    Device::new(&d.device_id, Some(d.keys.clone())),
                    None,
                )
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
