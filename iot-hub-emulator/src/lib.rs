#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, rust_2018_idioms)]

// Layout (see ARCHITECTURE.md): `hub/` is the service core; `mqtt/` and `http/` are front ends
// that call into it and not into each other; `bootstrap` brings a hub up; `builder`,
// `running` and `control` are the library's API.
mod amqp;
mod bootstrap;
mod builder;
mod client_cert;
mod clock;
mod control;
pub mod dev_keys;
mod dps;
mod endpoints;
mod error;
mod http;
mod hub;
mod limits;
mod locks;
mod mqtt;
mod query;
mod running;
mod seed;
mod tls;

#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;

pub use builder::{Emulator, EmulatorBuilder};
pub use control::{Faults, HubOps};
pub use error::{EmulatorApiError, EmulatorError};
pub use hub::FaultSettings;
pub use hub::TelemetryRecord;
pub use hub::registry::Rights;
pub use running::RunningEmulator;

/// Runs an IoT Hub query over JSON documents (service-side twins, or device-job rows for
/// `FROM devices.jobs`), exactly as `POST /devices/query` does before paging: the emulator's
/// query engine, for tools and benchmarks.
///
/// ```
/// let twins = vec![serde_json::json!({"deviceId": "a", "tags": {"floor": 3}})];
/// let rows = iot_hub_emulator::run_query("SELECT deviceId FROM devices WHERE tags.floor > 2", &twins)?;
/// assert_eq!(rows, vec![serde_json::json!({"deviceId": "a"})]);
/// # Ok::<(), String>(())
/// ```
///
/// # Errors
/// The syntax error, with its position.
pub fn run_query(
    sql: &str,
    documents: &[serde_json::Value],
) -> Result<Vec<serde_json::Value>, String> {
    let q = query::parse_query(sql).map_err(|e| e.to_string())?;
    let mut rows = query::run(&q, documents);
    if let Some(top) = q.top {
        rows.truncate(top);
    }
    Ok(rows)
}
