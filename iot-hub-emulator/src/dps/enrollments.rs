//! Enrollment documents (as the enrollment service API carries them) and their CRUD rules:
//! etags, server-generated keys, `provisioningStatus`, timestamps.

use super::x509::{Role, check_attestation};
use super::{Dps, DpsError, DpsState, MAX_ENROLLMENTS};
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
use std::collections::BTreeMap;

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

/// What an individual enrollment and an enrollment group share in the enrollment API: an id
/// from the path, an attestation, a status, server-set times and etag, a table of their own.
trait Document: Clone {
    /// For messages: "Enrollment", "Enrollment group".
    const NAME: &'static str;
    /// The body's id field.
    const ID_FIELD: &'static str;
    const KIND: Kind;
    const ROLE: Role;
    fn id_mut(&mut self) -> &mut String;
    fn attestation_mut(&mut self) -> &mut Attestation;
    fn status_mut(&mut self) -> &mut Option<String>;
    fn etag(&self) -> Option<&str>;
    fn created(&self) -> Option<&String>;
    /// Sets the server-owned fields; `old` is the document being replaced.
    fn stamp(&mut self, old: Option<&Self>, created: String, updated: String, etag: String);
    fn table(s: &mut DpsState) -> &mut BTreeMap<String, Self>;
}

impl Document for IndividualEnrollment {
    const NAME: &'static str = "Enrollment";
    const ID_FIELD: &'static str = "registrationId";
    const KIND: Kind = Kind::Enrollment;
    const ROLE: Role = Role::Client;
    fn id_mut(&mut self) -> &mut String {
        &mut self.registration_id
    }
    fn attestation_mut(&mut self) -> &mut Attestation {
        &mut self.attestation
    }
    fn status_mut(&mut self) -> &mut Option<String> {
        &mut self.provisioning_status
    }
    fn etag(&self) -> Option<&str> {
        self.etag.as_deref()
    }
    fn created(&self) -> Option<&String> {
        self.created_date_time_utc.as_ref()
    }
    fn stamp(&mut self, old: Option<&Self>, created: String, updated: String, etag: String) {
        // The registration state is the service's, not the caller's.
        self.registration_state = old.and_then(|o| o.registration_state.clone());
        self.created_date_time_utc = Some(created);
        self.last_updated_date_time_utc = Some(updated);
        self.etag = Some(etag);
    }
    fn table(s: &mut DpsState) -> &mut BTreeMap<String, Self> {
        &mut s.individual
    }
}

impl Document for EnrollmentGroup {
    const NAME: &'static str = "Enrollment group";
    const ID_FIELD: &'static str = "enrollmentGroupId";
    const KIND: Kind = Kind::EnrollmentGroup;
    const ROLE: Role = Role::Signing;
    fn id_mut(&mut self) -> &mut String {
        &mut self.enrollment_group_id
    }
    fn attestation_mut(&mut self) -> &mut Attestation {
        &mut self.attestation
    }
    fn status_mut(&mut self) -> &mut Option<String> {
        &mut self.provisioning_status
    }
    fn etag(&self) -> Option<&str> {
        self.etag.as_deref()
    }
    fn created(&self) -> Option<&String> {
        self.created_date_time_utc.as_ref()
    }
    fn stamp(&mut self, _old: Option<&Self>, created: String, updated: String, etag: String) {
        self.created_date_time_utc = Some(created);
        self.last_updated_date_time_utc = Some(updated);
        self.etag = Some(etag);
    }
    fn table(s: &mut DpsState) -> &mut BTreeMap<String, Self> {
        &mut s.groups
    }
}

impl Dps {
    /// Create or replace: the id comes from the path (the body may leave it out), keys are
    /// generated where empty, `If-Match` is honoured and the server-owned fields are set.
    fn put<D: Document>(
        &self,
        id: &str,
        mut doc: D,
        if_match: Option<&str>,
    ) -> Result<D, DpsError> {
        if doc.id_mut().is_empty() {
            *doc.id_mut() = id.to_owned();
        }
        if doc.id_mut() != id {
            return Err(DpsError::bad_request(format!(
                "The {} in the body differs from the one in the path.",
                D::ID_FIELD
            )));
        }
        validate_registration_id(id).map_err(|e| DpsError::bad_request(e.to_string()))?;
        prepare_attestation(doc.attestation_mut(), D::ROLE)?;
        check_status(doc.status_mut())?;
        let mut s = self.lock();
        let total = s.individual.len() + s.groups.len();
        let old = D::table(&mut s).get(id).cloned();
        check_if_match(old.as_ref().and_then(D::etag), if_match)?;
        if old.is_none() && total >= MAX_ENROLLMENTS {
            return Err(DpsError::new(
                403,
                403002,
                "The enrollment limit of the emulator is reached.",
            ));
        }
        let now = now_string();
        let created = old
            .as_ref()
            .and_then(D::created)
            .cloned()
            .unwrap_or_else(|| now.clone());
        let etag = s.next_etag();
        doc.stamp(old.as_ref(), created, now, etag);
        D::table(&mut s).insert(id.to_owned(), doc.clone());
        s.touch(D::KIND, id);
        Ok(doc)
    }

    fn get<D: Document>(&self, id: &str) -> Result<D, DpsError> {
        D::table(&mut self.lock())
            .get(id)
            .cloned()
            .ok_or_else(|| DpsError::not_found(D::NAME))
    }

    fn delete<D: Document>(&self, id: &str, if_match: Option<&str>) -> Result<(), DpsError> {
        let mut s = self.lock();
        let old = D::table(&mut s)
            .get(id)
            .ok_or_else(|| DpsError::not_found(D::NAME))?;
        check_if_match(old.etag(), if_match)?;
        D::table(&mut s).remove(id);
        s.touch(D::KIND, id);
        Ok(())
    }

    /// `PUT /enrollments/{id}`: create or replace an individual enrollment.
    pub(crate) fn put_enrollment(
        &self,
        id: &str,
        doc: IndividualEnrollment,
        if_match: Option<&str>,
    ) -> Result<IndividualEnrollment, DpsError> {
        self.put(id, doc, if_match)
    }

    /// `GET /enrollments/{id}`.
    pub(crate) fn enrollment(&self, id: &str) -> Result<IndividualEnrollment, DpsError> {
        self.get(id)
    }

    /// `DELETE /enrollments/{id}`.
    pub(crate) fn delete_enrollment(
        &self,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(), DpsError> {
        self.delete::<IndividualEnrollment>(id, if_match)
    }

    /// `POST /enrollments/query`: every individual enrollment, in id order.
    pub(crate) fn enrollments(&self) -> Vec<IndividualEnrollment> {
        self.lock().individual.values().cloned().collect()
    }

    /// `PUT /enrollmentGroups/{id}`: create or replace a group.
    pub(crate) fn put_group(
        &self,
        id: &str,
        doc: EnrollmentGroup,
        if_match: Option<&str>,
    ) -> Result<EnrollmentGroup, DpsError> {
        self.put(id, doc, if_match)
    }

    /// `GET /enrollmentGroups/{id}`.
    pub(crate) fn group(&self, id: &str) -> Result<EnrollmentGroup, DpsError> {
        self.get(id)
    }

    /// `DELETE /enrollmentGroups/{id}`.
    pub(crate) fn delete_group(&self, id: &str, if_match: Option<&str>) -> Result<(), DpsError> {
        self.delete::<EnrollmentGroup>(id, if_match)
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
