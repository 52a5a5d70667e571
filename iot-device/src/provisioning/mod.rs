//! Device provisioning: register with the Device Provisioning Service (DPS), learn the hub
//! and device id assigned to this device, and connect a [`DeviceClient`] there in one call.
//!
//! ```no_run
//! use iot_device::provisioning::ProvisioningClient;
//! use iot_device::{DeviceClientOptions, Secret};
//!
//! # async fn run() -> iot_device::Result<()> {
//! // A device of a symmetric-key enrollment group derives its key from the group's.
//! let group_key = Secret::new(std::env::var("DPS_GROUP_KEY").unwrap_or_default());
//! let registration = ProvisioningClient::with_group_key("0ne00000A1B", "sensor-17", &group_key)?
//!     .options(DeviceClientOptions::new())
//!     .register()
//!     .await?;
//! println!("assigned to {} as {}", registration.assigned_hub(), registration.device_id());
//! let device = registration.connect().await?;
//! # drop(device); Ok(()) }
//! ```
//!
//! The emulator is a DPS too: its ID scope and endpoint are printed at start-up
//! (`IOTHUB_DPS_ID_SCOPE`, `IOTHUB_DPS_ENDPOINT`); point [`ProvisioningClient::endpoint`]
//! there and trust its CA in the options.

mod mqtt;

use crate::client::split_host_port;
use crate::{DeviceClient, DeviceClientOptions, Error, ErrorKind, Result};
use iot_common::provisioning::{ProvisioningError, RegistrationState};
use iot_common::{DeviceConnectionString, Secret};
use serde_json::Value;
use std::fmt;

pub use iot_common::provisioning::{
    FlowOptions as ProvisioningTimeouts, Substatus, derive_device_key,
};

/// The global device endpoint of the Device Provisioning Service.
pub const GLOBAL_ENDPOINT: &str = "global.azure-devices-provisioning.net";

/// Registers one device with DPS. Cheap to clone; each [`register`](Self::register) is one
/// registration over its own short-lived connection.
#[derive(Clone)]
pub struct ProvisioningClient {
    endpoint: String,
    id_scope: String,
    registration_id: String,
    /// `None`: X.509, with the client certificate of the options.
    key: Option<Secret>,
    payload: Option<Value>,
    options: DeviceClientOptions,
    timeouts: ProvisioningTimeouts,
}

impl fmt::Debug for ProvisioningClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProvisioningClient")
            .field("endpoint", &self.endpoint)
            .field("id_scope", &self.id_scope)
            .field("registration_id", &self.registration_id)
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

impl ProvisioningClient {
    /// A device with an individual enrollment and its own symmetric key.
    ///
    /// ```
    /// use iot_device::{Secret, provisioning::ProvisioningClient};
    /// let client = ProvisioningClient::with_symmetric_key(
    ///     "0ne00000A1B",
    ///     "sensor-17",
    ///     Secret::new("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="),
    /// );
    /// assert!(!format!("{client:?}").contains("AAEC"), "keys never show");
    /// ```
    pub fn with_symmetric_key(
        id_scope: impl Into<String>,
        registration_id: impl Into<String>,
        key: Secret,
    ) -> Self {
        Self {
            endpoint: GLOBAL_ENDPOINT.to_owned(),
            id_scope: id_scope.into(),
            registration_id: registration_id.into(),
            key: Some(key),
            payload: None,
            options: DeviceClientOptions::default(),
            timeouts: ProvisioningTimeouts::default(),
        }
    }

    /// A device of a symmetric-key enrollment group: its key is derived from the group key
    /// and the registration id ([`derive_device_key`]).
    ///
    /// ```
    /// use iot_device::{Secret, provisioning::ProvisioningClient};
    /// let group_key = Secret::new("Z3JvdXAta2V5LTAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OQ==");
    /// let client = ProvisioningClient::with_group_key("0ne00000A1B", "dev-sym-1", &group_key)?;
    /// # Ok::<(), iot_device::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Configuration`] when the group key is not base64.
    pub fn with_group_key(
        id_scope: impl Into<String>,
        registration_id: impl Into<String>,
        group_key: &Secret,
    ) -> Result<Self> {
        let registration_id = registration_id.into();
        let key = derive_device_key(group_key, &registration_id).map_err(|e| {
            Error::new(
                ErrorKind::Configuration,
                "the enrollment group key is not base64",
            )
            .with_source(e)
        })?;
        Ok(Self::with_symmetric_key(id_scope, registration_id, key))
    }

    /// A device attested by its X.509 certificate: the one set with
    /// [`DeviceClientOptions::client_certificate_pem`] (or `_files`) in
    /// [`options`](Self::options). The registration id is the certificate's subject CN, as
    /// DPS requires.
    ///
    /// ```no_run
    /// use iot_device::{DeviceClientOptions, provisioning::ProvisioningClient};
    /// # fn run() -> iot_device::Result<()> {
    /// let options = DeviceClientOptions::new().client_certificate_files("dev-cert.pem", "dev-key.pem")?;
    /// let client = ProvisioningClient::with_x509("0ne00000A1B", options)?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Configuration`] when the options hold no client certificate or its subject
    /// has no common name.
    pub fn with_x509(id_scope: impl Into<String>, options: DeviceClientOptions) -> Result<Self> {
        let registration_id = options
            .identity
            .as_ref()
            .and_then(|i| i.common_name())
            .map(str::to_owned)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Configuration,
                    "X.509 provisioning needs a client certificate whose subject has a common name (the registration id). Hint: DeviceClientOptions::client_certificate_files",
                )
            })?;
        Ok(Self {
            endpoint: GLOBAL_ENDPOINT.to_owned(),
            id_scope: id_scope.into(),
            registration_id,
            key: None,
            payload: None,
            options,
            timeouts: ProvisioningTimeouts::default(),
        })
    }

    /// The DPS endpoint, `host[:port]` (default [`GLOBAL_ENDPOINT`], port 8883).
    ///
    /// ```
    /// # use iot_device::{Secret, provisioning::ProvisioningClient};
    /// // The emulator serves DPS on its MQTT port (it prints IOTHUB_DPS_ENDPOINT).
    /// let client = ProvisioningClient::with_symmetric_key("0ne00000E01", "dev-1", Secret::new("a2V5"))
    ///     .endpoint("localhost:8883");
    /// ```
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = endpoint.into();
        self
    }

    /// TLS trust, product info and transport, used for the registration and then by the
    /// [`DeviceClient`] that [`Registration::connect`] opens.
    ///
    /// ```no_run
    /// # use iot_device::{DeviceClientOptions, Secret, provisioning::ProvisioningClient};
    /// # fn run() -> iot_device::Result<()> {
    /// let client = ProvisioningClient::with_symmetric_key("0ne00000E01", "dev-1", Secret::new("a2V5"))
    ///     .options(DeviceClientOptions::new().trust_ca_file("ca.pem")?);
    /// # Ok(()) }
    /// ```
    pub fn options(mut self, options: DeviceClientOptions) -> Self {
        self.options = options;
        self
    }

    /// How long to wait for each answer and for the whole registration (default 30 s and
    /// 5 min), and how `retry-after` is honoured.
    ///
    /// ```
    /// # use iot_device::{Secret, provisioning::{ProvisioningClient, ProvisioningTimeouts}};
    /// use std::time::Duration;
    /// let client = ProvisioningClient::with_symmetric_key("0ne00000E01", "dev-1", Secret::new("a2V5"))
    ///     .timeouts(ProvisioningTimeouts { total_timeout: Duration::from_secs(60), ..Default::default() });
    /// ```
    pub fn timeouts(mut self, timeouts: ProvisioningTimeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Custom data sent with the registration (read by a custom allocation policy).
    ///
    /// ```
    /// # use iot_device::{Secret, provisioning::ProvisioningClient};
    /// let client = ProvisioningClient::with_symmetric_key("0ne00000E01", "dev-1", Secret::new("a2V5"))
    ///     .payload(serde_json::json!({ "modelId": "dtmi:contoso:sensor;1" }));
    /// ```
    pub fn payload(mut self, payload: Value) -> Self {
        self.payload = Some(payload);
        self
    }

    /// Registers: connects to DPS over MQTT, sends the registration, polls while DPS is
    /// assigning (honouring its `retry-after`), and returns the assignment.
    ///
    /// ```no_run
    /// # use iot_device::provisioning::ProvisioningClient;
    /// # async fn run(client: ProvisioningClient) -> iot_device::Result<()> {
    /// let registration = client.register().await?;
    /// assert!(!registration.device_id().is_empty());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Unauthorized`] when DPS refuses the key (wrong key, wrong derived key,
    /// unknown registration or ID scope); [`ErrorKind::Provisioning`] when the registration
    /// failed or the enrollment is disabled; [`ErrorKind::Hub`] with the status for other
    /// refusals; [`ErrorKind::Timeout`] past the timeouts; [`ErrorKind::Connection`] when DPS
    /// cannot be reached; [`ErrorKind::InvalidInput`] for an invalid registration id.
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping the future closes the registration's connection and leaves
    /// nothing behind. DPS may still finish an assignment it had started; registering again
    /// returns it.
    pub async fn register(&self) -> Result<Registration> {
        let state = mqtt::register(self).await?;
        let (Some(assigned_hub), Some(device_id)) =
            (state.assigned_hub.clone(), state.device_id.clone())
        else {
            return Err(Error::new(
                ErrorKind::Serialization,
                "the provisioning service assigned no hub",
            ));
        };
        // The emulator serves DPS and the hub on the same ports: when the assigned hub is the
        // host registered with, dial the same port.
        let (dps_host, dps_port) = split_host_port(&self.endpoint, 8883);
        let gateway = (assigned_hub == dps_host && dps_port != 8883)
            .then(|| format!("{dps_host}:{dps_port}"));
        Ok(Registration {
            state,
            assigned_hub,
            device_id,
            key: self.key.clone(),
            gateway,
            options: self.options.clone(),
        })
    }
}

/// Where DPS assigned the device, and the credentials to connect there.
#[derive(Clone)]
pub struct Registration {
    state: RegistrationState,
    assigned_hub: String,
    device_id: String,
    key: Option<Secret>,
    gateway: Option<String>,
    options: DeviceClientOptions,
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("assigned_hub", &self.assigned_hub)
            .field("device_id", &self.device_id)
            .field("substatus", &self.state.substatus)
            .field("gateway", &self.gateway)
            .finish_non_exhaustive()
    }
}

impl Registration {
    /// The host name of the assigned hub.
    ///
    /// ```no_run
    /// # async fn run(client: iot_device::provisioning::ProvisioningClient) -> iot_device::Result<()> {
    /// let r = client.register().await?;
    /// println!("{} on {} ({:?}), payload {:?}", r.device_id(), r.assigned_hub(), r.substatus(), r.payload());
    /// println!("registered at {:?}", r.state().created_date_time_utc);
    /// # Ok(()) }
    /// ```
    pub fn assigned_hub(&self) -> &str {
        &self.assigned_hub
    }

    /// The device id in the assigned hub.
    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    /// How this assignment relates to earlier ones.
    pub fn substatus(&self) -> Option<Substatus> {
        self.state.substatus
    }

    /// Data returned by a custom allocation policy.
    pub fn payload(&self) -> Option<&Value> {
        self.state.payload.as_ref()
    }

    /// The registration state as DPS returned it.
    pub fn state(&self) -> &RegistrationState {
        &self.state
    }

    /// The device connection string for the assigned hub, with the key that registered.
    ///
    /// ```no_run
    /// # async fn run(r: iot_device::provisioning::Registration) -> iot_device::Result<()> {
    /// // Keep it to connect later without registering again.
    /// let cs = r.connection_string();
    /// let device = iot_device::DeviceClient::connect(cs, iot_device::DeviceClientOptions::new()).await?;
    /// # Ok(()) }
    /// ```
    pub fn connection_string(&self) -> DeviceConnectionString {
        let mut cs = DeviceConnectionString::with_key(
            self.assigned_hub.clone(),
            self.device_id.clone(),
            self.key.clone().unwrap_or_else(|| Secret::new("")),
        );
        if self.key.is_none() {
            cs.credential = iot_common::DeviceCredential::X509;
        }
        match &self.gateway {
            Some(g) => cs.gateway(g.clone()),
            None => cs,
        }
    }

    /// Connects a [`DeviceClient`] to the assigned hub with the registration's options.
    ///
    /// ```no_run
    /// # async fn run(registration: iot_device::provisioning::Registration) -> iot_device::Result<()> {
    /// let device = registration.connect().await?;
    /// device.update_reported(&serde_json::json!({ "provisioned": true })).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`DeviceClient::connect`].
    ///
    /// # Cancel safety
    /// As [`DeviceClient::connect`].
    pub async fn connect(&self) -> Result<DeviceClient> {
        DeviceClient::connect(self.connection_string(), self.options.clone()).await
    }
}

/// The device client's error for a registration that went wrong.
pub(crate) fn into_error(e: ProvisioningError) -> Error {
    {
        let message = e.to_string();
        let err = match &e {
            ProvisioningError::InvalidRegistrationId { .. } => {
                Error::new(ErrorKind::InvalidInput, message)
            }
            ProvisioningError::Key(_) => Error::new(ErrorKind::Configuration, message),
            ProvisioningError::Refused { status: 401, .. } => Error::new(
                ErrorKind::Unauthorized,
                format!(
                    "{message}. Hint: check the ID scope, the registration id and the key (for a group enrollment, the key derived from the group key)"
                ),
            )
            .with_status(401),
            ProvisioningError::Refused { status, .. } => Error::hub(*status, message),
            ProvisioningError::Failed { .. } | ProvisioningError::Disabled => {
                Error::new(ErrorKind::Provisioning, message)
            }
            ProvisioningError::Timeout(_) => Error::new(ErrorKind::Timeout, message),
            ProvisioningError::Transport(_) => Error::new(ErrorKind::Connection, message),
            _ => Error::new(ErrorKind::Serialization, message),
        };
        err.with_source(e)
    }
}
