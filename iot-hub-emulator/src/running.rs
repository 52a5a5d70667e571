//! A started emulator: where it listens, how to connect to it, and its control handles
//! ([`RunningEmulator::hub`] for hub operations, [`RunningEmulator::faults`] for faults).

use crate::control::{Faults, HubOps};
use crate::endpoints::Endpoints;
use crate::error::EmulatorError;
use crate::hub::Hub;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running emulator: its addresses, CA, connection strings, and controls for tests.
///
/// Dropping it stops the listeners; [`RunningEmulator::shutdown`] also waits for them and
/// flushes `--state`.
#[derive(Debug)]
pub struct RunningEmulator {
    pub(crate) hub: Arc<Hub>,
    pub(crate) endpoints: Endpoints,
    pub(crate) ca_pem: String,
    pub(crate) ca_path: Option<PathBuf>,
    pub(crate) shutdown: watch::Sender<bool>,
    pub(crate) tasks: Vec<JoinHandle<()>>,
}

impl RunningEmulator {
    /// Hub operations as the service and devices would cause them: identities, twins,
    /// methods, cloud-to-device messages, telemetry, connections.
    pub fn hub(&self) -> HubOps<'_> {
        HubOps::new(&self.hub, &self.endpoints)
    }

    /// Fault injection: arm faults and count how many fired.
    pub fn faults(&self) -> Faults<'_> {
        Faults::new(&self.hub)
    }

    /// The MQTT over TLS address.
    pub fn mqtt_addr(&self) -> SocketAddr {
        self.endpoints.mqtt
    }

    /// The HTTPS address (REST and MQTT over WebSockets).
    pub fn https_addr(&self) -> SocketAddr {
        self.endpoints.https
    }

    /// The AMQP over TLS address (service plane: CBS and cloud-to-device sends).
    pub fn amqp_addr(&self) -> SocketAddr {
        self.endpoints.amqp
    }

    /// The plain MQTT address, when enabled.
    pub fn plain_mqtt_addr(&self) -> Option<SocketAddr> {
        self.endpoints.plain_mqtt
    }

    /// The hub host name.
    pub fn host_name(&self) -> &str {
        self.hub.host_name()
    }

    /// The CA certificate (PEM) that clients must trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Where the CA certificate was written, when a certificate directory is in use.
    pub fn ca_cert_path(&self) -> Option<&Path> {
        self.ca_path.as_deref()
    }

    /// `https://localhost:{port}`: the REST base URL.
    pub fn https_url(&self) -> String {
        self.endpoints.https_url(&self.hub)
    }

    /// A service connection string for a shared access policy (e.g. `iothubowner`).
    pub fn policy_connection_string(&self, policy: &str) -> Option<String> {
        self.endpoints.policy_connection_string(&self.hub, policy)
    }

    /// The `iothubowner` connection string.
    pub fn service_connection_string(&self) -> String {
        self.policy_connection_string("iothubowner")
            .unwrap_or_default()
    }

    /// The Event Hub-compatible connection string (`iothubowner`), for Event Hubs clients
    /// such as `azure-eventhub` or `iot_service::events`: `Endpoint=sb://…/;…;EntityPath=…`.
    pub fn event_hub_connection_string(&self) -> String {
        self.endpoints
            .event_hub_connection_string(&self.hub, "iothubowner")
            .unwrap_or_default()
    }

    /// The Event Hub-compatible name (the `EntityPath`): the hub name.
    pub fn event_hub_name(&self) -> &str {
        self.hub.event_hub_name()
    }

    /// The ID scope of the emulator's Device Provisioning Service.
    pub fn id_scope(&self) -> &str {
        self.hub.dps.id_scope()
    }

    /// Where devices register with the emulator's DPS: `host[:port]` of the MQTT listener
    /// (the same listener serves the hub; the CONNECT user name tells them apart).
    pub fn provisioning_endpoint(&self) -> String {
        self.endpoints.provisioning_endpoint(&self.hub)
    }

    /// The DPS enrollment service connection string (`provisioningserviceowner`), on the
    /// HTTPS port.
    pub fn provisioning_service_connection_string(&self) -> String {
        self.policy_connection_string("provisioningserviceowner")
            .unwrap_or_default()
    }

    /// The connection string of a registered device (MQTT over TLS): with its primary key,
    /// or `x509=true` for an X.509 device (`selfSigned`, `certificateAuthority`).
    pub fn device_connection_string(&self, device_id: &str) -> Option<String> {
        self.endpoints
            .identity_connection_string(&self.hub, device_id, None)
    }

    /// The connection string of a registered module.
    pub fn module_connection_string(&self, device_id: &str, module_id: &str) -> Option<String> {
        self.endpoints
            .identity_connection_string(&self.hub, device_id, Some(module_id))
    }

    /// Stops listening, closes connections, waits for the tasks, commits what is pending
    /// to `--state` and closes it.
    ///
    /// # Cancel safety
    /// Not cancel-safe in the sense of resuming: once the listeners are told to stop they
    /// stay stopped; dropping the future still commits and closes the state (see `Drop`).
    ///
    /// # Errors
    /// The state could not be written.
    pub async fn shutdown(mut self) -> Result<(), EmulatorError> {
        let _ = self.shutdown.send(true);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        let r = self.hub.flush().map_err(EmulatorError::Io);
        self.hub.close_store();
        r
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for t in &self.tasks {
            t.abort();
        }
        let _ = self.hub.flush();
        self.hub.close_store();
    }
}
