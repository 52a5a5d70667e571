//! Twin operations on the service side, and the notifications they trigger on the device side.

use super::registry::{DeviceRecord, etag_matches};
use super::twin_state::{DesiredChange, TwinState};
use super::{Hub, sub};
use crate::clock::now_string;
use crate::error::HubRefusal;
use crate::locks::lock;
use bytes::Bytes;
use iot_common::{Twin, topic};
use serde::Deserialize as _;
use serde_json::{Map, Value};
use std::sync::Arc;

/// The service view of a device or module twin, as the JSON document that `GET /twins`
/// returns and queries run over. Built directly as JSON: queries build one per twin per page.
pub(crate) fn service_twin_value(rec: &DeviceRecord, module_id: Option<&str>) -> Option<Value> {
    let d = &rec.device;
    let mut doc = Map::new();
    let mut put = |k: &str, v: Value| {
        doc.insert(k.to_owned(), v);
    };
    let text = |s: &Option<String>| s.as_ref().map_or(Value::Null, |s| Value::String(s.clone()));
    let time = |t: &Option<iot_common::Timestamp>| {
        t.as_ref()
            .map_or(Value::Null, |t| Value::String(t.to_string()))
    };
    put("deviceId", Value::String(d.device_id.clone()));
    let auth = match module_id {
        Some(m) => &rec.modules.get(m)?.module.authentication,
        None => &d.authentication,
    };
    put("authenticationType", Value::String(auth.kind.clone()));
    let thumbprints = auth.x509_thumbprint.clone().unwrap_or_default();
    put(
        "x509Thumbprint",
        serde_json::json!({
            "primaryThumbprint": thumbprints.primary_thumbprint,
            "secondaryThumbprint": thumbprints.secondary_thumbprint,
        }),
    );
    put(
        "cloudToDeviceMessageCount",
        Value::from(d.cloud_to_device_message_count),
    );
    let state = match module_id {
        None => {
            put("deviceEtag", text(&d.etag));
            put(
                "status",
                serde_json::to_value(d.status).unwrap_or(Value::Null),
            );
            if d.status_updated_time.is_some() {
                put("statusUpdateTime", time(&d.status_updated_time));
            }
            put(
                "connectionState",
                serde_json::to_value(d.connection_state).unwrap_or(Value::Null),
            );
            put("lastActivityTime", time(&d.last_activity_time));
            put(
                "capabilities",
                serde_json::json!({ "iotEdge": d.capabilities.iot_edge }),
            );
            &rec.twin
        }
        Some(m) => {
            let mr = rec.modules.get(m)?;
            put("moduleId", Value::String(m.to_owned()));
            put("deviceEtag", text(&mr.module.etag));
            put(
                "connectionState",
                serde_json::to_value(mr.module.connection_state).unwrap_or(Value::Null),
            );
            put("lastActivityTime", time(&mr.module.last_activity_time));
            &mr.twin
        }
    };
    doc.insert(
        "modelId".to_owned(),
        Value::String(state.model_id.clone().unwrap_or_default()),
    );
    state.write_into(&mut doc);
    Some(Value::Object(doc))
}

/// The service view of a twin as a shared document, from the record's cache.
pub(crate) fn twin_document(rec: &DeviceRecord, module_id: Option<&str>) -> Option<Arc<Value>> {
    let build = || Arc::new(service_twin_value(rec, module_id).unwrap_or(Value::Null));
    match module_id {
        None => Some(rec.doc.get_or_init(build).clone()),
        Some(m) => Some(rec.modules.get(m)?.doc.get_or_init(build).clone()),
    }
}

/// The service view of a twin, typed.
pub(crate) fn service_twin(rec: &DeviceRecord, module_id: Option<&str>) -> Option<Twin> {
    Twin::deserialize(twin_document(rec, module_id)?.as_ref()).ok()
}

fn twin_mut<'a>(
    rec: &'a mut DeviceRecord,
    device_id: &str,
    module_id: Option<&str>,
) -> Result<&'a mut TwinState, HubRefusal> {
    match module_id {
        None => Ok(&mut rec.twin),
        Some(m) => rec
            .modules
            .get_mut(m)
            .map(|mr| &mut mr.twin)
            .ok_or_else(|| HubRefusal::module_not_found(device_id, m)),
    }
}

impl Hub {
    /// Keeps the model id a device announced when it connected, as the hub shows it in the
    /// twin (`modelId`) from then on.
    pub(crate) fn set_model_id(&self, device_id: &str, module_id: Option<&str>, model_id: &str) {
        let mut reg = lock(&self.registry);
        let Some(rec) = reg.record_mut(device_id) else {
            return;
        };
        let twin = match module_id {
            None => &mut rec.twin,
            Some(m) => match rec.modules.get_mut(m) {
                Some(mr) => &mut mr.twin,
                None => return,
            },
        };
        if twin.model_id.as_deref() != Some(model_id) {
            twin.model_id = Some(model_id.to_owned());
            drop(reg);
            self.mark_dirty();
        }
    }

    pub(crate) fn get_twin(
        &self,
        device_id: &str,
        module_id: Option<&str>,
    ) -> Result<Twin, HubRefusal> {
        let reg = lock(&self.registry);
        let rec = reg
            .devices
            .get(device_id)
            .ok_or_else(|| HubRefusal::device_not_found(device_id))?;
        service_twin(rec, module_id)
            .ok_or_else(|| HubRefusal::module_not_found(device_id, module_id.unwrap_or_default()))
    }

    /// `PATCH` (merge) or `PUT` (replace) of tags and desired; notifies the device.
    pub(crate) fn update_twin(
        &self,
        device_id: &str,
        module_id: Option<&str>,
        body: &Value,
        if_match: Option<&str>,
        replace: bool,
    ) -> Result<Twin, HubRefusal> {
        let now = now_string();
        let (twin, notification) = {
            let mut reg = lock(&self.registry);
            let rec = reg
                .record_mut(device_id)
                .ok_or_else(|| HubRefusal::device_not_found(device_id))?;
            let state = twin_mut(rec, device_id, module_id)?;
            if !etag_matches(if_match, &state.etag()) {
                return Err(HubRefusal::precondition_failed());
            }
            let change = state.service_update(body, replace, &now)?;
            let notification = match change {
                DesiredChange::None => None,
                DesiredChange::Patch(p) => {
                    Some((state.desired_version, state.desired_notification(Some(&p))))
                }
                DesiredChange::Full => {
                    Some((state.desired_version, state.desired_notification(None)))
                }
            };
            let twin = service_twin(rec, module_id).ok_or_else(|| {
                HubRefusal::module_not_found(device_id, module_id.unwrap_or_default())
            })?;
            (twin, notification)
        };
        self.mark_dirty();
        if let Some((version, body)) = notification
            && let Some(session) = self.session(device_id, module_id)
        {
            self.push(
                &session,
                sub::DESIRED,
                topic::desired_patch_topic(version),
                Bytes::from(body.to_string()),
            );
        }
        Ok(twin)
    }

    /// The device view of a twin (for `$iothub/twin/GET`).
    pub(crate) fn device_twin(&self, device_id: &str, module_id: Option<&str>) -> Option<Value> {
        let mut reg = lock(&self.registry);
        let rec = reg.devices.get_mut(device_id)?;
        let state = twin_mut(rec, device_id, module_id).ok()?;
        serde_json::to_value(state.device_view()).ok()
    }

    /// A reported patch from a device; returns the new reported version.
    pub(crate) fn patch_reported(
        &self,
        device_id: &str,
        module_id: Option<&str>,
        patch: &Value,
    ) -> Result<(u64, u64), HubRefusal> {
        let now = now_string();
        let version = {
            let mut reg = lock(&self.registry);
            let rec = reg
                .record_mut(device_id)
                .ok_or_else(|| HubRefusal::device_not_found(device_id))?;
            twin_mut(rec, device_id, module_id)?.patch_reported(patch, &now)?
        };
        Ok((version, self.mark_dirty()))
    }
}
