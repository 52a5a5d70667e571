//! `DeviceClient`: a cheap `Clone` handle over the driver task.

use crate::driver::{self, Credentials};
use crate::message::{C2dMessages, Message};
use crate::methods::{self, MethodError, MethodHandler, MethodRequests};
use crate::outbox::Outbox;
use crate::shared::{Shared, hub_error, lock, sub};
use crate::status::{ConnectionStatus, StatusChanges};
use crate::twin::DesiredUpdates;
use crate::{DesiredUpdate, DeviceClientOptions, Error, ErrorKind, Result, Transport};
use bytes::Bytes;
use iot_common::twin::{self as twin_rules, TwinSection};
use iot_common::{DeviceConnectionString, DeviceCredential, TwinProperties, topic};
use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use tokio::sync::{mpsc, oneshot};

/// Largest telemetry body the hub accepts.
pub const MAX_TELEMETRY_BYTES: usize = 256 * 1024;

struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.request_close();
    }
}

/// An IoT Hub device (or module) client over MQTT.
///
/// Cheap to clone: every clone talks to the same connection, served by one background task.
/// The connection closes when [`DeviceClient::close`] is called or the last clone is dropped.
/// Handlers that need the client should hold a [`WeakDeviceClient`], or the client can never
/// be dropped.
#[derive(Clone)]
pub struct DeviceClient {
    inner: Arc<Handle>,
}

/// A handle that does not keep the connection open; see [`DeviceClient::downgrade`].
#[derive(Clone)]
pub struct WeakDeviceClient {
    inner: Weak<Handle>,
}

impl WeakDeviceClient {
    /// The client, if it is still open.
    pub fn upgrade(&self) -> Option<DeviceClient> {
        self.inner.upgrade().map(|inner| DeviceClient { inner })
    }
}

impl std::fmt::Debug for WeakDeviceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WeakDeviceClient")
    }
}

impl std::fmt::Debug for DeviceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceClient")
            .field("host_name", &self.shared().host_name)
            .field("device_id", &self.shared().device_id)
            .field("module_id", &self.shared().module_id)
            .field("status", &self.status())
            .finish()
    }
}

impl Shared {
    pub(crate) fn request_close(&self) {
        if !self.closing.swap(true, Ordering::AcqRel) {
            self.outbox.disconnect();
            self.close_notify.notify_waiters();
        }
    }
}

fn split_host_port(endpoint: &str, default: u16) -> (String, u16) {
    match endpoint.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => (
            h.trim_matches(['[', ']']).to_owned(),
            p.parse().unwrap_or(default),
        ),
        _ => (endpoint.to_owned(), default),
    }
}

impl DeviceClient {
    /// Connects with a device or module connection string. Resolves after the hub accepted
    /// the connection (CONNACK) and the twin response subscription is in place.
    ///
    /// # Errors
    /// [`ErrorKind::Configuration`] for a malformed connection string (the message names the
    /// field, never the key), [`ErrorKind::Unauthorized`] when the hub refuses the
    /// credentials, [`ErrorKind::Connection`] when the hub cannot be reached.
    pub async fn from_connection_string(
        connection_string: &str,
        options: DeviceClientOptions,
    ) -> Result<Self> {
        let cs: DeviceConnectionString = connection_string.parse()?;
        Self::connect(cs, options).await
    }

    /// Connects with a parsed connection string; see [`DeviceClient::from_connection_string`].
    ///
    /// # Errors
    /// As [`DeviceClient::from_connection_string`].
    pub async fn connect(cs: DeviceConnectionString, options: DeviceClientOptions) -> Result<Self> {
        let credentials = match &cs.credential {
            DeviceCredential::SharedAccessKey { key, key_name } => Credentials::Key {
                key: key.clone(),
                key_name: key_name.clone(),
            },
            DeviceCredential::SharedAccessSignature(t) => Credentials::Token(t.clone()),
            _ => {
                return Err(Error::new(
                    ErrorKind::Configuration,
                    "X.509 authentication is not supported by this client yet",
                ));
            }
        };
        let client_id = iot_common::mqtt::client_id(&cs.device_id, cs.module_id.as_deref());
        let (mut mqtt, keep_alive) = match options.transport {
            #[cfg(feature = "websocket")]
            Transport::MqttWebSocket => {
                let (host, port) = split_host_port(cs.endpoint_host(), 443);
                let url = format!("wss://{host}:{port}/$iothub/websocket");
                let mut o = MqttOptions::new(client_id.clone(), url, port);
                o.set_transport(rumqttc::Transport::wss_with_config(
                    rumqttc::TlsConfiguration::Rustls(options.tls_config()?),
                ));
                (o, options.keep_alive)
            }
            Transport::InsecureTcp => {
                let (host, port) = split_host_port(cs.endpoint_host(), 1883);
                (
                    MqttOptions::new(client_id.clone(), host, port),
                    options.keep_alive,
                )
            }
            _ => {
                let (host, port) = split_host_port(cs.endpoint_host(), 8883);
                let mut o = MqttOptions::new(client_id.clone(), host, port);
                o.set_transport(rumqttc::Transport::tls_with_config(
                    rumqttc::TlsConfiguration::Rustls(options.tls_config()?),
                ));
                (o, options.keep_alive)
            }
        };
        let keep_alive = match credentials {
            Credentials::Key { .. } => driver::effective_keep_alive(keep_alive, options.sas_ttl),
            Credentials::Token(_) => keep_alive,
        };
        mqtt.set_keep_alive(keep_alive)
            .set_clean_session(false)
            .set_max_packet_size(1024 * 1024, MAX_TELEMETRY_BYTES + 16 * 1024)
            .set_inflight(64)
            .set_request_channel_capacity(64);
        let username = iot_common::mqtt::username(
            &cs.host_name,
            &cs.device_id,
            cs.module_id.as_deref(),
            iot_common::mqtt::API_VERSION,
            &options.client_type(),
            options.model_id.as_deref(),
        );
        mqtt.set_credentials(username, "");
        let (client, mut eventloop) = AsyncClient::new(mqtt, 64);
        let shared = Arc::new(Shared::new(
            cs.host_name.clone(),
            cs.device_id.clone(),
            cs.module_id.clone(),
            options,
            Outbox::new(client),
        ));
        let (password, renew_at) = credentials.password(&shared)?;
        driver::set_password(&mut eventloop, &password);
        let (ready_tx, ready_rx) = oneshot::channel();
        tokio::spawn(driver::run(
            shared.clone(),
            eventloop,
            credentials,
            renew_at,
            ready_tx,
        ));
        let client = Self {
            inner: Arc::new(Handle { shared }),
        };
        ready_rx.await.map_err(|_| Error::closed())??;
        client.shared().subscribe(sub::TWIN).await?;
        Ok(client)
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// The device id.
    pub fn device_id(&self) -> &str {
        &self.shared().device_id
    }

    /// The module id, for module clients.
    pub fn module_id(&self) -> Option<&str> {
        self.shared().module_id.as_deref()
    }

    /// The current connection status.
    pub fn status(&self) -> ConnectionStatus {
        *self.shared().status.borrow()
    }

    /// Counters of connects, token renewals and connection losses.
    pub fn stats(&self) -> crate::ClientStats {
        let c = &self.shared().stats;
        crate::ClientStats {
            connects: c.connects.load(Ordering::Relaxed),
            token_renewals: c.token_renewals.load(Ordering::Relaxed),
            connection_losses: c.connection_losses.load(Ordering::Relaxed),
        }
    }

    /// Status changes, starting with the current status.
    pub fn status_changes(&self) -> StatusChanges {
        StatusChanges::new(self.shared().status.subscribe())
    }

    /// A handle that does not keep the client alive (for use inside handlers).
    pub fn downgrade(&self) -> WeakDeviceClient {
        WeakDeviceClient {
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// Sends a telemetry message and waits for the hub's acknowledgement (PUBACK).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a body over 256 KB; [`ErrorKind::Timeout`] or
    /// [`ErrorKind::Connection`] (both retryable) when no acknowledgement came in time.
    pub async fn send_telemetry(&self, message: Message) -> Result<()> {
        if message.body.len() > MAX_TELEMETRY_BYTES {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "telemetry body is {} bytes, over the 256 KB limit",
                    message.body.len()
                ),
            ));
        }
        let s = self.shared();
        let topic =
            topic::telemetry_topic(&s.device_id, s.module_id.as_deref(), &message.properties);
        let rx = s
            .outbox
            .publish(topic, QoS::AtLeastOnce, message.body, true)
            .await?
            .ok_or_else(Error::closed)?;
        match tokio::time::timeout(s.options.operation_timeout, rx).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Error::new(
                ErrorKind::Connection,
                "the session was lost before the hub acknowledged the message",
            )),
            Err(_) => Err(Error::timeout("telemetry acknowledgement")),
        }
    }

    /// Registers a typed handler for `name`: the request payload is deserialized as `Req`
    /// (400 when it does not fit); `Ok(resp)` answers 200 with `resp`; `Err(e)` answers `e`'s
    /// status. A handler that panics answers 500 and the client keeps running. Handlers run
    /// concurrently, never on the MQTT loop.
    ///
    /// ```no_run
    /// # async fn demo(client: iot_device::DeviceClient) -> iot_device::Result<()> {
    /// #[derive(serde::Deserialize)]
    /// struct Reboot { delay: u64 }
    /// client.on_method("rebootDevice", |req: Reboot| async move {
    ///     Ok::<_, iot_device::MethodError>(serde_json::json!({ "rebootingIn": req.delay }))
    /// }).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Timeout`]/[`ErrorKind::Connection`] when the method subscription was not
    /// acknowledged.
    pub async fn on_method<Req, Resp, F, Fut>(
        &self,
        name: impl Into<String>,
        handler: F,
    ) -> Result<()>
    where
        Req: DeserializeOwned + Send + 'static,
        Resp: Serialize + Send + 'static,
        F: Fn(Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<Resp, MethodError>> + Send + 'static,
    {
        self.on_method_raw(name, methods::typed(handler)).await
    }

    /// Registers a handler that sees the raw request (name, `$rid`, JSON bytes).
    ///
    /// # Errors
    /// As [`DeviceClient::on_method`].
    pub async fn on_method_raw(
        &self,
        name: impl Into<String>,
        handler: impl MethodHandler,
    ) -> Result<()> {
        self.shared()
            .handlers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .named
            .insert(name.into(), Arc::new(handler));
        self.shared().ensure(sub::METHODS).await
    }

    /// Registers the handler for methods that have no named handler (by default they are
    /// answered 404).
    ///
    /// # Errors
    /// As [`DeviceClient::on_method`].
    pub async fn on_unknown_method(&self, handler: impl MethodHandler) -> Result<()> {
        self.shared()
            .handlers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .fallback = Some(Arc::new(handler));
        self.shared().ensure(sub::METHODS).await
    }

    /// A stream of method requests that no named handler takes (replaces an earlier stream).
    ///
    /// # Errors
    /// As [`DeviceClient::on_method`].
    pub async fn method_requests(&self) -> Result<MethodRequests> {
        let (tx, rx) = mpsc::channel(64);
        self.shared()
            .handlers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .stream = Some(tx);
        self.shared().ensure(sub::METHODS).await?;
        Ok(MethodRequests { rx })
    }

    /// The twin as the device sees it: desired and reported properties with `$version`.
    ///
    /// # Errors
    /// [`ErrorKind::Hub`] with the status when the hub refuses; timeouts as for telemetry.
    pub async fn get_twin(&self) -> Result<TwinProperties> {
        self.shared().get_twin().await
    }

    /// Patches the reported properties (merge patch: `null` deletes) and returns the new
    /// reported `$version` once the hub answered 204.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a patch that breaks the hub's rules (checked before
    /// sending); [`ErrorKind::Hub`] with the status when the hub refuses it.
    pub async fn update_reported(&self, patch: &impl Serialize) -> Result<u64> {
        let value = serde_json::to_value(patch)?;
        twin_rules::validate_patch(TwinSection::Reported, &value)?;
        if let Some(map) = value.as_object() {
            twin_rules::check_size(TwinSection::Reported, map)?;
        }
        let body = Bytes::from(serde_json::to_vec(&value)?);
        let (status, version, body) = self.shared().twin_request(Some(body)).await?;
        match (status, version) {
            (204 | 200, Some(v)) => Ok(v),
            (204 | 200, None) => Err(Error::new(
                ErrorKind::Hub,
                "the hub's answer carried no $version",
            )),
            _ => Err(hub_error(status, &body)),
        }
    }

    /// A stream of desired-property updates: patches while connected, and after a reconnect
    /// the full desired section if it changed meanwhile. Each `$version` comes once, in order.
    ///
    /// # Errors
    /// As [`DeviceClient::on_method`].
    pub async fn desired_updates(&self) -> Result<DesiredUpdates> {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.shared().desired).subscribers.push(tx);
        let first = self.shared().wanted.load(Ordering::Acquire) & sub::DESIRED == 0;
        self.shared().ensure(sub::DESIRED).await?;
        if first {
            self.shared().resync_desired().await;
        }
        Ok(DesiredUpdates { rx })
    }

    /// Calls `f` for every desired-property update (on a task of its own).
    ///
    /// # Errors
    /// As [`DeviceClient::on_method`].
    pub async fn on_desired_update<F, Fut>(&self, f: F) -> Result<()>
    where
        F: Fn(DesiredUpdate) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut updates = self.desired_updates().await?;
        tokio::spawn(async move {
            while let Some(u) = updates.next().await {
                f(u).await;
            }
        });
        Ok(())
    }

    /// A stream of cloud-to-device messages (for modules: messages routed to their inputs).
    ///
    /// # Errors
    /// As [`DeviceClient::on_method`].
    pub async fn c2d_messages(&self) -> Result<C2dMessages> {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.shared().messages).push(tx);
        self.shared().ensure(sub::MESSAGES).await?;
        Ok(C2dMessages { rx })
    }

    /// Sends DISCONNECT and stops the connection; pending operations fail with
    /// [`ErrorKind::Closed`].
    ///
    /// # Errors
    /// None today; the `Result` leaves room for flush errors.
    pub async fn close(self) -> Result<()> {
        let shared = self.shared().clone();
        shared.request_close();
        let mut status = StatusChanges::new(shared.status.subscribe());
        let _ = tokio::time::timeout(
            shared.options.operation_timeout,
            status.wait_for(|s| matches!(s, ConnectionStatus::Closed { .. })),
        )
        .await;
        Ok(())
    }
}
