//! Twin operations on the service side, and the notifications they trigger on the device side.

use super::registry::{DeviceRecord, Registry, etag_matches};
use super::twin_state::{DesiredChange, TwinState};
use super::twin_store::TwinStore;
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
/// returns and queries run over: the identity's fields from its record, the twin's from
/// `state`. Built directly as JSON: queries build one per twin per page.
pub(crate) fn service_twin_value(
    rec: &DeviceRecord,
    module_id: Option<&str>,
    state: &TwinState,
) -> Option<Value> {
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
    match module_id {
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
        }
    }
    doc.insert(
        "modelId".to_owned(),
        Value::String(state.model_id.clone().unwrap_or_default()),
    );
    state.write_into(&mut doc);
    Some(Value::Object(doc))
}

/// The service view of a twin as a shared document, from the twin's cache (rebuilt when the
/// identity record changed since). The caller holds the registry's lock, then the twins'.
pub(crate) fn twin_document(
    reg: &Registry,
    twins: &mut TwinStore,
    device_id: &str,
    module_id: Option<&str>,
) -> Option<Arc<Value>> {
    let rec = reg.devices.get(device_id)?;
    twins
        .entry(device_id, module_id)?
        .document(rec.rev, |state| service_twin_value(rec, module_id, state))
}

fn typed(doc: &Value) -> Option<Twin> {
    Twin::deserialize(doc).ok()
}

fn twin_missing(device_id: &str, module_id: Option<&str>) -> HubRefusal {
    match module_id {
        None => HubRefusal::device_not_found(device_id),
        Some(m) => HubRefusal::module_not_found(device_id, m),
    }
}

impl Hub {
    /// Keeps the model id a device announced when it connected, as the hub shows it in the
    /// twin (`modelId`) from then on.
    pub(crate) fn set_model_id(&self, device_id: &str, module_id: Option<&str>, model_id: &str) {
        let mut twins = lock(&self.twins);
        let unchanged = twins
            .entry(device_id, module_id)
            .is_none_or(|e| e.state.model_id.as_deref() == Some(model_id));
        if unchanged {
            return;
        }
        if let Some(state) = twins.state_mut(device_id, module_id) {
            state.model_id = Some(model_id.to_owned());
        }
        self.persist_twins(&mut twins);
    }

    pub(crate) fn get_twin(
        &self,
        device_id: &str,
        module_id: Option<&str>,
    ) -> Result<Twin, HubRefusal> {
        let reg = lock(&self.registry);
        if !reg.devices.contains_key(device_id) {
            return Err(HubRefusal::device_not_found(device_id));
        }
        let mut twins = lock(&self.twins);
        twin_document(&reg, &mut twins, device_id, module_id)
            .and_then(|d| typed(&d))
            .ok_or_else(|| twin_missing(device_id, module_id))
    }

    /// `PATCH` (merge) or `PUT` (replace) of tags and desired; notifies the device.
    ///
    /// The change is made under the twins' lock alone; the answer's identity fields are read
    /// from the registry afterwards, around a copy of the twin as this change left it.
    pub(crate) fn update_twin(
        &self,
        device_id: &str,
        module_id: Option<&str>,
        body: &Value,
        if_match: Option<&str>,
        replace: bool,
    ) -> Result<Twin, HubRefusal> {
        let now = now_string();
        let (state, notification) = {
            let mut twins = lock(&self.twins);
            let current = twins
                .entry(device_id, module_id)
                .ok_or_else(|| twin_missing(device_id, module_id))?;
            if !etag_matches(if_match, &current.state.etag()) {
                return Err(HubRefusal::precondition_failed());
            }
            // The update rules change nothing when they refuse (see `twin_state`); a refused
            // update only rewrites the same row.
            let state = twins
                .state_mut(device_id, module_id)
                .ok_or_else(|| twin_missing(device_id, module_id))?;
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
            let next = state.clone();
            self.persist_twins(&mut twins);
            (next, notification)
        };
        let twin = {
            let reg = lock(&self.registry);
            reg.devices
                .get(device_id)
                .and_then(|rec| service_twin_value(rec, module_id, &state))
                .and_then(|d| typed(&d))
                .ok_or_else(|| twin_missing(device_id, module_id))?
        };
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
        let mut twins = lock(&self.twins);
        let e = twins.entry(device_id, module_id)?;
        serde_json::to_value(e.state.device_view()).ok()
    }

    /// A reported patch from a device; returns the new reported version and the sequence
    /// number of its commit. Takes the twins' lock only.
    pub(crate) fn patch_reported(
        &self,
        device_id: &str,
        module_id: Option<&str>,
        patch: &Value,
    ) -> Result<(u64, u64), HubRefusal> {
        let now = now_string();
        let mut twins = lock(&self.twins);
        let version = twins
            .state_mut(device_id, module_id)
            .ok_or_else(|| twin_missing(device_id, module_id))?
            .patch_reported(patch, &now)?;
        Ok((version, self.persist_twins(&mut twins)))
    }
}
