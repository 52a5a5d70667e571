//! Identity registry operations: create, read, update, delete devices and modules.

use super::Hub;
use super::registry::{DeviceRecord, ModuleRecord, etag_matches, normalize_authentication};
use super::twin_state::TwinState;
use crate::clock::{now_string, now_timestamp};
use crate::error::HubRefusal;
use crate::locks::lock;
use iot_common::connection_string::validate_id;
use iot_common::registry::{Device, Module, RegistryStatistics};
use iot_common::twin::{ConnectionState, DeviceStatus};
use iot_common::{ErrorCode, Timestamp};

fn check_id(field: &'static str, id: &str) -> Result<(), HubRefusal> {
    validate_id(field, id).map_err(|e| HubRefusal::bad_request(e.to_string()))
}

impl Hub {
    /// `PUT /devices/{id}`: create (no `If-Match`) or update (with `If-Match`).
    pub(crate) fn put_device(
        &self,
        id: &str,
        mut body: Device,
        if_match: Option<&str>,
    ) -> Result<Device, HubRefusal> {
        check_id("deviceId", id)?;
        if !body.device_id.is_empty() && body.device_id != id {
            return Err(HubRefusal::bad_request(
                "deviceId in the body does not match the path",
            ));
        }
        normalize_authentication(&mut body.authentication).map_err(HubRefusal::bad_request)?;
        let now = now_string();
        let mut reg = lock(&self.registry);
        let etag = reg.next_etag();
        let disable = body.status == DeviceStatus::Disabled;
        let result = match (reg.record_mut(id), if_match) {
            (Some(_), None) => {
                return Err(HubRefusal::new(
                    ErrorCode::DeviceAlreadyExists,
                    format!("A device with ID '{id}' is already registered."),
                ));
            }
            (Some(rec), Some(tag)) => {
                if !etag_matches(Some(tag), rec.device.etag.as_deref().unwrap_or_default()) {
                    return Err(HubRefusal::precondition_failed());
                }
                let d = &mut rec.device;
                if d.status != body.status {
                    d.status_updated_time = Some(now_timestamp());
                }
                d.status = body.status;
                d.status_reason = body.status_reason;
                d.authentication = body.authentication;
                d.capabilities = body.capabilities;
                d.etag = Some(etag);
                d.clone()
            }
            (None, Some(tag)) if !etag_matches(Some(tag), "") && tag.trim() != "*" => {
                return Err(HubRefusal::device_not_found(id));
            }
            (None, _) => {
                body.device_id = id.to_owned();
                body.etag = Some(etag);
                body.generation_id = Some(format!("{}", chrono::Utc::now().timestamp_micros()));
                body.connection_state = ConnectionState::Disconnected;
                body.connection_state_updated_time = Some(Timestamp::never());
                body.status_updated_time = Some(Timestamp::never());
                body.last_activity_time = Some(Timestamp::never());
                body.cloud_to_device_message_count = 0;
                reg.insert_device(id, DeviceRecord::new(body.clone()));
                // Under both locks and in one batch: no reader sees the device without its
                // twin, and `--state` commits both or neither.
                let mut twins = lock(&self.twins);
                twins.create_device(id, TwinState::new(&now));
                self.persist_registry(&mut reg, Some(&mut twins));
                return Ok(body);
            }
        };
        self.persist_registry(&mut reg, None);
        drop(reg);
        if disable {
            self.disconnect(id, None);
        }
        Ok(result)
    }

    pub(crate) fn get_device(&self, id: &str) -> Result<Device, HubRefusal> {
        let reg = lock(&self.registry);
        let rec = reg
            .devices
            .get(id)
            .ok_or_else(|| HubRefusal::device_not_found(id))?;
        let mut d = rec.device.clone();
        d.cloud_to_device_message_count = self.pending_c2d(id) as u64;
        Ok(d)
    }

    pub(crate) fn list_devices(&self, top: usize) -> Vec<Device> {
        lock(&self.registry)
            .devices
            .values()
            .take(top)
            .map(|r| r.device.clone())
            .collect()
    }

    pub(crate) fn delete_device(&self, id: &str, if_match: Option<&str>) -> Result<(), HubRefusal> {
        {
            let mut reg = lock(&self.registry);
            let rec = reg
                .devices
                .get(id)
                .ok_or_else(|| HubRefusal::device_not_found(id))?;
            if !etag_matches(if_match, rec.device.etag.as_deref().unwrap_or_default()) {
                return Err(HubRefusal::precondition_failed());
            }
            let modules: Vec<String> = rec.modules.keys().cloned().collect();
            reg.remove_device(id);
            let mut twins = lock(&self.twins);
            twins.remove_device(id);
            self.persist_registry(&mut reg, Some(&mut twins));
            drop(twins);
            drop(reg);
            for m in modules {
                self.disconnect(id, Some(&m));
            }
        }
        self.disconnect(id, None);
        // Its pending messages go with it; one in flight is dropped when its connection ends.
        self.drop_c2d(id);
        Ok(())
    }

    pub(crate) fn statistics(&self) -> RegistryStatistics {
        let reg = lock(&self.registry);
        let total = reg.devices.len() as u64;
        let disabled = reg
            .devices
            .values()
            .filter(|r| r.device.status == DeviceStatus::Disabled)
            .count() as u64;
        let mut s = RegistryStatistics::default();
        s.total_device_count = total;
        s.enabled_device_count = total - disabled;
        s.disabled_device_count = disabled;
        s
    }

    /// `PUT /devices/{id}/modules/{mid}`. Returns the module and whether it was created.
    pub(crate) fn put_module(
        &self,
        device_id: &str,
        module_id: &str,
        mut body: Module,
        if_match: Option<&str>,
    ) -> Result<(Module, bool), HubRefusal> {
        check_id("moduleId", module_id)?;
        normalize_authentication(&mut body.authentication).map_err(HubRefusal::bad_request)?;
        let now = now_string();
        let mut reg = lock(&self.registry);
        let etag = reg.next_etag();
        let rec = reg
            .record_mut(device_id)
            .ok_or_else(|| HubRefusal::device_not_found(device_id))?;
        let out = match (rec.modules.get_mut(module_id), if_match) {
            (Some(_), None) => {
                return Err(HubRefusal::new(
                    ErrorCode::ModuleAlreadyExistsOnDevice,
                    format!(
                        "A module with ID '{module_id}' already exists on device '{device_id}'."
                    ),
                ));
            }
            (Some(mr), Some(tag)) => {
                if !etag_matches(Some(tag), mr.module.etag.as_deref().unwrap_or_default()) {
                    return Err(HubRefusal::precondition_failed());
                }
                mr.module.authentication = body.authentication;
                mr.module.managed_by = body.managed_by;
                mr.module.etag = Some(etag);
                (mr.module.clone(), false)
            }
            (None, _) => {
                body.module_id = module_id.to_owned();
                body.device_id = device_id.to_owned();
                body.etag = Some(etag);
                body.generation_id = Some(format!("{}", chrono::Utc::now().timestamp_micros()));
                body.connection_state = ConnectionState::Disconnected;
                body.connection_state_updated_time = Some(Timestamp::never());
                body.last_activity_time = Some(Timestamp::never());
                rec.modules.insert(
                    module_id.to_owned(),
                    ModuleRecord {
                        module: body.clone(),
                    },
                );
                let mut twins = lock(&self.twins);
                twins.create_module(device_id, module_id, TwinState::new(&now));
                self.persist_registry(&mut reg, Some(&mut twins));
                return Ok((body, true));
            }
        };
        self.persist_registry(&mut reg, None);
        Ok(out)
    }

    pub(crate) fn get_module(
        &self,
        device_id: &str,
        module_id: &str,
    ) -> Result<Module, HubRefusal> {
        let reg = lock(&self.registry);
        let rec = reg
            .devices
            .get(device_id)
            .ok_or_else(|| HubRefusal::device_not_found(device_id))?;
        rec.modules
            .get(module_id)
            .map(|m| m.module.clone())
            .ok_or_else(|| HubRefusal::module_not_found(device_id, module_id))
    }

    pub(crate) fn list_modules(&self, device_id: &str) -> Result<Vec<Module>, HubRefusal> {
        let reg = lock(&self.registry);
        let rec = reg
            .devices
            .get(device_id)
            .ok_or_else(|| HubRefusal::device_not_found(device_id))?;
        Ok(rec.modules.values().map(|m| m.module.clone()).collect())
    }

    pub(crate) fn delete_module(
        &self,
        device_id: &str,
        module_id: &str,
        if_match: Option<&str>,
    ) -> Result<(), HubRefusal> {
        {
            let mut reg = lock(&self.registry);
            let rec = reg
                .record_mut(device_id)
                .ok_or_else(|| HubRefusal::device_not_found(device_id))?;
            let mr = rec
                .modules
                .get(module_id)
                .ok_or_else(|| HubRefusal::module_not_found(device_id, module_id))?;
            if !etag_matches(if_match, mr.module.etag.as_deref().unwrap_or_default()) {
                return Err(HubRefusal::precondition_failed());
            }
            rec.modules.remove(module_id);
            let mut twins = lock(&self.twins);
            twins.remove_module(device_id, module_id);
            self.persist_registry(&mut reg, Some(&mut twins));
        }
        self.disconnect(device_id, Some(module_id));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::etag_matches;

    #[test]
    fn if_match_rules() {
        assert!(etag_matches(None, "AAAA"));
        assert!(etag_matches(Some("*"), "AAAA"));
        assert!(etag_matches(Some("\"*\""), "AAAA"));
        assert!(etag_matches(Some("\"AAAA\""), "AAAA"));
        assert!(etag_matches(Some("W/\"AAAA\""), "AAAA"));
        assert!(etag_matches(Some("AAAA"), "AAAA"));
        assert!(!etag_matches(Some("\"AAAB\""), "AAAA"));
    }
}
