//! The control handles of a [`crate::RunningEmulator`]: hub operations ([`HubOps`]) and fault
//! injection ([`Faults`]).
//!
//! Every call that changes what `--state` keeps returns only once the change is committed,
//! as a REST answer would: a `kill -9` right after it returns loses nothing.

use crate::endpoints::Endpoints;
use crate::error::{EmulatorApiError, EmulatorError, HubRefusal};
use crate::hub::TelemetryRecord;
use crate::hub::{C2dMessage, FaultSettings, Hub, Receipt};
use iot_common::registry::{Device, Module};
use iot_common::{ErrorCode, MethodInvocation, MethodInvocationResult, Twin};

/// Hub operations on a running emulator, as the service and devices would cause them.
///
/// The mutating calls are synchronous and block the calling thread until the change is
/// committed to `--state` (at most 30 s; without `--state` they return at once). The commit
/// is made by the store's own thread, so blocking a runtime's thread here cannot stall it.
#[derive(Debug, Clone, Copy)]
pub struct HubOps<'a> {
    hub: &'a Hub,
    endpoints: &'a Endpoints,
}

impl<'a> HubOps<'a> {
    pub(crate) fn new(hub: &'a Hub, endpoints: &'a Endpoints) -> Self {
        Self { hub, endpoints }
    }

    fn hub(&self) -> &'a Hub {
        self.hub
    }

    /// Runs hub operations and returns their result with the sequence number of their own
    /// writes (see [`Receipt`]).
    fn own<T>(&self, f: impl FnOnce(&'a Hub) -> T) -> (T, u64) {
        Receipt::sync(|| f(self.hub))
    }

    /// Waits until the writes up to `seq` (a call's own, from [`Self::own`]) are committed.
    fn committed(&self, seq: u64) -> Result<(), HubRefusal> {
        self.hub().wait_durable_blocking(seq).map_err(|e| {
            HubRefusal::new(
                ErrorCode::ServiceUnavailable,
                format!("The change could not be stored yet ({e}); it is retried."),
            )
        })
    }

    /// Registers a device with generated keys (if it does not exist) and returns its
    /// connection string, once the device is committed to `--state`.
    ///
    /// # Errors
    /// An invalid device id, or the state could not be written in time.
    pub fn create_device(&self, device_id: &str) -> Result<String, EmulatorError> {
        let (created, seq) = self.own(|hub| {
            if hub.get_device(device_id).is_err() {
                hub.put_device(device_id, Device::new(device_id, None), None)
                    .map(drop)
            } else {
                // It exists, perhaps not committed yet: wait for the registry's last batch.
                hub.mark_dirty();
                Ok(())
            }
        });
        created.map_err(|e| EmulatorError::Config(e.message))?;
        self.hub().wait_durable_blocking(seq)?;
        self.endpoints
            .identity_connection_string(self.hub, device_id, None)
            .ok_or_else(|| EmulatorError::Config("device has no key".into()))
    }

    /// Registers a module with generated keys (if it does not exist) and returns its
    /// connection string, once the module is committed to `--state`.
    ///
    /// # Errors
    /// Unknown device, an invalid module id, or the state could not be written in time.
    pub fn create_module(&self, device_id: &str, module_id: &str) -> Result<String, EmulatorError> {
        let (created, seq) = self.own(|hub| {
            if hub.get_module(device_id, module_id).is_err() {
                let m = Module::new(device_id, module_id, None);
                hub.put_module(device_id, module_id, m, None).map(drop)
            } else {
                hub.mark_dirty();
                Ok(())
            }
        });
        created.map_err(|e| EmulatorError::Config(e.message))?;
        self.hub().wait_durable_blocking(seq)?;
        self.endpoints
            .identity_connection_string(self.hub, device_id, Some(module_id))
            .ok_or_else(|| EmulatorError::Config("module has no key".into()))
    }

    /// Deletes a device with its modules, twins and pending cloud-to-device messages, as
    /// `DELETE /devices/{id}` would; returns once the deletion is committed.
    ///
    /// # Errors
    /// Unknown device (404001), or the state could not be written in time.
    pub fn delete_device(&self, device_id: &str) -> Result<(), EmulatorApiError> {
        let (deleted, seq) = self.own(|hub| hub.delete_device(device_id, None));
        deleted?;
        Ok(self.committed(seq)?)
    }

    /// Invokes a direct method as the REST API would (same routing, timeouts and errors).
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping the future withdraws the request; a device answer that arrives
    /// later is discarded.
    ///
    /// # Errors
    /// The hub's error: 404001, 404103, 504101, 400004…
    pub async fn invoke_method(
        &self,
        device_id: &str,
        module_id: Option<&str>,
        request: MethodInvocation,
    ) -> Result<MethodInvocationResult, EmulatorApiError> {
        self.hub()
            .invoke_method(device_id, module_id, request)
            .await
            .map_err(EmulatorApiError::from)
    }

    /// Patches (`replace = false`) or replaces the twin's tags and desired properties, as
    /// `PATCH`/`PUT /twins/{id}` would; the device is notified of desired changes. Returns
    /// once the change is committed.
    ///
    /// # Errors
    /// The hub's error (unknown device, invalid patch), or 503 when the state could not be
    /// written in time.
    pub fn update_twin(
        &self,
        device_id: &str,
        module_id: Option<&str>,
        body: &serde_json::Value,
        replace: bool,
    ) -> Result<Twin, EmulatorApiError> {
        let (twin, seq) =
            self.own(|hub| hub.update_twin(device_id, module_id, body, None, replace));
        let twin = twin?;
        self.committed(seq)?;
        Ok(twin)
    }

    /// The service view of a twin.
    ///
    /// # Errors
    /// Unknown device or module.
    pub fn get_twin(
        &self,
        device_id: &str,
        module_id: Option<&str>,
    ) -> Result<Twin, EmulatorApiError> {
        self.hub()
            .get_twin(device_id, module_id)
            .map_err(EmulatorApiError::from)
    }

    /// Queues a cloud-to-device message; returns once it is committed.
    ///
    /// # Errors
    /// Unknown device, 50 messages already pending, or 503 when the state could not be
    /// written in time.
    pub fn send_c2d(
        &self,
        device_id: &str,
        body: impl Into<bytes::Bytes>,
        mut properties: iot_common::MessageProperties,
    ) -> Result<(), EmulatorApiError> {
        properties
            .to
            .get_or_insert_with(|| format!("/devices/{device_id}/messages/devicebound"));
        let seq = self.hub().enqueue_c2d(
            device_id,
            C2dMessage {
                properties,
                body: body.into(),
                id: 0,
                enqueued_ms: 0,
            },
        )?;
        Ok(self.committed(seq)?)
    }

    /// Moves the hub's clock forward by `by` (it never goes back) and expires, at once, the
    /// cloud-to-device messages whose lifetime has passed by it, with `Expired` feedback
    /// where asked for. Returns how many expired. Tokens are still checked against the
    /// system clock. For tests of expiry, which would otherwise wait an hour.
    ///
    /// # Errors
    /// 503 when the state could not be written in time.
    pub fn advance_clock(&self, by: std::time::Duration) -> Result<usize, EmulatorApiError> {
        let (n, seq) = self.own(|hub| {
            hub.clock.advance(by);
            hub.expire_c2d()
        });
        self.committed(seq)?;
        Ok(n)
    }

    /// Feedback records waiting for the service to take them from
    /// `/messages/serviceBound/feedback` (not counting a batch sent but not yet settled).
    pub fn pending_feedback(&self) -> usize {
        self.hub().feedback.waiting()
    }

    /// Telemetry received so far (optionally from one device), oldest first.
    pub fn telemetry(&self, device_id: Option<&str>) -> Vec<TelemetryRecord> {
        self.hub().telemetry(device_id)
    }

    /// Drops the connection of a device or module (fault injection); `true` if it had one.
    pub fn disconnect(&self, device_id: &str, module_id: Option<&str>) -> bool {
        self.hub().disconnect(device_id, module_id)
    }

    /// Drops every AMQP connection (service clients) without a close frame, as a network
    /// failure would (fault injection).
    pub fn disconnect_amqp(&self) {
        self.hub().drop_amqp.notify_waiters();
    }

    /// Drops every device connection; returns how many.
    pub fn disconnect_all(&self) -> usize {
        self.hub().disconnect_all()
    }

    /// How many device and module connections are live.
    pub fn connected_count(&self) -> usize {
        self.hub().connected_count()
    }

    /// Waits (at most 30 s) until every change is committed to `--state`. The calls of this
    /// handle and every acknowledged REST or MQTT change are committed already; this is for
    /// changes still on their way (a device's publish the hub has not answered yet).
    ///
    /// # Errors
    /// The state could not be written in time (the changes stay pending and are retried).
    pub fn flush(&self) -> Result<(), EmulatorError> {
        self.hub().flush().map_err(EmulatorError::Io)
    }
}

/// Fault injection on a running emulator.
#[derive(Debug, Clone, Copy)]
pub struct Faults<'a> {
    hub: &'a Hub,
}

impl<'a> Faults<'a> {
    pub(crate) fn new(hub: &'a Hub) -> Self {
        Self { hub }
    }

    /// Arms faults (fields left `None` are unchanged).
    pub fn set(&self, settings: &FaultSettings) {
        self.hub.faults.apply(settings);
    }

    /// How many injected faults have fired so far.
    pub fn fired(&self) -> u64 {
        self.hub.faults.fired()
    }
}
