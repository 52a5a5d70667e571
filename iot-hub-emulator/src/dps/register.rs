//! The device side of DPS: checking a registration's credential and assigning the device.

use super::enrollments::is_enabled;
use super::x509::X509Match;
use super::{Dps, DpsError, MAX_OPERATIONS, Provisioner};
use crate::clock::now_string;
use crate::hub::persistence::Kind;
use iot_common::provisioning::{
    RegistrationOperation, RegistrationRequest, RegistrationState, RegistrationStatus, Substatus,
    derive_device_key, topics,
};
use iot_common::registry::SymmetricKey;
use iot_common::{SasToken, Secret, Thumbprint};
use rustls_pki_types::CertificateDer;
use serde_json::Value;

/// Who a registration was proven to be.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Attestor {
    /// An individual enrollment's own key.
    Individual { registration_id: String },
    /// A key derived from a group's key.
    Group {
        registration_id: String,
        group_id: String,
    },
    /// A client certificate listed in the individual enrollment; `thumbprint` is its leaf's.
    X509Individual {
        registration_id: String,
        thumbprint: Thumbprint,
    },
    /// A client certificate chain that reaches a group's signing certificate.
    X509Group {
        registration_id: String,
        group_id: String,
    },
}

impl Attestor {
    fn registration_id(&self) -> &str {
        match self {
            Self::Individual { registration_id }
            | Self::Group {
                registration_id, ..
            }
            | Self::X509Individual {
                registration_id, ..
            }
            | Self::X509Group {
                registration_id, ..
            } => registration_id,
        }
    }
}

/// How a device assigned through X.509 attestation authenticates to the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum X509Credential {
    /// `selfSigned`, pinned to the leaf the device registered with.
    SelfSigned(Thumbprint),
    /// `certificateAuthority`: its chain reaches the group's signing certificate.
    CertificateAuthority,
}

/// The device DPS asks the hub to create or update.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProvisionedDevice {
    pub(crate) device_id: String,
    /// The SAS keys, for a device attested with a symmetric key.
    pub(crate) keys: SymmetricKey,
    /// For a device attested with X.509 (`keys` is then empty).
    pub(crate) x509: Option<X509Credential>,
    /// `{"tags": …, "properties": {"desired": …}}` from the enrollment.
    pub(crate) initial_twin: Option<Value>,
    /// The first registration of this id: the initial twin is applied.
    pub(crate) reset_twin: bool,
}

fn keys_of(k: Option<&SymmetricKey>) -> Vec<&Secret> {
    k.map(|k| {
        [&k.primary_key, &k.secondary_key]
            .into_iter()
            .flatten()
            .collect()
    })
    .unwrap_or_default()
}

fn verifies(token: &SasToken, keys: &[&Secret]) -> bool {
    keys.iter().any(|k| token.verify(k).is_ok())
}

/// An operation id shaped like the service's: `4.{16 hex}.{uuid}`.
fn operation_id() -> String {
    format!("4.{:016x}.{}", rand::random::<u64>(), uuid::Uuid::new_v4())
}

impl Dps {
    /// Checks the SAS token of a registration (the MQTT password or the HTTPS
    /// `Authorization`): its resource must be `{scope}/registrations/{id}` (raw or encoded,
    /// as Node and Python send it), it must not be expired, and it must be signed with the
    /// individual enrollment's key or, when there is none, a key derived from a group's.
    pub(crate) fn authorize_sas(
        &self,
        registration_id: &str,
        token: &str,
        now_unix: u64,
    ) -> Result<Attestor, DpsError> {
        let token = SasToken::parse(token).map_err(|_| DpsError::unauthorized())?;
        if token.resource() != topics::sas_resource(&self.id_scope, registration_id)
            || token.check_expiry(now_unix).is_err()
        {
            return Err(DpsError::unauthorized());
        }
        let s = self.lock();
        // An individual enrollment takes precedence over any group.
        if let Some(e) = s.individual.get(registration_id) {
            return if verifies(&token, &keys_of(e.attestation.symmetric_key.as_ref())) {
                Ok(Attestor::Individual {
                    registration_id: registration_id.to_owned(),
                })
            } else {
                Err(DpsError::unauthorized())
            };
        }
        for g in s.groups.values() {
            let derived: Vec<Secret> = keys_of(g.attestation.symmetric_key.as_ref())
                .into_iter()
                .filter_map(|k| derive_device_key(k, registration_id).ok())
                .collect();
            if verifies(&token, &derived.iter().collect::<Vec<_>>()) {
                return Ok(Attestor::Group {
                    registration_id: registration_id.to_owned(),
                    group_id: g.enrollment_group_id.clone(),
                });
            }
        }
        Err(DpsError::unauthorized())
    }

    /// Checks the client certificate chain of a registration without a SAS token (see
    /// [`Dps::match_x509`]).
    pub(crate) fn authorize_x509(
        &self,
        registration_id: &str,
        chain: &[CertificateDer<'_>],
        now_unix: u64,
    ) -> Result<Attestor, DpsError> {
        let registration_id = registration_id.to_owned();
        Ok(match self.match_x509(&registration_id, chain, now_unix)? {
            X509Match::Individual => Attestor::X509Individual {
                registration_id,
                // The chain is not empty once it matched.
                thumbprint: Thumbprint::sha256(chain.first().map_or(&[][..], |c| c.as_ref())),
            },
            X509Match::Group(group_id) => Attestor::X509Group {
                registration_id,
                group_id,
            },
        })
    }

    /// Registers a proven device: assigns it to the hub (through `provisioner`) and returns
    /// the first answer, `assigning` with the operation to poll; a disabled enrollment is
    /// answered `disabled` at once.
    pub(crate) fn register(
        &self,
        attestor: &Attestor,
        request: &RegistrationRequest,
        provisioner: &dyn Provisioner,
    ) -> Result<RegistrationOperation, DpsError> {
        let registration_id = attestor.registration_id();
        if request.registration_id != registration_id {
            return Err(DpsError::bad_request(
                "The registrationId in the body differs from the one authenticated.",
            ));
        }
        let (device, enabled, group_id) = {
            let s = self.lock();
            let first = !s.registrations.contains_key(registration_id);
            match attestor {
                Attestor::Individual { .. } | Attestor::X509Individual { .. } => {
                    let e = s
                        .individual
                        .get(registration_id)
                        .ok_or_else(DpsError::unauthorized)?;
                    let (keys, x509) = match attestor {
                        Attestor::X509Individual { thumbprint, .. } => (
                            SymmetricKey::default(),
                            Some(X509Credential::SelfSigned(thumbprint.clone())),
                        ),
                        _ => (
                            e.attestation.symmetric_key.clone().unwrap_or_default(),
                            None,
                        ),
                    };
                    let device = ProvisionedDevice {
                        device_id: e
                            .device_id
                            .clone()
                            .unwrap_or_else(|| registration_id.to_owned()),
                        keys,
                        x509,
                        initial_twin: e.initial_twin.clone(),
                        reset_twin: first,
                    };
                    (device, is_enabled(e.provisioning_status.as_deref()), None)
                }
                Attestor::X509Group { group_id, .. } => {
                    let g = s.groups.get(group_id).ok_or_else(DpsError::unauthorized)?;
                    let device = ProvisionedDevice {
                        device_id: registration_id.to_owned(),
                        keys: SymmetricKey::default(),
                        x509: Some(X509Credential::CertificateAuthority),
                        initial_twin: g.initial_twin.clone(),
                        reset_twin: first,
                    };
                    (
                        device,
                        is_enabled(g.provisioning_status.as_deref()),
                        Some(group_id.clone()),
                    )
                }
                Attestor::Group { group_id, .. } => {
                    let g = s.groups.get(group_id).ok_or_else(DpsError::unauthorized)?;
                    let derive = |k: &Option<Secret>| {
                        k.as_ref()
                            .and_then(|k| derive_device_key(k, registration_id).ok())
                    };
                    let group_keys = g.attestation.symmetric_key.clone().unwrap_or_default();
                    let mut keys = SymmetricKey::default();
                    keys.primary_key = derive(&group_keys.primary_key);
                    keys.secondary_key = derive(&group_keys.secondary_key);
                    let device = ProvisionedDevice {
                        device_id: registration_id.to_owned(),
                        keys,
                        x509: None,
                        initial_twin: g.initial_twin.clone(),
                        reset_twin: first,
                    };
                    (
                        device,
                        is_enabled(g.provisioning_status.as_deref()),
                        Some(group_id.clone()),
                    )
                }
            }
        };
        let now = now_string();
        let mut state = RegistrationState {
            registration_id: registration_id.to_owned(),
            created_date_time_utc: Some(now.clone()),
            assigned_hub: None,
            device_id: None,
            status: None,
            substatus: None,
            last_updated_date_time_utc: Some(now),
            etag: None,
            payload: None,
            error_code: None,
            error_message: None,
        };
        let id = operation_id();
        if !enabled {
            state.status = Some(RegistrationStatus::Disabled);
            return Ok(RegistrationOperation {
                operation_id: id,
                status: RegistrationStatus::Disabled,
                registration_state: Some(state),
            });
        }
        // The hub is called without DPS's lock held: the two cores never lock each other.
        match provisioner.provision(&device) {
            Ok(()) => {
                state.assigned_hub = Some(self.hub_host.clone());
                state.device_id = Some(device.device_id.clone());
                state.status = Some(RegistrationStatus::Assigned);
                state.substatus = Some(Substatus::InitialAssignment);
            }
            Err(message) => {
                tracing::info!(registration_id, %message, "the hub refused the assignment");
                state.status = Some(RegistrationStatus::Failed);
                state.error_code = Some(500_000);
                state.error_message = Some(message);
            }
        }
        let mut s = self.lock();
        state.etag = Some(s.next_etag());
        if let Some(created) = s
            .registrations
            .get(registration_id)
            .and_then(|old| old.created_date_time_utc.clone())
        {
            state.created_date_time_utc = Some(created);
        }
        let finished = RegistrationOperation {
            operation_id: id.clone(),
            status: state.status.unwrap_or(RegistrationStatus::Failed),
            registration_state: Some(state.clone()),
        };
        if state.status == Some(RegistrationStatus::Assigned) {
            s.registrations
                .insert(registration_id.to_owned(), state.clone());
            s.touch(Kind::Registration, registration_id);
            match group_id {
                Some(g) => {
                    s.group_of.insert(registration_id.to_owned(), g);
                }
                None => {
                    s.group_of.remove(registration_id);
                    if let Some(e) = s.individual.get_mut(registration_id) {
                        e.registration_state = Some(state);
                        s.touch(Kind::Enrollment, registration_id);
                    }
                }
            }
        }
        if s.operations.len() >= MAX_OPERATIONS {
            s.operations.pop_front();
        }
        s.operations.push_back((id.clone(), finished));
        Ok(RegistrationOperation {
            operation_id: id,
            status: RegistrationStatus::Assigning,
            registration_state: None,
        })
    }

    /// A poll: the finished operation `operation_id` of `registration_id`.
    pub(crate) fn operation(
        &self,
        registration_id: &str,
        operation_id: &str,
    ) -> Result<RegistrationOperation, DpsError> {
        let s = self.lock();
        s.operations
            .iter()
            .rev()
            .find(|(id, op)| {
                id == operation_id
                    && op
                        .registration_state
                        .as_ref()
                        .is_some_and(|st| st.registration_id == registration_id)
            })
            .map(|(_, op)| op.clone())
            .ok_or_else(|| DpsError::not_found("Operation"))
    }
}
