//! Device provisioning through the emulator's DPS: this crate's provisioning client and
//! enrollment service client against the in-process emulator, over real sockets.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use iot_device::provisioning::{
    ProvisioningClient, ProvisioningTimeouts, Substatus, derive_device_key,
};
use iot_device::{DeviceClientOptions, ErrorKind as DeviceErrorKind, Secret};
use iot_examples::tutorial;
use iot_hub_emulator::{Emulator, RunningEmulator};
use iot_service::{
    EnrollmentGroup, ErrorKind, IndividualEnrollment, ProvisioningServiceClient,
    RegistrationStatus, ServiceClient, ServiceClientOptions,
};
use serde_json::json;
use std::time::Duration;

struct Dps {
    emu: RunningEmulator,
    enrollments: ProvisioningServiceClient,
    service: ServiceClient,
}

async fn start() -> Dps {
    let emu = Emulator::builder()
        .dps_retry_after(Duration::ZERO)
        .start()
        .await
        .unwrap();
    let options = || {
        ServiceClientOptions::new()
            .trust_ca_pem(emu.ca_pem())
            .unwrap()
    };
    let enrollments = ProvisioningServiceClient::from_connection_string(
        &emu.provisioning_service_connection_string(),
        options(),
    )
    .unwrap();
    let service =
        ServiceClient::from_connection_string(&emu.service_connection_string(), options()).unwrap();
    Dps {
        emu,
        enrollments,
        service,
    }
}

impl Dps {
    fn device_options(&self) -> DeviceClientOptions {
        DeviceClientOptions::new()
            .trust_ca_pem(self.emu.ca_pem())
            .unwrap()
    }

    fn client(&self, registration_id: &str, key: Secret) -> ProvisioningClient {
        ProvisioningClient::with_symmetric_key(self.emu.id_scope(), registration_id, key)
            .endpoint(self.emu.provisioning_endpoint())
            .options(self.device_options())
    }

    async fn group(&self, id: &str) -> Secret {
        let mut g = EnrollmentGroup::with_symmetric_key(id);
        g.initial_twin =
            Some(json!({"tags": {"line": 3}, "properties": {"desired": {"interval": 10}}}));
        let g = self
            .enrollments
            .create_or_update_enrollment_group(&g)
            .await
            .unwrap();
        g.attestation.symmetric_key.unwrap().primary_key.unwrap()
    }
}

#[tokio::test]
async fn a_group_device_provisions_with_its_derived_key_and_runs_the_tutorial() {
    let dps = start().await;
    let group_key = dps.group("line-3").await;
    let registration =
        ProvisioningClient::with_group_key(dps.emu.id_scope(), "sensor-17", &group_key)
            .unwrap()
            .endpoint(dps.emu.provisioning_endpoint())
            .options(dps.device_options())
            .payload(json!({"firmware": "1.2"}))
            .register()
            .await
            .unwrap();
    assert_eq!(registration.device_id(), "sensor-17");
    assert_eq!(registration.assigned_hub(), dps.emu.host_name());
    assert_eq!(registration.substatus(), Some(Substatus::InitialAssignment));

    let device = registration.connect().await.unwrap();
    let desired = device.get_twin().await.unwrap().desired;
    assert_eq!(
        desired.properties["interval"], 10,
        "the group's initial twin"
    );
    tutorial::serve_reboot(&device, Duration::from_millis(10))
        .await
        .unwrap();
    tutorial::reboot_device(&dps.service, "sensor-17")
        .await
        .unwrap();
    let twin = dps.service.get_twin("sensor-17").await.unwrap();
    assert!(
        twin.properties
            .reported
            .properties
            .get("rebootTime")
            .is_some()
    );
    assert_eq!(twin.tags["line"], 3);

    let states = dps
        .enrollments
        .query_group_registrations("line-3")
        .collect_all()
        .await
        .unwrap();
    assert_eq!(states.len(), 1);
    assert_eq!(states[0].status, Some(RegistrationStatus::Assigned));
}

#[tokio::test]
async fn an_individual_enrollment_names_its_device_and_re_provisioning_keeps_it() {
    let dps = start().await;
    let mut e = IndividualEnrollment::with_symmetric_key("reg-a");
    e.device_id = Some("pump-7".into());
    dps.enrollments
        .create_or_update_enrollment(&e)
        .await
        .unwrap();
    let key = dps
        .enrollments
        .enrollment_attestation("reg-a")
        .await
        .unwrap()
        .symmetric_key
        .unwrap()
        .primary_key
        .unwrap();
    let first = dps.client("reg-a", key.clone()).register().await.unwrap();
    assert_eq!(first.device_id(), "pump-7");
    let device = first.connect().await.unwrap();
    device
        .update_reported(&json!({"kept": true}))
        .await
        .unwrap();
    device.close().await.unwrap();

    let again = dps.client("reg-a", key).register().await.unwrap();
    assert_eq!(again.device_id(), "pump-7");
    let twin = dps.service.get_twin("pump-7").await.unwrap();
    assert_eq!(twin.properties.reported.properties["kept"], true);
    let state = dps
        .enrollments
        .get_registration_state("reg-a")
        .await
        .unwrap();
    assert_eq!(state.device_id.as_deref(), Some("pump-7"));
    assert!(
        dps.enrollments
            .get_enrollment("reg-a")
            .await
            .unwrap()
            .registration_state
            .is_some()
    );
}

#[tokio::test]
async fn a_wrong_derived_key_an_unknown_scope_and_a_bad_id_are_typed_errors() {
    let dps = start().await;
    dps.group("grp").await;
    let wrong = derive_device_key(
        &Secret::new("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="),
        "dev-x",
    )
    .unwrap();
    let err = dps
        .client("dev-x", wrong.clone())
        .register()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), DeviceErrorKind::Unauthorized, "{err}");
    let text = err.to_string();
    assert!(text.contains("dev-x") && text.contains("Hint"), "{text}");
    assert!(!text.contains(wrong.expose()), "the key never appears");

    let err = ProvisioningClient::with_symmetric_key("0neUNKNOWN0", "dev-x", wrong.clone())
        .endpoint(dps.emu.provisioning_endpoint())
        .options(dps.device_options())
        .register()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), DeviceErrorKind::Unauthorized, "{err}");

    let err = dps.client("Not Valid", wrong).register().await.unwrap_err();
    assert_eq!(err.kind(), DeviceErrorKind::InvalidInput, "{err}");
}

#[tokio::test]
async fn a_disabled_enrollment_is_refused_with_its_own_kind() {
    let dps = start().await;
    let mut e = IndividualEnrollment::with_symmetric_key("off-1");
    e.provisioning_status = Some("disabled".into());
    let e = dps
        .enrollments
        .create_or_update_enrollment(&e)
        .await
        .unwrap();
    let key = e.attestation.symmetric_key.unwrap().primary_key.unwrap();
    let err = dps.client("off-1", key).register().await.unwrap_err();
    assert_eq!(err.kind(), DeviceErrorKind::Provisioning, "{err}");
    assert!(err.to_string().contains("disabled"), "{err}");
    assert_eq!(
        dps.service.get_device("off-1").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn an_untrusted_provisioning_endpoint_fails_fast_with_a_connection_error() {
    let dps = start().await;
    let key = dps.group("grp").await;
    let client = ProvisioningClient::with_group_key(dps.emu.id_scope(), "dev-y", &key)
        .unwrap()
        .endpoint(dps.emu.provisioning_endpoint())
        .timeouts(ProvisioningTimeouts {
            total_timeout: Duration::from_secs(20),
            ..ProvisioningTimeouts::default()
        });
    // No CA trusted: the handshake fails, and the first failure ends the registration.
    let err = tokio::time::timeout(Duration::from_secs(60), client.register())
        .await
        .expect("a registration that cannot connect must not hang")
        .unwrap_err();
    assert_eq!(err.kind(), DeviceErrorKind::Connection, "{err}");
    assert!(
        err.to_string().contains(&dps.emu.provisioning_endpoint()),
        "{err}"
    );
}

#[tokio::test]
async fn the_enrollment_api_keeps_etags_and_pages() {
    let dps = start().await;
    let created = dps
        .enrollments
        .create_or_update_enrollment(&IndividualEnrollment::with_symmetric_key("e-1"))
        .await
        .unwrap();
    let mut stale = created.clone();
    stale.etag = Some("\"0\"".into());
    let err = dps
        .enrollments
        .create_or_update_enrollment(&stale)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PreconditionFailed, "{err}");
    for i in 2..=5 {
        dps.enrollments
            .create_or_update_enrollment(&IndividualEnrollment::with_symmetric_key(format!(
                "e-{i}"
            )))
            .await
            .unwrap();
    }
    let all = dps
        .enrollments
        .query_enrollments()
        .page_size(2)
        .collect_all()
        .await
        .unwrap();
    assert_eq!(all.len(), 5);
    dps.enrollments
        .delete_enrollment("e-1", None)
        .await
        .unwrap();
    assert_eq!(
        dps.enrollments
            .get_enrollment("e-1")
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    // The hub's owner policy does not reach the provisioning service.
    let hub_owner = ProvisioningServiceClient::from_connection_string(
        &dps.emu.service_connection_string(),
        ServiceClientOptions::new()
            .trust_ca_pem(dps.emu.ca_pem())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        hub_owner.get_enrollment("e-2").await.unwrap_err().kind(),
        ErrorKind::Unauthorized
    );
}

#[tokio::test]
async fn enrollments_and_registrations_survive_a_restart_with_state() {
    let dir = std::env::temp_dir().join(format!("dps-state-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let start_with_state = || async {
        let emu = Emulator::builder()
            .dps_retry_after(Duration::ZERO)
            .state_dir(&dir)
            .start()
            .await
            .unwrap();
        let enrollments = ProvisioningServiceClient::from_connection_string(
            &emu.provisioning_service_connection_string(),
            ServiceClientOptions::new()
                .trust_ca_pem(emu.ca_pem())
                .unwrap(),
        )
        .unwrap();
        let service = ServiceClient::from_connection_string(
            &emu.service_connection_string(),
            ServiceClientOptions::new()
                .trust_ca_pem(emu.ca_pem())
                .unwrap(),
        )
        .unwrap();
        Dps {
            emu,
            enrollments,
            service,
        }
    };
    let first = start_with_state().await;
    let key = first.group("kept").await;
    let derived = derive_device_key(&key, "kept-1").unwrap();
    first
        .client("kept-1", derived.clone())
        .register()
        .await
        .unwrap();
    let etag = first
        .enrollments
        .get_enrollment_group("kept")
        .await
        .unwrap()
        .etag;
    first.emu.shutdown().await.unwrap();

    let second = start_with_state().await;
    let group = second
        .enrollments
        .get_enrollment_group("kept")
        .await
        .unwrap();
    assert_eq!(group.etag, etag);
    let state = second
        .enrollments
        .get_registration_state("kept-1")
        .await
        .unwrap();
    assert_eq!(state.device_id.as_deref(), Some("kept-1"));
    assert_eq!(
        second
            .enrollments
            .query_group_registrations("kept")
            .collect_all()
            .await
            .unwrap()
            .len(),
        1
    );
    // A new document after the restart gets an etag no earlier one had.
    let fresh = second
        .enrollments
        .create_or_update_enrollment(&IndividualEnrollment::with_symmetric_key("fresh"))
        .await
        .unwrap();
    assert_ne!(fresh.etag, etag);
    let again = second.client("kept-1", derived).register().await.unwrap();
    again.connect().await.unwrap().close().await.unwrap();
    second.emu.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
