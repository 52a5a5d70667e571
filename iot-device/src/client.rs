//! `DeviceClient`: a cheap `Clone` handle over the driver task.

use crate::driver::{self, Credentials, Pump};
use crate::inner::{self, Handler, Inner};
use crate::message::{C2dMessages, Message};
use crate::methods::{self, MethodError, MethodHandler, MethodRequests};
use crate::session::{DeviceSession, Limits, sub};
use crate::status::{CloseReason, ConnectionStatus, StatusChanges};
use crate::twin::DesiredUpdates;
use crate::{DesiredUpdate, DeviceClientOptions, Error, ErrorKind, Result, Transport};
use bytes::Bytes;
use iot_common::twin::{self as twin_rules, TwinSection};
use iot_common::{DeviceConnectionString, DeviceCredential, MethodRequest, TwinProperties, topic};
use rumqttc::{AsyncClient, MqttOptions};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use tokio::sync::{mpsc, oneshot};

/// Largest telemetry body the hub accepts.
pub const MAX_TELEMETRY_BYTES: usize = 256 * 1024;

/// What every clone of a [`DeviceClient`] holds; dropping the last one closes the client.
pub(crate) struct Handle {
    shared: Arc<Inner>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        request_close(&self.shared);
    }
}

fn request_close(inner: &Inner) {
    inner.lock().session.close(CloseReason::ClientClosed);
    inner.wake_pump.notify_one();
}

/// An IoT Hub device (or module) client over MQTT.
///
/// Cheap to clone: every clone talks to the same connection, served by one background task.
/// The connection closes when [`DeviceClient::close`] is called or the last clone is dropped.
/// Handlers that need the client get it as an argument ([`DeviceClient::on_method_with_client`]);
/// it is held only while the handler runs, so a closed client is never kept alive.
#[derive(Clone)]
pub struct DeviceClient {
    pub(crate) inner: Arc<Handle>,
}

/// A handle that does not keep the connection open; see [`DeviceClient::downgrade`].
#[derive(Clone)]
pub struct WeakDeviceClient {
    inner: Weak<Handle>,
}

impl WeakDeviceClient {
    /// The client, if it is still open.
    ///
    /// ```no_run
    /// # async fn demo(client: iot_device::DeviceClient) -> iot_device::Result<()> {
    /// let weak = client.downgrade();
    /// if let Some(client) = weak.upgrade() {
    ///     println!("still open: {}", client.device_id());
    /// }
    /// # Ok(()) }
    /// ```
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

pub(crate) fn split_host_port(endpoint: &str, default: u16) -> (String, u16) {
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
    /// ```no_run
    /// use iot_device::{DeviceClient, DeviceClientOptions};
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let cs = std::env::var("IOTHUB_DEVICE_CONNECTION_STRING")?;
    /// let client = DeviceClient::from_connection_string(&cs, DeviceClientOptions::new()).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Configuration`] for a malformed connection string (the message names the
    /// field, never the key), [`ErrorKind::Unauthorized`] when the hub refuses the
    /// credentials (wrong key, disabled device), [`ErrorKind::Certificate`] when the hub's
    /// certificate is not trusted, [`ErrorKind::Connection`] when the hub cannot be reached.
    /// A connection error's `Display` names the device, the endpoint, the root cause and a
    /// hint ([`Error::hint`]).
    ///
    /// With [`DeviceClientOptions::retry_initial_connect`] the call keeps retrying transient
    /// failures (each logged at `warn`), bounded only by
    /// [`DeviceClientOptions::max_reconnect_attempts`]; refused credentials and untrusted
    /// certificates still end it at once with their typed error.
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping the future drops the half-built client, whose background task
    /// then closes the connection attempt.
    pub async fn from_connection_string(
        connection_string: &str,
        options: DeviceClientOptions,
    ) -> Result<Self> {
        let cs: DeviceConnectionString = connection_string.parse()?;
        Self::connect(cs, options).await
    }

    /// Connects with a parsed connection string; see [`DeviceClient::from_connection_string`].
    ///
    /// ```no_run
    /// use iot_device::{DeviceClient, DeviceClientOptions, DeviceConnectionString};
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let cs: DeviceConnectionString = std::env::var("IOTHUB_DEVICE_CONNECTION_STRING")?.parse()?;
    /// println!("connecting as {}", cs.device_id);
    /// let client = DeviceClient::connect(cs, DeviceClientOptions::new()).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`DeviceClient::from_connection_string`].
    ///
    /// # Cancel safety
    /// As [`DeviceClient::from_connection_string`].
    pub async fn connect(cs: DeviceConnectionString, options: DeviceClientOptions) -> Result<Self> {
        let credentials = match &cs.credential {
            DeviceCredential::SharedAccessKey { key, key_name } => Credentials::Key {
                key: key.clone(),
                key_name: key_name.clone(),
            },
            DeviceCredential::SharedAccessSignature(t) => Credentials::Token(t.clone()),
            DeviceCredential::X509 if options.has_client_certificate() => {
                options.check_client_certificate()?;
                Credentials::X509
            }
            DeviceCredential::X509 => {
                return Err(Error::new(
                    ErrorKind::Configuration,
                    "the connection string says x509=true but no client certificate is set. Hint: DeviceClientOptions::client_certificate_files (or client_certificate_pem)",
                ));
            }
            _ => {
                return Err(Error::new(
                    ErrorKind::Configuration,
                    "this kind of credential is not supported",
                ));
            }
        };
        let client_id = iot_common::mqtt::client_id(&cs.device_id, cs.module_id.as_deref());
        let (mut mqtt, keep_alive, endpoint) = match options.transport {
            #[cfg(feature = "websocket")]
            Transport::MqttWebSocket => {
                let (host, port) = split_host_port(cs.endpoint_host(), 443);
                let url = format!("wss://{host}:{port}/$iothub/websocket");
                let mut o = MqttOptions::new(client_id.clone(), url, port);
                o.set_transport(rumqttc::Transport::wss_with_config(
                    rumqttc::TlsConfiguration::Rustls(options.tls_config()?),
                ));
                (o, options.keep_alive, format!("{host}:{port}"))
            }
            Transport::InsecureTcp => {
                let (host, port) = split_host_port(cs.endpoint_host(), 1883);
                let endpoint = format!("{host}:{port}");
                (
                    MqttOptions::new(client_id.clone(), host, port),
                    options.keep_alive,
                    endpoint,
                )
            }
            _ => {
                let (host, port) = split_host_port(cs.endpoint_host(), 8883);
                let endpoint = format!("{host}:{port}");
                let mut o = MqttOptions::new(client_id.clone(), host, port);
                o.set_transport(rumqttc::Transport::tls_with_config(
                    rumqttc::TlsConfiguration::Rustls(options.tls_config()?),
                ));
                (o, options.keep_alive, endpoint)
            }
        };
        let keep_alive = match credentials {
            Credentials::Key { .. } => driver::effective_keep_alive(keep_alive, options.sas_ttl),
            Credentials::Token(_) | Credentials::X509 => keep_alive,
        };
        mqtt.set_keep_alive(keep_alive)
            .set_clean_session(false)
            .set_max_packet_size(1024 * 1024, MAX_TELEMETRY_BYTES + 16 * 1024)
            // rumqttc keeps a slot per inflight packet id in every client (a 64-slot table
            // was about 4 KB); 16 unacknowledged publishes keep a device's link busy.
            .set_inflight(16)
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
        // The session holds the queue; rumqttc's channel only buffers what is being handed
        // over, and manual acknowledgements let C2D wait for the application.
        mqtt.set_manual_acks(true);
        let (client, mut eventloop) = AsyncClient::new(mqtt, REQUEST_CHANNEL);
        // rumqttc reserves room for 100 events up front (about 10 KB per client); a device
        // sees a few at a time, and the deque grows if a burst needs more.
        eventloop.state.events.shrink_to(8);
        let renewable = matches!(credentials, Credentials::Key { .. });
        let session = DeviceSession::new(
            Limits::from_options(&options, renewable),
            cs.device_id.clone(),
            cs.module_id.clone(),
        );
        let shared = Arc::new(Inner::new(
            cs.host_name.clone(),
            endpoint,
            cs.device_id.clone(),
            cs.module_id.clone(),
            options,
            session,
        ));
        let (password, ttl) = credentials.password(&shared)?;
        driver::set_password(&mut eventloop, &password);
        if let Some(ttl) = ttl {
            let now = tokio::time::Instant::now().into_std();
            shared.lock().session.on_token(now, ttl, keep_alive);
        }
        let (ready_tx, ready_rx) = oneshot::channel();
        let device = Self {
            inner: Arc::new(Handle { shared }),
        };
        let pump = Pump {
            inner: device.shared().clone(),
            handle: Arc::downgrade(&device.inner),
            client,
            credentials,
            ready: Some(ready_tx),
            keep_alive,
            connected: false,
            closing: false,
        };
        tokio::spawn(driver::run(pump, eventloop));
        ready_rx.await.map_err(|_| Error::closed())??;
        Ok(device)
    }

    fn shared(&self) -> &Arc<Inner> {
        &self.inner.shared
    }

    /// The device id.
    ///
    /// ```no_run
    /// # async fn demo(client: iot_device::DeviceClient) -> iot_device::Result<()> {
    /// println!("connected as {}", client.device_id());
    /// # Ok(()) }
    /// ```
    pub fn device_id(&self) -> &str {
        &self.shared().device_id
    }

    /// The module id, for module clients.
    ///
    /// ```no_run
    /// # async fn demo(client: iot_device::DeviceClient) -> iot_device::Result<()> {
    /// if let Some(module) = client.module_id() {
    ///     println!("module {module} of {}", client.device_id());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn module_id(&self) -> Option<&str> {
        self.shared().module_id.as_deref()
    }

    /// The current connection status.
    ///
    /// ```no_run
    /// # async fn demo(client: iot_device::DeviceClient) -> iot_device::Result<()> {
    /// if client.status() == iot_device::ConnectionStatus::Connected {
    ///     println!("online");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn status(&self) -> ConnectionStatus {
        *self.shared().status.borrow()
    }

    /// Counters of connects, token renewals, connection losses and dropped telemetry.
    ///
    /// ```no_run
    /// # async fn demo(client: iot_device::DeviceClient) -> iot_device::Result<()> {
    /// let stats = client.stats();
    /// println!("{} connects, {} telemetry messages queued", stats.connects, stats.telemetry_queued);
    /// # Ok(()) }
    /// ```
    pub fn stats(&self) -> crate::ClientStats {
        let c = &self.shared().stats;
        let core = self.shared().lock();
        let (telemetry_queued, telemetry_queued_bytes) = core.session.queued();
        crate::ClientStats {
            connects: c.connects.load(Ordering::Relaxed),
            token_renewals: c.token_renewals.load(Ordering::Relaxed),
            connection_losses: c.connection_losses.load(Ordering::Relaxed),
            telemetry_dropped: core.session.dropped(),
            telemetry_queued,
            telemetry_queued_bytes,
            desired_waiting: core.session.desired_backlog().0,
            c2d_waiting: core.session.c2d_backlog(),
        }
    }

    /// Status changes, starting with the current status.
    ///
    /// ```no_run
    /// # async fn demo(client: iot_device::DeviceClient) -> iot_device::Result<()> {
    /// let mut changes = client.status_changes();
    /// while let Some(status) = changes.next().await {
    ///     println!("connection: {status}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn status_changes(&self) -> StatusChanges {
        StatusChanges::new(self.shared().status.subscribe())
    }

    /// A handle that does not keep the client alive. Handlers rarely need one: see
    /// [`DeviceClient::on_method_with_client`].
    ///
    /// ```no_run
    /// # async fn demo(client: iot_device::DeviceClient) -> iot_device::Result<()> {
    /// let weak = client.downgrade();
    /// tokio::spawn(async move {
    ///     // Does not keep the connection open.
    ///     if let Some(client) = weak.upgrade() {
    ///         let _ = client.send_telemetry(iot_device::Message::new("tick")).await;
    ///     }
    /// });
    /// # Ok(()) }
    /// ```
    pub fn downgrade(&self) -> WeakDeviceClient {
        WeakDeviceClient {
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// Sends a telemetry message and waits for the hub's acknowledgement (PUBACK). While
    /// disconnected the message waits in the bounded offline queue
    /// ([`DeviceClientOptions::telemetry_queue`]) and goes out, in order, after the reconnect.
    ///
    /// ```no_run
    /// # async fn demo(client: iot_device::DeviceClient) -> iot_device::Result<()> {
    /// use iot_device::Message;
    /// let message = Message::json(&serde_json::json!({ "temperature": 21.5 }))?
    ///     .property("alert", "false");
    /// client.send_telemetry(message).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping the future withdraws the message if it was not sent yet and
    /// otherwise forgets only this call's acknowledgement; no other call is affected.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a body over 256 KB; [`ErrorKind::QueueFull`] when the
    /// offline queue is full (or, with [`QueueFullPolicy::DropOldest`](crate::QueueFullPolicy),
    /// when this message was dropped for a newer one); [`ErrorKind::Timeout`] or
    /// [`ErrorKind::Connection`] (both retryable) when no acknowledgement came within the
    /// operation timeout, queue time included.
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
        let body = message.body;
        s.call("telemetry acknowledgement", |session| {
            session.submit_telemetry(topic, body)
        })
        .await
        .map(drop)
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
    /// # Cancel safety
    /// Cancel-safe: the handler is registered at once; dropping the future only stops waiting
    /// for the subscription's acknowledgement (the subscription is then asked again by a
    /// later registration).
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

    /// Registers a typed handler that also gets the client, for handlers that report state or
    /// send telemetry. The client is lent for the duration of each call only, so it does not
    /// keep a closed client alive.
    ///
    /// ```no_run
    /// # async fn demo(client: iot_device::DeviceClient) -> iot_device::Result<()> {
    /// client.on_method_with_client("reboot", |client: iot_device::DeviceClient, _: serde_json::Value| async move {
    ///     let version = client.update_reported(&serde_json::json!({ "rebooting": true })).await?;
    ///     Ok::<_, iot_device::MethodError>(serde_json::json!({ "reportedVersion": version }))
    /// }).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    /// As [`DeviceClient::on_method`].
    ///
    /// # Errors
    /// As [`DeviceClient::on_method`].
    pub async fn on_method_with_client<Req, Resp, F, Fut>(
        &self,
        name: impl Into<String>,
        handler: F,
    ) -> Result<()>
    where
        Req: DeserializeOwned + Send + 'static,
        Resp: Serialize + Send + 'static,
        F: Fn(DeviceClient, Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<Resp, MethodError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let call = move |client: DeviceClient, request: MethodRequest| {
            let handler = handler.clone();
            let typed = methods::typed(move |req: Req| handler(client.clone(), req));
            typed.call(request)
        };
        self.register(Some(name.into()), Handler::WithClient(Arc::new(call)))
            .await
    }

    async fn register(&self, name: Option<String>, handler: Handler) -> Result<()> {
        {
            let mut h = self
                .shared()
                .handlers
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match name {
                Some(name) => {
                    h.named.insert(name, handler);
                }
                None => h.fallback = Some(handler),
            }
        }
        self.shared().ensure(sub::METHODS).await
    }

    /// Registers a handler that sees the raw request (name, `$rid`, JSON bytes).
    ///
    /// ```no_run
    /// # async fn demo(client: iot_device::DeviceClient) -> iot_device::Result<()> {
    /// use iot_device::{MethodRequest, MethodResponse};
    /// client
    ///     .on_method_raw("ping", |req: MethodRequest| async move {
    ///         MethodResponse::ok(&serde_json::json!({ "pong": req.name }))
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    /// As [`DeviceClient::on_method`].
    ///
    /// # Errors
    /// As [`DeviceClient::on_method`].
    pub async fn on_method_raw(
        &self,
        name: impl Into<String>,
        handler: impl MethodHandler,
    ) -> Result<()> {
        self.register(Some(name.into()), Handler::Plain(Arc::new(handler)))
            .await
    }

    /// Registers the handler for methods that have no named handler (by default they are
    /// answered 404).
    ///
    /// ```no_run
    /// # async fn demo(client: iot_device::DeviceClient) -> iot_device::Result<()> {
    /// use iot_device::{MethodRequest, MethodResponse};
    /// client
    ///     .on_unknown_method(|req: MethodRequest| async move {
    ///         MethodResponse::error(404, &format!("no method {}", req.name))
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    /// As [`DeviceClient::on_method`].
    ///
    /// # Errors
    /// As [`DeviceClient::on_method`].
    pub async fn on_unknown_method(&self, handler: impl MethodHandler) -> Result<()> {
        self.register(None, Handler::Plain(Arc::new(handler))).await
    }

    /// A stream of method requests that no named handler takes (replaces an earlier stream).
    /// At most 64 wait in it; a request that finds it full is answered 500.
    ///
    /// ```no_run
    /// # async fn demo(client: iot_device::DeviceClient) -> iot_device::Result<()> {
    /// use iot_device::MethodResponse;
    /// let mut requests = client.method_requests().await?;
    /// while let Some(incoming) = requests.next().await {
    ///     let name = incoming.request().name.clone();
    ///     incoming.respond(MethodResponse::ok(&serde_json::json!({ "handled": name }))).await?;
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    /// As [`DeviceClient::on_method`].
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
    /// ```no_run
    /// # async fn demo(client: iot_device::DeviceClient) -> iot_device::Result<()> {
    /// let twin = client.get_twin().await?;
    /// let interval: Option<u64> = twin.desired.get("telemetryInterval").transpose()?;
    /// println!("desired v{:?}: interval {interval:?}", twin.desired.version);
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping the future withdraws the request (or ignores its late answer).
    ///
    /// # Errors
    /// [`ErrorKind::Hub`] with the status when the hub refuses; timeouts as for telemetry.
    pub async fn get_twin(&self) -> Result<TwinProperties> {
        let (status, _, body) = self.shared().twin_request(None).await?;
        if status != 200 {
            return Err(hub_error(status, &body));
        }
        Ok(serde_json::from_slice(&body)?)
    }

    /// Patches the reported properties (merge patch: `null` deletes) and returns the new
    /// reported `$version` once the hub answered 204.
    ///
    /// ```no_run
    /// # async fn demo(client: iot_device::DeviceClient) -> iot_device::Result<()> {
    /// let version = client
    ///     .update_reported(&serde_json::json!({ "firmware": "1.2.0", "oldKey": null }))
    ///     .await?;
    /// println!("reported properties are now at version {version}");
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping the future withdraws the patch if it was not sent yet; a patch
    /// already sent may still be applied.
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

    /// Acknowledges writable properties in the IoT Plug and Play convention: reports
    /// `{"name": {"value": …, "ac": status, "av": desired_version, "ad": description}}` for
    /// each `(name, value)` and returns the new reported `$version`.
    ///
    /// ```no_run
    /// # async fn demo(client: iot_device::DeviceClient) -> iot_device::Result<()> {
    /// let mut updates = client.desired_updates().await?;
    /// while let Some(u) = updates.next().await {
    ///     if let Some(v) = u.properties.get("targetTemperature") {
    ///         client
    ///             .ack_writable_properties(&[("targetTemperature", v.clone())], 200, u.version, "applied")
    ///             .await?;
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    /// As [`DeviceClient::update_reported`].
    ///
    /// # Errors
    /// As [`DeviceClient::update_reported`].
    pub async fn ack_writable_properties(
        &self,
        properties: &[(&str, Value)],
        status: u16,
        desired_version: u64,
        description: &str,
    ) -> Result<u64> {
        self.update_reported(&writable_ack(
            properties,
            status,
            desired_version,
            description,
        ))
        .await
    }

    /// A stream of desired-property updates: first the current desired state as
    /// [`DesiredKind::Full`](crate::DesiredKind::Full), then patches in `$version` order, each
    /// version once. After a reconnect, a `Full` comes only if something changed meanwhile.
    /// A slow reader does not grow memory: past `desired_capacity` waiting updates they
    /// coalesce into one `Full`.
    ///
    /// ```no_run
    /// # async fn demo(client: iot_device::DeviceClient) -> iot_device::Result<()> {
    /// use iot_device::DesiredKind;
    /// let mut updates = client.desired_updates().await?;
    /// while let Some(update) = updates.next().await {
    ///     let full = update.kind == DesiredKind::Full;
    ///     println!("v{} (full: {full}): {:?}", update.version, update.properties);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    /// As [`DeviceClient::on_method`].
    ///
    /// # Errors
    /// As [`DeviceClient::on_method`].
    pub async fn desired_updates(&self) -> Result<DesiredUpdates> {
        self.shared().ensure(sub::DESIRED).await?;
        Ok(DesiredUpdates {
            inner: inner::pull(self.shared().clone(), |s| s.take_desired()),
        })
    }

    /// Calls `f` for every desired-property update (on a task of its own), with the same
    /// order as [`DeviceClient::desired_updates`]: the current state as `Full` first.
    ///
    /// ```no_run
    /// # async fn demo(client: iot_device::DeviceClient) -> iot_device::Result<()> {
    /// client
    ///     .on_desired_update(|update: iot_device::DesiredUpdate| async move {
    ///         println!("desired v{}: {:?}", update.version, update.properties);
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    /// As [`DeviceClient::on_method`].
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
    /// A message is acknowledged to the hub only when taken from the stream.
    ///
    /// ```no_run
    /// # async fn demo(client: iot_device::DeviceClient) -> iot_device::Result<()> {
    /// let mut inbox = client.c2d_messages().await?;
    /// while let Some(message) = inbox.next().await {
    ///     println!("{} bytes, id {:?}", message.body.len(), message.properties.message_id);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    /// As [`DeviceClient::on_method`].
    ///
    /// # Errors
    /// As [`DeviceClient::on_method`].
    pub async fn c2d_messages(&self) -> Result<C2dMessages> {
        self.shared().ensure(sub::MESSAGES).await?;
        Ok(C2dMessages {
            inner: inner::pull(self.shared().clone(), |s| s.take_c2d()),
        })
    }

    /// Sends DISCONNECT and stops the connection; pending operations fail with
    /// [`ErrorKind::Closed`]. Waits at most the operation timeout for the connection to close.
    ///
    /// ```no_run
    /// # async fn demo(client: iot_device::DeviceClient) -> iot_device::Result<()> {
    /// client.close().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    /// Cancel-safe: the close is requested at once; dropping the future only stops waiting.
    ///
    /// # Errors
    /// None today; the `Result` leaves room for flush errors.
    pub async fn close(self) -> Result<()> {
        let shared = self.shared().clone();
        request_close(&shared);
        let mut status = StatusChanges::new(shared.status.subscribe());
        let _ = tokio::time::timeout(
            shared.options.operation_timeout,
            status.wait_for(|s| matches!(s, ConnectionStatus::Closed { .. })),
        )
        .await;
        Ok(())
    }
}

/// Capacity of rumqttc's request channel: only what is being handed over waits there.
const REQUEST_CHANNEL: usize = 16;

/// The Plug and Play acknowledgement of writable properties.
pub(crate) fn writable_ack(
    properties: &[(&str, Value)],
    status: u16,
    desired_version: u64,
    description: &str,
) -> Value {
    let mut patch = serde_json::Map::new();
    for (name, value) in properties {
        patch.insert(
            (*name).to_owned(),
            serde_json::json!({
                "value": value,
                "ac": status,
                "av": desired_version,
                "ad": description,
            }),
        );
    }
    Value::Object(patch)
}

/// An error from a twin response's status and JSON body.
fn hub_error(status: u16, body: &[u8]) -> Error {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| "the hub refused the twin request".to_owned());
    Error::hub(status, message)
}

#[cfg(test)]
mod tests {
    #[test]
    fn writable_ack_follows_the_pnp_convention() {
        let v = super::writable_ack(&[("t", serde_json::json!(21))], 200, 7, "ok");
        assert_eq!(
            v,
            serde_json::json!({"t": {"value": 21, "ac": 200, "av": 7, "ad": "ok"}})
        );
    }
}
