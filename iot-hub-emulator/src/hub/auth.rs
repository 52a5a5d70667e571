//! Authentication: device CONNECTs (SAS in the MQTT password) and service requests (SAS in
//! the `Authorization` header), both verified with `iot-common`'s SAS code.

use super::Hub;
use super::registry::{Rights, keys_of};
use crate::clock::unix_now;
use crate::error::HubRefusal;
use crate::locks::lock;
use iot_common::sas::{device_resource, scope_covers};
use iot_common::twin::DeviceStatus;
use iot_common::{SasToken, Secret, encoding};

/// An authenticated device or module connection.
#[derive(Debug, Clone)]
pub(crate) struct DeviceIdentity {
    pub(crate) device_id: String,
    pub(crate) module_id: Option<String>,
    pub(crate) expires_at: u64,
    /// The Plug and Play model id from the username's `model-id`, when announced.
    pub(crate) model_id: Option<String>,
}

/// Why a CONNECT was refused (always answered with CONNACK 5, as the hub does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnectRefusal {
    BadUsername,
    BadToken,
    Expired,
    WrongScope,
    UnknownIdentity,
    Disabled,
    BadSignature,
}

fn verify_any(hub: &Hub, token: &SasToken, keys: &[Secret]) -> bool {
    keys.iter()
        .filter(|k| !(hub.options.refuse_well_known && crate::dev_keys::is_well_known(k.expose())))
        .any(|k| token.verify(k).is_ok())
}

/// `true` when the token's `sr` covers `target`, trying a second decode for ids that C#
/// double-encodes.
fn covers(token: &SasToken, target: &str) -> bool {
    let once = token.resource();
    if scope_covers(&once, target) {
        return true;
    }
    encoding::decode(&once).is_ok_and(|twice| scope_covers(&twice, target))
}

impl Hub {
    /// Checks a CONNECT's client id, username and SAS password.
    pub(crate) fn authenticate(
        &self,
        client_id: &str,
        username: Option<&str>,
        password: Option<&str>,
    ) -> Result<DeviceIdentity, ConnectRefusal> {
        let (device_id, module_id) = match client_id.split_once('/') {
            Some((d, m)) => (d, Some(m)),
            None => (client_id, None),
        };
        let info = username
            .and_then(|u| iot_common::mqtt::parse_username(u, client_id))
            .ok_or(ConnectRefusal::BadUsername)?;
        if !scope_covers(self.host_name(), &info.host) {
            return Err(ConnectRefusal::BadUsername);
        }
        let token = password
            .and_then(|p| SasToken::parse(p).ok())
            .ok_or(ConnectRefusal::BadToken)?;
        token
            .check_expiry(unix_now())
            .map_err(|_| ConnectRefusal::Expired)?;
        if !covers(
            &token,
            &device_resource(self.host_name(), device_id, module_id),
        ) {
            return Err(ConnectRefusal::WrongScope);
        }
        let keys = {
            let reg = lock(&self.registry);
            let rec = reg
                .devices
                .get(device_id)
                .ok_or(ConnectRefusal::UnknownIdentity)?;
            if rec.device.status == DeviceStatus::Disabled {
                return Err(ConnectRefusal::Disabled);
            }
            let identity_keys = match module_id {
                Some(m) => {
                    let mr = rec.modules.get(m).ok_or(ConnectRefusal::UnknownIdentity)?;
                    keys_of(mr.module.authentication.symmetric_key.as_ref())
                }
                None => keys_of(rec.device.authentication.symmetric_key.as_ref()),
            };
            match token.key_name() {
                Some(policy) => match reg.policies.get(policy) {
                    Some(p) if p.rights.contains(Rights::DEVICE_CONNECT) => {
                        vec![p.primary.clone(), p.secondary.clone()]
                    }
                    _ => return Err(ConnectRefusal::BadSignature),
                },
                None => identity_keys,
            }
        };
        if !verify_any(self, &token, &keys) {
            return Err(ConnectRefusal::BadSignature);
        }
        Ok(DeviceIdentity {
            device_id: device_id.to_owned(),
            module_id: module_id.map(str::to_owned),
            expires_at: token.expires_at(),
            model_id: info.model_id.filter(|m| !m.is_empty()),
        })
    }

    /// Checks a service request's `Authorization` header for a policy token with `needed`.
    pub(crate) fn authorize(&self, header: Option<&str>, needed: Rights) -> Result<(), HubRefusal> {
        let token = header
            .and_then(|h| SasToken::parse(h).ok())
            .ok_or_else(HubRefusal::unauthorized)?;
        token
            .check_expiry(unix_now())
            .map_err(|_| HubRefusal::unauthorized())?;
        if !covers(&token, self.host_name()) && !scope_covers(self.host_name(), &token.resource()) {
            return Err(HubRefusal::unauthorized());
        }
        let policy = token.key_name().ok_or_else(HubRefusal::unauthorized)?;
        let (keys, rights) = {
            let reg = lock(&self.registry);
            let p = reg
                .policies
                .get(policy)
                .ok_or_else(HubRefusal::unauthorized)?;
            (vec![p.primary.clone(), p.secondary.clone()], p.rights)
        };
        if !verify_any(self, &token, &keys) {
            return Err(HubRefusal::unauthorized());
        }
        if !rights.contains(needed) {
            return Err(HubRefusal::unauthorized());
        }
        Ok(())
    }
}
