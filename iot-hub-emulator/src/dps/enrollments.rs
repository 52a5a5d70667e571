//! Enrollment documents (as the enrollment service API carries them) and their CRUD rules:
//! etags, server-generated keys, `provisioningStatus`, timestamps.

use super::x509::{Role, check_attestation};
use super::{Dps, DpsError, MAX_ENROLLMENTS};
use crate::clock::now_string;
use crate::hub::persistence::Kind;
use crate::hub::registry::etag_matches;
use base64::Engine as _;
use iot_common::Secret;
use iot_common::provisioning::{
    Attestation, AttestationType, EnrollmentGroup, IndividualEnrollment, RegistrationState,
    validate_registration_id,
};
use iot_common::registry::SymmetricKey;

pub(crate) fn is_enabled(status: Option<&str>) -> bool {
    status.is_none_or(|s| s.eq_ignore_ascii_case("enabled"))
}

/// 64 random bytes, base64: the length DPS generates.
fn generate_key() -> Secret {
    let bytes: [u8; 64] = std::array::from_fn(|_| rand::random());
    Secret::new(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Checks the attestation and fills in the keys DPS generates when none are given. `role`
/// says which certificates an X.509 attestation carries (a device's or a group's CA).
fn prepare_attestation(a: &mut Attestation, role: Role) -> Result<(), DpsError> {
    match a.kind {
        AttestationType::SymmetricKey => {
            let keys = a.symmetric_key.get_or_insert_with(SymmetricKey::default);
            for slot in [&mut keys.primary_key, &mut keys.secondary_key] {
                match slot {
                    Some(k) if !k.is_empty() => {
                        base64::engine::general_purpose::STANDARD
                            .decode(k.expose().trim())
                            .map_err(|_| {
                                DpsError::bad_request("A symmetric key is not valid base64.")
                            })?;
                    }
                    _ => *slot = Some(generate_key()),
                }
            }
            Ok(())
        }
        AttestationType::X509 => match &a.x509 {
            Some(x509) => check_attestation(x509, role),
            None => Err(DpsError::bad_request(
                "An x509 attestation needs an `x509` object.",
            )),
        },
        AttestationType::Tpm => Err(DpsError::bad_request(
            "TPM attestation is not supported by the emulator.",
        )),
    }
}

fn check_status(status: &mut Option<String>) -> Result<(), DpsError> {
    match status.as_deref() {
        None => *status = Some("enabled".into()),
        Some("enabled" | "disabled") => {}
        Some(_) => {
            return Err(DpsError::bad_request(
                "provisioningStatus must be `enabled` or `disabled`.",
            ));
        }
    }
    Ok(())
}

/// Applies the etag rule of a create-or-replace: `If-Match` must name the current etag of
/// an existing document (absent or `*` always passes), and names nothing on a new one.
fn check_if_match(current: Option<&str>, if_match: Option<&str>) -> Result<(), DpsError> {
    let wildcard = if_match
        .map(str::trim)
        .is_none_or(|m| m.is_empty() || m == "*" || m == "\"*\"");
    match current {
        Some(etag) if !etag_matches(if_match, etag.trim_matches('"')) => {
            Err(DpsError::precondition_failed())
        }
        None if !wildcard => Err(DpsError::precondition_failed()),
        _ => Ok(()),
    }
}

impl Dps {
    /// `PUT /enrollments/{id}`: create or replace an individual enrollment.
    pub(crate) fn put_enrollment(
        &self,
        id: &str,
        mut doc: IndividualEnrollment,
        if_match: Option<&str>,
    ) -> Result<IndividualEnrollment, DpsError> {
        if doc.registration_id.is_empty() {
            doc.registration_id = id.to_owned();
        }
        if doc.registration_id != id {
            return Err(DpsError::bad_request(
                "The registrationId in the body differs from the one in the path.",
            ));
        }
        validate_registration_id(id).map_err(|e| DpsError::bad_request(e.to_string()))?;
        prepare_attestation(&mut doc.attestation, Role::Client)?;
        check_status(&mut doc.provisioning_status)?;
        let mut s = self.lock();
        let old = s.individual.get(id);
        check_if_match(old.and_then(|o| o.etag.as_deref()), if_match)?;
        if old.is_none() && s.individual.len() + s.groups.len() >= MAX_ENROLLMENTS {
            return Err(DpsError::new(
                403,
                403002,
                "The enrollment limit of the emulator is reached.",
            ));
        }
        let now = now_string();
        doc.created_date_time_utc = Some(
            old.and_then(|o| o.created_date_time_utc.clone())
                .unwrap_or_else(|| now.clone()),
        );
        doc.registration_state = old.and_then(|o| o.registration_state.clone());
        doc.last_updated_date_time_utc = Some(now);
        doc.etag = Some(s.next_etag());
        s.individual.insert(id.to_owned(), doc.clone());
        s.touch(Kind::Enrollment, id);
        Ok(doc)
    }

    /// `GET /enrollments/{id}`.
    pub(crate) fn enrollment(&self, id: &str) -> Result<IndividualEnrollment, DpsError> {
        self.lock()
            .individual
            .get(id)
            .cloned()
            .ok_or_else(|| DpsError::not_found("Enrollment"))
    }

    /// `DELETE /enrollments/{id}`.
    pub(crate) fn delete_enrollment(
        &self,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(), DpsError> {
        let mut s = self.lock();
        let old = s
            .individual
            .get(id)
            .ok_or_else(|| DpsError::not_found("Enrollment"))?;
        check_if_match(old.etag.as_deref(), if_match)?;
        s.individual.remove(id);
        s.touch(Kind::Enrollment, id);
        Ok(())
    }

    /// `POST /enrollments/query`: every individual enrollment, in id order.
    pub(crate) fn enrollments(&self) -> Vec<IndividualEnrollment> {
        self.lock().individual.values().cloned().collect()
    }

    /// `PUT /enrollmentGroups/{id}`: create or replace a group.
    pub(crate) fn put_group(
        &self,
        id: &str,
        mut doc: EnrollmentGroup,
        if_match: Option<&str>,
    ) -> Result<EnrollmentGroup, DpsError> {
        if doc.enrollment_group_id.is_empty() {
            doc.enrollment_group_id = id.to_owned();
        }
        if doc.enrollment_group_id != id {
            return Err(DpsError::bad_request(
                "The enrollmentGroupId in the body differs from the one in the path.",
            ));
        }
        validate_registration_id(id).map_err(|e| DpsError::bad_request(e.to_string()))?;
        prepare_attestation(&mut doc.attestation, Role::Signing)?;
        check_status(&mut doc.provisioning_status)?;
        let mut s = self.lock();
        let old = s.groups.get(id);
        check_if_match(old.and_then(|o| o.etag.as_deref()), if_match)?;
        if old.is_none() && s.individual.len() + s.groups.len() >= MAX_ENROLLMENTS {
            return Err(DpsError::new(
                403,
                403002,
                "The enrollment limit of the emulator is reached.",
            ));
        }
        let now = now_string();
        doc.created_date_time_utc = Some(
            old.and_then(|o| o.created_date_time_utc.clone())
                .unwrap_or_else(|| now.clone()),
        );
        doc.last_updated_date_time_utc = Some(now);
        doc.etag = Some(s.next_etag());
        s.groups.insert(id.to_owned(), doc.clone());
        s.touch(Kind::EnrollmentGroup, id);
        Ok(doc)
    }

    /// `GET /enrollmentGroups/{id}`.
    pub(crate) fn group(&self, id: &str) -> Result<EnrollmentGroup, DpsError> {
        self.lock()
            .groups
            .get(id)
            .cloned()
            .ok_or_else(|| DpsError::not_found("Enrollment group"))
    }

    /// `DELETE /enrollmentGroups/{id}`.
    pub(crate) fn delete_group(&self, id: &str, if_match: Option<&str>) -> Result<(), DpsError> {
        let mut s = self.lock();
        let old = s
            .groups
            .get(id)
            .ok_or_else(|| DpsError::not_found("Enrollment group"))?;
        check_if_match(old.etag.as_deref(), if_match)?;
        s.groups.remove(id);
        s.touch(Kind::EnrollmentGroup, id);
        Ok(())
    }

    /// `POST /enrollmentGroups/query`.
    pub(crate) fn groups(&self) -> Vec<EnrollmentGroup> {
        self.lock().groups.values().cloned().collect()
    }

    /// `GET /registrations/{id}`: a device's registration state.
    pub(crate) fn registration(&self, id: &str) -> Result<RegistrationState, DpsError> {
        self.lock()
            .registrations
            .get(id)
            .cloned()
            .ok_or_else(|| DpsError::not_found("Registration"))
    }

    /// `DELETE /registrations/{id}`: forgets a registration (the next one is an initial
    /// assignment again).
    pub(crate) fn delete_registration(
        &self,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(), DpsError> {
        let mut s = self.lock();
        let old = s
            .registrations
            .get(id)
            .ok_or_else(|| DpsError::not_found("Registration"))?;
        check_if_match(old.etag.as_deref(), if_match)?;
        s.registrations.remove(id);
        s.group_of.remove(id);
        s.touch(Kind::Registration, id);
        if let Some(e) = s.individual.get_mut(id) {
            e.registration_state = None;
            s.touch(Kind::Enrollment, id);
        }
        Ok(())
    }

    /// `POST /registrations/{groupId}/query`: the registrations made under a group.
    pub(crate) fn group_registrations(&self, group_id: &str) -> Vec<RegistrationState> {
        let s = self.lock();
        s.registrations
            .values()
            .filter(|r| s.group_of.get(&r.registration_id).map(String::as_str) == Some(group_id))
            .cloned()
            .collect()
    }
}
