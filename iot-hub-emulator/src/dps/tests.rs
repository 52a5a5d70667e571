use super::*;
use iot_common::provisioning::{RegistrationRequest, RegistrationStatus, topics};
use iot_common::{SasToken, Secret};
use serde_json::json;
use std::sync::Mutex;

const SCOPE: &str = "0ne00000A1B";
const GROUP_KEY: &str = "Z3JvdXAta2V5LTAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OQ==";
const NOW: u64 = 1_600_000_000;

#[derive(Default)]
struct Recorder {
    devices: Mutex<Vec<ProvisionedDevice>>,
    refuse: bool,
}

impl Provisioner for Recorder {
    fn provision(&self, device: &ProvisionedDevice) -> Result<(), String> {
        if self.refuse {
            return Err("the hub's device limit is reached".into());
        }
        self.devices.lock().unwrap().push(device.clone());
        Ok(())
    }
}

fn dps() -> Dps {
    Dps::new(SCOPE, "localhost", 1)
}

fn enrollment(doc: serde_json::Value) -> IndividualEnrollment {
    serde_json::from_value(doc).unwrap()
}

fn group(doc: serde_json::Value) -> EnrollmentGroup {
    serde_json::from_value(doc).unwrap()
}

fn token(rid: &str, key: &Secret, expires: u64) -> String {
    SasToken::sign(
        &topics::sas_resource(SCOPE, rid),
        key,
        Some("registration"),
        expires,
    )
    .unwrap()
    .as_secret()
    .expose()
    .to_owned()
}

fn request(rid: &str) -> RegistrationRequest {
    RegistrationRequest {
        registration_id: rid.into(),
        payload: None,
    }
}

#[test]
fn an_individual_enrollment_with_generated_keys_registers_and_applies_its_initial_twin_once() {
    let dps = dps();
    let e = dps
        .put_enrollment(
            "dev-1",
            enrollment(json!({"registrationId": "dev-1", "deviceId": "device-one",
                "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": "", "secondaryKey": ""}},
                "initialTwin": {"tags": {"a": 1}, "properties": {"desired": {"x": 1}}}})),
            None,
        )
        .unwrap();
    let keys = e.attestation.symmetric_key.clone().unwrap();
    let primary = keys.primary_key.unwrap();
    assert_eq!(primary.expose().len(), 88, "64 random bytes in base64");
    assert_eq!(e.provisioning_status.as_deref(), Some("enabled"));
    assert!(e.etag.is_some() && e.created_date_time_utc.is_some());

    let hub = Recorder::default();
    let who = dps
        .authorize_sas("dev-1", &token("dev-1", &primary, NOW + 60), NOW)
        .unwrap();
    let first = dps.register(&who, &request("dev-1"), &hub).unwrap();
    assert_eq!(first.status, RegistrationStatus::Assigning);
    let done = dps.operation("dev-1", &first.operation_id).unwrap();
    assert_eq!(done.status, RegistrationStatus::Assigned);
    let state = done.registration_state.unwrap();
    assert_eq!(state.assigned_hub.as_deref(), Some("localhost"));
    assert_eq!(state.device_id.as_deref(), Some("device-one"));
    assert_eq!(
        dps.enrollment("dev-1").unwrap().registration_state,
        Some(state)
    );

    dps.register(&who, &request("dev-1"), &hub).unwrap();
    let devices = hub.devices.lock().unwrap();
    assert_eq!(devices.len(), 2);
    assert_eq!(devices[0].device_id, "device-one");
    assert_eq!(devices[0].keys.primary_key.as_ref(), Some(&primary));
    assert_eq!(devices[0].initial_twin.as_ref().unwrap()["tags"]["a"], 1);
    assert!(devices[0].reset_twin && !devices[1].reset_twin);
}

#[test]
fn group_tokens_from_both_official_sdks_verify_with_the_derived_key() {
    let dps = dps();
    dps.put_group(
        "grp-sym",
        group(json!({"attestation": {"type": "symmetricKey",
            "symmetricKey": {"primaryKey": GROUP_KEY, "secondaryKey": GROUP_KEY}}})),
        None,
    )
    .unwrap();
    // The reference vectors: Python signs the encoded resource, Node the raw one.
    let python = "SharedAccessSignature sr=0ne00000A1B%2Fregistrations%2Fdev-sym-1&sig=U8GCut209ECWUY3BXZsWVFZcm7MrpFrbehwdXfoAoOg%3D&se=1700000000";
    let node = "SharedAccessSignature sr=0ne00000A1B/registrations/dev-sym-1&sig=D84LQliNxsJjawcZDZDjjL%2BbPOLsDrTrBY0Jrgq%2F86U%3D&skn=registration&se=1700000000";
    for t in [python, node] {
        assert_eq!(
            dps.authorize_sas("dev-sym-1", t, NOW),
            Ok(Attestor::Group {
                registration_id: "dev-sym-1".into(),
                group_id: "grp-sym".into()
            })
        );
    }
    let hub = Recorder::default();
    let who = dps.authorize_sas("dev-sym-1", python, NOW).unwrap();
    dps.register(&who, &request("dev-sym-1"), &hub).unwrap();
    let device = hub.devices.lock().unwrap()[0].clone();
    assert_eq!(
        device.keys.primary_key.unwrap().expose(),
        "yPL9QT/tTWKRYzS9kl//4PPrl6+cNyBA1FKqlh67HK0="
    );
    assert_eq!(dps.group_registrations("grp-sym").len(), 1);
}

#[test]
fn wrong_expired_or_misdirected_tokens_are_unauthorized() {
    let dps = dps();
    let key = Secret::new(GROUP_KEY);
    dps.put_enrollment(
        "dev-1",
        enrollment(json!({"attestation": {"type": "symmetricKey",
            "symmetricKey": {"primaryKey": GROUP_KEY, "secondaryKey": GROUP_KEY}}})),
        None,
    )
    .unwrap();
    let other = Secret::new("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=");
    for (rid, t) in [
        ("dev-1", token("dev-1", &other, NOW + 60)),
        ("dev-1", token("dev-1", &key, NOW - 1)),
        ("dev-1", token("dev-2", &key, NOW + 60)),
        ("dev-1", "not a token".to_owned()),
        ("dev-2", token("dev-2", &key, NOW + 60)),
    ] {
        assert_eq!(
            dps.authorize_sas(rid, &t, NOW).unwrap_err().status,
            401,
            "{rid}"
        );
    }
}

#[test]
fn an_individual_enrollment_takes_precedence_over_a_group() {
    let dps = dps();
    dps.put_group(
        "grp",
        group(json!({"attestation": {"type": "symmetricKey",
            "symmetricKey": {"primaryKey": GROUP_KEY, "secondaryKey": GROUP_KEY}}})),
        None,
    )
    .unwrap();
    dps.put_enrollment(
        "dev-sym-1",
        enrollment(json!({"attestation": {"type": "symmetricKey"}})),
        None,
    )
    .unwrap();
    let derived =
        iot_common::provisioning::derive_device_key(&Secret::new(GROUP_KEY), "dev-sym-1").unwrap();
    let err = dps
        .authorize_sas("dev-sym-1", &token("dev-sym-1", &derived, NOW + 60), NOW)
        .unwrap_err();
    assert_eq!(err.status, 401);
}

#[test]
fn a_disabled_enrollment_is_answered_disabled_and_assigns_nothing() {
    let dps = dps();
    let e = dps
        .put_enrollment(
            "dev-1",
            enrollment(
                json!({"attestation": {"type": "symmetricKey"}, "provisioningStatus": "disabled"}),
            ),
            None,
        )
        .unwrap();
    let key = e.attestation.symmetric_key.unwrap().primary_key.unwrap();
    let who = dps
        .authorize_sas("dev-1", &token("dev-1", &key, NOW + 60), NOW)
        .unwrap();
    let hub = Recorder::default();
    let op = dps.register(&who, &request("dev-1"), &hub).unwrap();
    assert_eq!(op.status, RegistrationStatus::Disabled);
    assert!(hub.devices.lock().unwrap().is_empty());
    assert!(dps.registration("dev-1").is_err());
}

#[test]
fn a_hub_refusal_ends_the_operation_failed_with_the_reason() {
    let dps = dps();
    let e = dps
        .put_enrollment(
            "dev-1",
            enrollment(json!({"attestation": {"type": "symmetricKey"}})),
            None,
        )
        .unwrap();
    let key = e.attestation.symmetric_key.unwrap().primary_key.unwrap();
    let who = dps
        .authorize_sas("dev-1", &token("dev-1", &key, NOW + 60), NOW)
        .unwrap();
    let hub = Recorder {
        refuse: true,
        ..Recorder::default()
    };
    let first = dps.register(&who, &request("dev-1"), &hub).unwrap();
    let done = dps.operation("dev-1", &first.operation_id).unwrap();
    assert_eq!(done.status, RegistrationStatus::Failed);
    let state = done.registration_state.unwrap();
    assert!(state.error_message.unwrap().contains("device limit"));
    assert_eq!(
        dps.operation("dev-2", &first.operation_id)
            .unwrap_err()
            .status,
        404
    );
}

#[test]
fn a_body_naming_another_registration_is_refused() {
    let dps = dps();
    let who = Attestor::Individual {
        registration_id: "dev-1".into(),
    };
    let err = dps
        .register(&who, &request("dev-2"), &Recorder::default())
        .unwrap_err();
    assert_eq!(err.status, 400);
}

#[test]
fn enrollment_crud_follows_etags_and_validates_documents() {
    let dps = dps();
    let e = dps
        .put_enrollment(
            "dev-1",
            enrollment(json!({"attestation": {"type": "symmetricKey"}})),
            None,
        )
        .unwrap();
    let etag = e.etag.clone().unwrap();
    let stale = "\"0\"";
    assert_eq!(
        dps.put_enrollment("dev-1", e.clone(), Some(stale))
            .unwrap_err()
            .status,
        412
    );
    let again = dps.put_enrollment("dev-1", e.clone(), Some(&etag)).unwrap();
    assert_ne!(again.etag, e.etag);
    assert_eq!(again.created_date_time_utc, e.created_date_time_utc);
    assert_eq!(
        dps.delete_enrollment("dev-1", Some(&etag))
            .unwrap_err()
            .status,
        412
    );
    dps.delete_enrollment("dev-1", again.etag.as_deref())
        .unwrap();
    assert_eq!(dps.enrollment("dev-1").unwrap_err().status, 404);

    for (doc, why) in [
        (json!({"attestation": {"type": "tpm", "tpm": {}}}), "tpm"),
        (
            json!({"attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": "not base64!"}}}),
            "key",
        ),
        (
            json!({"attestation": {"type": "x509"}}),
            "x509 without certificates",
        ),
        (
            json!({"attestation": {"type": "symmetricKey"}, "provisioningStatus": "maybe"}),
            "status",
        ),
        (
            json!({"registrationId": "other", "attestation": {"type": "symmetricKey"}}),
            "id mismatch",
        ),
    ] {
        assert_eq!(
            dps.put_enrollment("dev-1", enrollment(doc), None)
                .unwrap_err()
                .status,
            400,
            "{why}"
        );
    }
    assert_eq!(
        dps.put_enrollment(
            "Bad Id",
            enrollment(json!({"attestation": {"type": "symmetricKey"}})),
            None
        )
        .unwrap_err()
        .status,
        400
    );
}

#[test]
fn unknown_enrollment_fields_survive_a_round_trip() {
    let dps = dps();
    let e = dps
        .put_group(
            "grp",
            group(
                json!({"attestation": {"type": "symmetricKey"}, "allocationPolicy": "hashed",
                "iotHubs": ["localhost"], "reprovisionPolicy": {"updateHubAssignment": true}}),
            ),
            None,
        )
        .unwrap();
    let back = serde_json::to_value(dps.group("grp").unwrap()).unwrap();
    assert_eq!(back["allocationPolicy"], "hashed");
    assert_eq!(back["reprovisionPolicy"]["updateHubAssignment"], true);
    assert_eq!(back["etag"], json!(e.etag));
    assert_eq!(dps.groups().len(), 1);
}
