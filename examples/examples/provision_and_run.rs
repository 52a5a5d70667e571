//! Provisions a device through the Device Provisioning Service, then runs the tutorial's
//! device app on the hub DPS assigned it to.
//!
//! `cargo run -p iot-examples --example provision_and_run`
//!
//! The device registers as `IOTHUB_DPS_REGISTRATION_ID` (default `provisioned-device-1`) with
//! `IOTHUB_DPS_SYMMETRIC_KEY` (an individual enrollment's key) or `IOTHUB_DPS_GROUP_KEY` (an
//! enrollment group's key, from which its own key is derived). With neither set, the example
//! first creates the enrollment group `example-group` through the enrollment service API
//! (`IOTHUB_DPS_CONNECTION_STRING`) and uses its key: zero configuration against the emulator.
//! Other settings: see `iot_examples::settings`. Runs until Ctrl-C.

use iot_device::Secret;
use iot_device::provisioning::ProvisioningClient;
use iot_examples::{settings, tutorial};
use iot_service::{EnrollmentGroup, ProvisioningServiceClient};
use std::time::Duration;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The example group's key, creating the group when it does not exist.
async fn example_group_key() -> Result<Secret, BoxError> {
    let dps = ProvisioningServiceClient::from_connection_string(
        &settings::dps_connection_string(),
        settings::service_options()?,
    )?;
    let group = match dps.get_enrollment_group("example-group").await {
        Ok(g) => g,
        Err(e) if e.kind() == iot_service::ErrorKind::NotFound => {
            let mut g = EnrollmentGroup::with_symmetric_key("example-group");
            g.initial_twin =
                Some(serde_json::json!({"tags": {"provisionedBy": "provision_and_run"}}));
            dps.create_or_update_enrollment_group(&g).await?
        }
        Err(e) => return Err(e.into()),
    };
    group
        .attestation
        .symmetric_key
        .and_then(|k| k.primary_key)
        .ok_or_else(|| "the enrollment group has no symmetric key".into())
}

async fn run() -> Result<(), BoxError> {
    let registration_id =
        var("IOTHUB_DPS_REGISTRATION_ID").unwrap_or_else(|| "provisioned-device-1".to_owned());
    let scope = settings::dps_id_scope();
    let client = match (var("IOTHUB_DPS_SYMMETRIC_KEY"), var("IOTHUB_DPS_GROUP_KEY")) {
        (Some(key), _) => {
            ProvisioningClient::with_symmetric_key(scope, &registration_id, Secret::new(key))
        }
        (None, Some(group)) => {
            ProvisioningClient::with_group_key(scope, &registration_id, &Secret::new(group))?
        }
        (None, None) => ProvisioningClient::with_group_key(
            scope,
            &registration_id,
            &example_group_key().await?,
        )?,
    };
    let registration = client
        .endpoint(settings::dps_endpoint())
        .options(settings::device_options()?)
        .register()
        .await?;
    println!(
        "provisioned: {} assigned to {} as {} ({:?})",
        registration_id,
        registration.assigned_hub(),
        registration.device_id(),
        registration.substatus()
    );
    let device = registration.connect().await?;
    tutorial::serve_reboot(&device, Duration::from_secs(3)).await?;
    println!("device: waiting for rebootDevice (Ctrl-C to stop)");
    let _ = tokio::signal::ctrl_c().await;
    device.close().await?;
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("provision_and_run: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
