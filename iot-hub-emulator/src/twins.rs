//! Twin operations on the service side, and the notifications they trigger on the device side.

use crate::error::ApiError;
use crate::hub::{Hub, lock, now_string, sub};
use crate::identities::etag_matches;
use crate::registry::DeviceRecord;
use crate::twin_state::{DesiredChange, TwinState};
use bytes::Bytes;
use iot_common::{Twin, topic};
use serde_json::Value;

/// Builds the service view of a device or module twin from its record.
pub(crate) fn service_twin(rec: &DeviceRecord, module_id: Option<&str>) -> Option<Twin> {
    let d = &rec.device;
    let mut t = Twin::default();
    t.device_id = d.device_id.clone();
    t.device_etag = d.etag.clone();
    t.authentication_type = Some(d.authentication.kind.clone());
    t.model_id = Some(String::new());
    t.cloud_to_device_message_count = Some(d.cloud_to_device_message_count);
    match module_id {
        None => {
            t.status = Some(d.status);
            t.status_update_time = d.status_updated_time.clone();
            t.connection_state = Some(d.connection_state);
            t.last_activity_time = d.last_activity_time.clone();
            t.capabilities = Some(d.capabilities);
            rec.twin.fill(&mut t);
        }
        Some(m) => {
            let mr = rec.modules.get(m)?;
            t.module_id = Some(m.to_owned());
            t.device_etag = mr.module.etag.clone();
            t.connection_state = Some(mr.module.connection_state);
            t.last_activity_time = mr.module.last_activity_time.clone();
            mr.twin.fill(&mut t);
        }
    }
    Some(t)
}

fn twin_mut<'a>(
    rec: &'a mut DeviceRecord,
    device_id: &str,
    module_id: Option<&str>,
) -> Result<&'a mut TwinState, ApiError> {
    match module_id {
        None => Ok(&mut rec.twin),
        Some(m) => rec
            .modules
            .get_mut(m)
            .map(|mr| &mut mr.twin)
            .ok_or_else(|| ApiError::module_not_found(device_id, m)),
    }
}

impl Hub {
    pub(crate) fn get_twin(
        &self,
        device_id: &str,
        module_id: Option<&str>,
    ) -> Result<Twin, ApiError> {
        let reg = lock(&self.registry);
        let rec = reg
            .devices
            .get(device_id)
            .ok_or_else(|| ApiError::device_not_found(device_id))?;
        service_twin(rec, module_id)
            .ok_or_else(|| ApiError::module_not_found(device_id, module_id.unwrap_or_default()))
    }

    /// `PATCH` (merge) or `PUT` (replace) of tags and desired; notifies the device.
    pub(crate) fn update_twin(
        &self,
        device_id: &str,
        module_id: Option<&str>,
        body: &Value,
        if_match: Option<&str>,
        replace: bool,
    ) -> Result<Twin, ApiError> {
        let now = now_string();
        let (twin, notification) = {
            let mut reg = lock(&self.registry);
            let rec = reg
                .devices
                .get_mut(device_id)
                .ok_or_else(|| ApiError::device_not_found(device_id))?;
            let state = twin_mut(rec, device_id, module_id)?;
            if !etag_matches(if_match, &state.etag()) {
                return Err(ApiError::precondition_failed());
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
                ApiError::module_not_found(device_id, module_id.unwrap_or_default())
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
    ) -> Result<u64, ApiError> {
        let now = now_string();
        let version = {
            let mut reg = lock(&self.registry);
            let rec = reg
                .devices
                .get_mut(device_id)
                .ok_or_else(|| ApiError::device_not_found(device_id))?;
            twin_mut(rec, device_id, module_id)?.patch_reported(patch, &now)?
        };
        self.mark_dirty();
        Ok(version)
    }
}
