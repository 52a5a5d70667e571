//! The tutorial's service app: invokes `rebootDevice`, prints the answer, then reads the twin
//! and queries twins until `rebootTime` appears. Exits 1 with a clear message when the device
//! is offline or the method fails.
//!
//! `cargo run -p iot-examples --example dmpatterns_getstarted_service`
//! Environment: see `iot_examples::settings` (defaults: the local emulator).

use iot_examples::{settings, tutorial};
use iot_service::ServiceClient;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let service = match settings::service_options().and_then(|o| {
        ServiceClient::from_connection_string(&settings::service_connection_string(), o)
    }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("service: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match tutorial::reboot_device(&service, &settings::device_id()).await {
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("service: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
