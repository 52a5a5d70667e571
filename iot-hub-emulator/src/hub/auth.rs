//! Authentication: device CONNECTs (SAS in the MQTT password, or an X.509 client certificate
//! and no password) and service requests (SAS in the `Authorization` header), SAS verified
//! with `iot-common`'s SAS code.

use super::Hub;
use super::registry::{Rights, keys_of};
use crate::clock::unix_now;
use crate::error::HubRefusal;
use crate::locks::lock;
use iot_common::registry::AuthenticationMechanism;
use iot_common::sas::{device_resource, scope_covers};
use iot_common::tls::CertificateInfo;
use iot_common::twin::DeviceStatus;
use iot_common::{SasToken, Secret, Thumbprint, encoding};
use rustls_pki_types::CertificateDer;

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
    /// No password and no client certificate.
    NoCredential,
    /// A certificate but no password for an identity that authenticates with SAS.
    SasIdentity,
    /// The leaf is not a DER certificate this emulator can read.
    UnreadableCertificate,
    /// The leaf is not valid now.
    CertificateExpired,
    /// `selfSigned`: the leaf matches neither registered thumbprint.
    ThumbprintMismatch,
    /// `certificateAuthority`: the chain reaches no registered device CA.
    UntrustedChain,
    /// `certificateAuthority`: the leaf's subject CN is not the device id.
    CommonNameMismatch,
}

impl ConnectRefusal {
    /// Why, in words, for the log line.
    pub(crate) fn why(self) -> &'static str {
        match self {
            Self::BadUsername => "the user name is malformed or names another hub",
            Self::BadToken => "the password is not a SAS token",
            Self::Expired => "the SAS token has expired",
            Self::WrongScope => "the SAS token is for another resource",
            Self::UnknownIdentity => "no such device or module",
            Self::Disabled => "the device is disabled",
            Self::BadSignature => "the SAS signature matches no key",
            Self::NoCredential => "neither a password nor a client certificate",
            Self::SasIdentity => {
                "a client certificate without a password, but the identity authenticates with SAS"
            }
            Self::UnreadableCertificate => "the client certificate cannot be read",
            Self::CertificateExpired => "the client certificate is expired or not yet valid",
            Self::ThumbprintMismatch => {
                "the client certificate matches neither registered thumbprint (selfSigned)"
            }
            Self::UntrustedChain => {
                "the client certificate does not chain to a registered device CA (certificateAuthority)"
            }
            Self::CommonNameMismatch => {
                "the client certificate's subject CN is not the device id (certificateAuthority)"
            }
        }
    }
}

fn verify_any(hub: &Hub, token: &SasToken, keys: &[Secret]) -> bool {
    // A token for an `sb://` resource is an Event Hubs one, signed as Service Bus signs.
    let event_hub = token.resource().starts_with("sb://");
    keys.iter()
        .filter(|k| !(hub.options.refuse_well_known && crate::dev_keys::is_well_known(k.expose())))
        .any(|k| {
            if event_hub {
                token.verify_event_hub(k).is_ok()
            } else {
                token.verify(k).is_ok()
            }
        })
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
    /// Checks a CONNECT's client id, username, and SAS password or (with no password) the
    /// client certificate chain `peer` presented in the TLS handshake, leaf first.
    pub(crate) fn authenticate(
        &self,
        client_id: &str,
        username: Option<&str>,
        password: Option<&str>,
        peer: &[CertificateDer<'_>],
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
        let model_id = info.model_id.filter(|m| !m.is_empty());
        if password.is_none_or(str::is_empty) {
            let expires_at = self.authenticate_certificate(device_id, module_id, peer)?;
            return Ok(DeviceIdentity {
                device_id: device_id.to_owned(),
                module_id: module_id.map(str::to_owned),
                expires_at,
                model_id,
            });
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
            model_id,
        })
    }

    /// X.509: the identity's `authentication.type` decides. `selfSigned` wants the leaf to
    /// match a registered thumbprint; `certificateAuthority` wants the chain to reach a
    /// registered device CA and the leaf's CN to be the device id. Returns when the
    /// certificate expires, which ends the connection as a token's expiry does.
    fn authenticate_certificate(
        &self,
        device_id: &str,
        module_id: Option<&str>,
        peer: &[CertificateDer<'_>],
    ) -> Result<u64, ConnectRefusal> {
        let leaf = peer.first().ok_or(ConnectRefusal::NoCredential)?;
        let info =
            CertificateInfo::parse(leaf).map_err(|_| ConnectRefusal::UnreadableCertificate)?;
        let now = unix_now();
        let now_i = i64::try_from(now).unwrap_or(i64::MAX);
        if now_i < info.not_before || now_i >= info.not_after {
            return Err(ConnectRefusal::CertificateExpired);
        }
        let auth = self.authentication_of(device_id, module_id)?;
        match auth.kind.as_str() {
            "selfSigned" => {
                let pinned = auth.x509_thumbprint.as_ref().map(|t| {
                    [&t.primary_thumbprint, &t.secondary_thumbprint]
                        .into_iter()
                        .flatten()
                        .filter_map(|t| t.parse::<Thumbprint>().ok())
                        .any(|t| t.matches(leaf))
                });
                if pinned != Some(true) {
                    return Err(ConnectRefusal::ThumbprintMismatch);
                }
            }
            "certificateAuthority" => {
                // Registered device CAs, and the signing certificates of DPS's X.509 groups
                // (which assign their devices here as certificateAuthority).
                if let Err(why) = self.options.device_cas.verify(peer, now)
                    && !self.dps.trusts_chain(peer, now)
                {
                    tracing::debug!(device_id, why, "device certificate chain not trusted");
                    return Err(ConnectRefusal::UntrustedChain);
                }
                if info.common_name.as_deref() != Some(device_id) {
                    return Err(ConnectRefusal::CommonNameMismatch);
                }
            }
            _ => return Err(ConnectRefusal::SasIdentity),
        }
        Ok(u64::try_from(info.not_after).unwrap_or(0))
    }

    /// The authentication of an enabled device or one of its modules.
    fn authentication_of(
        &self,
        device_id: &str,
        module_id: Option<&str>,
    ) -> Result<AuthenticationMechanism, ConnectRefusal> {
        let reg = lock(&self.registry);
        let rec = reg
            .devices
            .get(device_id)
            .ok_or(ConnectRefusal::UnknownIdentity)?;
        if rec.device.status == DeviceStatus::Disabled {
            return Err(ConnectRefusal::Disabled);
        }
        Ok(match module_id {
            Some(m) => rec
                .modules
                .get(m)
                .ok_or(ConnectRefusal::UnknownIdentity)?
                .module
                .authentication
                .clone(),
            None => rec.device.authentication.clone(),
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
        // Event Hubs clients scope their token to `sb://{host}/{entity}`.
        let resource = token.resource();
        let resource = resource
            .split_once("://")
            .map_or(resource.as_str(), |(_, r)| r);
        if !covers(&token, self.host_name()) && !scope_covers(self.host_name(), resource) {
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
