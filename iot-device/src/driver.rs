//! The pump: one task per connection that moves events from rumqttc's `EventLoop` into the
//! [`DeviceSession`](crate::session::DeviceSession) and its packets and actions out. It makes
//! no protocol decision itself. `poll()` is never cancelled while connected (a cancelled poll
//! can cut a write in half): the pump keeps polling the same future while it hands packets
//! over, so a due token renewal is noticed on the next event (keep-alive pings bound the wait).

use crate::inner::{Counters, Handler, Inner};
use crate::methods::{IncomingMethod, Respond};
use crate::session::{Action, Loss, Transmit};
use crate::status::{CloseReason, ConnectionStatus};
use crate::{DeviceClient, Error, ErrorKind, Result};
use bytes::Bytes;
use futures_util::FutureExt as _;
use iot_common::{MethodRequest, MethodResponse, SasToken, Secret};
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, Outgoing, Packet, QoS,
    SubscribeFilter, SubscribeReasonCode,
};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};
use tokio::sync::oneshot;

/// Where the MQTT password comes from.
pub(crate) enum Credentials {
    /// A key: tokens are signed here and renewed.
    Key {
        key: Secret,
        key_name: Option<String>,
    },
    /// A ready-made token: used as is, never renewed.
    Token(Secret),
    /// An X.509 client certificate in the TLS handshake: no password.
    X509,
}

impl Credentials {
    /// A password and, for keys, its lifetime (the session schedules the renewal).
    pub(crate) fn password(&self, shared: &Inner) -> Result<(Secret, Option<Duration>)> {
        match self {
            Self::Token(t) => Ok((t.clone(), None)),
            Self::X509 => Ok((Secret::new(""), None)),
            Self::Key { key, key_name } => {
                let ttl = shared.options.sas_ttl;
                let now = Duration::from_secs(iot_common::sas::unix_seconds(SystemTime::now()));
                let expiry = now.as_secs() + ttl.as_secs();
                let resource = iot_common::sas::device_resource(
                    &shared.host_name,
                    &shared.device_id,
                    if key_name.is_some() {
                        None
                    } else {
                        shared.module_id.as_deref()
                    },
                );
                let token =
                    SasToken::sign(&resource, key, key_name.as_deref(), expiry).map_err(|e| {
                        Error::new(ErrorKind::Configuration, "cannot sign a SAS token")
                            .with_source(e)
                    })?;
                let remaining = Duration::from_secs(expiry).saturating_sub(now);
                Ok((token.as_secret().clone(), Some(remaining)))
            }
        }
    }
}

/// Replaces the MQTT password (the SAS token), keeping the username.
pub(crate) fn set_password(eventloop: &mut EventLoop, password: &Secret) {
    let username = eventloop
        .mqtt_options
        .credentials()
        .map(|l| l.username)
        .unwrap_or_default();
    eventloop
        .mqtt_options
        .set_credentials(username, password.expose());
}

/// CONNACK 4 and 5 mean the credentials were refused; 3 (server unavailable) is transient.
fn is_auth_refusal(e: &ConnectionError) -> bool {
    matches!(
        e,
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::NotAuthorized | ConnectReturnCode::BadUserNamePassword
        )
    )
}

/// CONNACK 1 and 2 (protocol version, client id) cannot get better by retrying.
fn is_permanent_refusal(e: &ConnectionError) -> bool {
    matches!(
        e,
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::RefusedProtocolVersion | ConnectReturnCode::BadClientId
        )
    )
}

/// The typed error of a failed connection (attempt), naming the device, the endpoint, the
/// root cause and, where known, what to do.
fn connect_error(e: &ConnectionError, inner: &Inner) -> Error {
    let kind = if is_auth_refusal(e) {
        ErrorKind::Unauthorized
    } else if is_permanent_refusal(e) {
        ErrorKind::Configuration
    } else {
        ErrorKind::Connection
    };
    Error::connection(kind, &inner.device_id, &inner.endpoint, e)
}

/// How a connection attempt or connection failed, for the session.
fn loss_of(e: &ConnectionError) -> Loss {
    if is_auth_refusal(e) {
        Loss::Refused
    } else if is_permanent_refusal(e) {
        Loss::Permanent
    } else if iot_common::hint::is_certificate_failure(e) {
        Loss::Certificate
    } else {
        Loss::Transient
    }
}

/// What the pump does after a batch of actions.
enum Flow {
    Continue,
    Reconnect(Duration),
    Renew,
    Close(CloseReason),
}

/// The pump's state besides the event loop.
pub(crate) struct Pump {
    pub(crate) inner: Arc<Inner>,
    /// The handle, to give handlers a client for the duration of a call without keeping it
    /// alive in between.
    pub(crate) handle: Weak<crate::client::Handle>,
    pub(crate) client: AsyncClient,
    pub(crate) credentials: Credentials,
    pub(crate) ready: Option<oneshot::Sender<Result<()>>>,
    pub(crate) keep_alive: Duration,
    /// A CONNACK came and no error since: a DISCONNECT can be sent.
    pub(crate) connected: bool,
    /// A DISCONNECT was requested; the next `Outgoing::Disconnect` or error ends the pump.
    pub(crate) closing: bool,
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

impl Pump {
    /// Hands rumqttc every packet the session lets go now, without waiting: a full request
    /// channel leaves the rest in the session's queue for the next wake-up.
    fn flush(&self) {
        let mut core = self.inner.lock();
        while let Some(t) = core.session.poll_transmit() {
            let r = match t {
                Transmit::Publish { topic, payload } => {
                    self.client
                        .try_publish(topic, QoS::AtLeastOnce, false, payload)
                }
                Transmit::Subscribe { filters } => self.client.try_subscribe_many(
                    filters
                        .into_iter()
                        .map(|f| SubscribeFilter::new(f, QoS::AtLeastOnce)),
                ),
                Transmit::Ack { pkid } => {
                    let mut p = rumqttc::Publish::new("", QoS::AtLeastOnce, Bytes::new());
                    p.pkid = pkid;
                    self.client.try_ack(&p)
                }
            };
            if r.is_err() {
                break;
            }
            core.session.handed();
        }
    }

    /// Carries out the session's actions.
    fn act(&mut self) -> Flow {
        let mut flow = Flow::Continue;
        loop {
            let action = {
                let mut core = self.inner.lock();
                let Some(a) = core.session.poll_action() else {
                    break;
                };
                if let Action::Complete(id, outcome) = a {
                    if let Some(tx) = core.waiters.remove(&id) {
                        let _ = tx.send(outcome);
                    }
                    continue;
                }
                a
            };
            match action {
                Action::Complete(..) => {}
                Action::Status(s) => {
                    if s == ConnectionStatus::Connected {
                        Counters::bump(&self.inner.stats.connects);
                        if let Some(tx) = self.ready.take() {
                            let _ = tx.send(Ok(()));
                        }
                    }
                    self.inner.status.send_replace(s);
                }
                Action::Wake => self.inner.delivered.notify_waiters(),
                Action::Method(request) => self.dispatch(request),
                Action::Reconnect(d) => flow = Flow::Reconnect(d),
                Action::RenewToken => flow = Flow::Renew,
                Action::Close(reason) => {
                    self.inner.delivered.notify_waiters();
                    flow = Flow::Close(reason);
                }
            }
        }
        flow
    }

    fn dispatch(&self, request: MethodRequest) {
        let (handler, stream) = {
            let h = self
                .inner
                .handlers
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let handler = h.named.get(&request.name).or(h.fallback.as_ref()).cloned();
            (handler, h.stream.clone())
        };
        let inner = self.inner.clone();
        match (handler, stream) {
            (Some(handler), _) => {
                let permits = self.inner.method_permits.clone();
                let handle = self.handle.clone();
                tokio::spawn(async move {
                    let _permit = permits.acquire_owned().await;
                    let rid = request.rid.clone();
                    let name = request.name.clone();
                    let fut = match handler {
                        Handler::Plain(h) => h.call(request),
                        Handler::WithClient(h) => match handle.upgrade() {
                            Some(inner) => h(DeviceClient { inner }, request),
                            None => Box::pin(async {
                                MethodResponse::error(503, "the client is closing")
                            }),
                        },
                    };
                    let response =
                        AssertUnwindSafe(fut)
                            .catch_unwind()
                            .await
                            .unwrap_or_else(|_| {
                                tracing::error!(method = %name, "method handler panicked");
                                MethodResponse::error(500, "the method handler failed")
                            });
                    let _ = inner.send_method_response(&rid, response).await;
                });
            }
            (None, Some(stream)) => {
                let responder: Arc<dyn Respond> = self.inner.clone();
                let incoming = IncomingMethod::new(request, Arc::downgrade(&responder));
                // Full or closed: the request inside answers 500 when dropped here.
                drop(stream.try_send(incoming));
            }
            (None, None) => {
                let rid = request.rid.clone();
                let message = format!("method '{}' is not implemented", request.name);
                tokio::spawn(async move {
                    let _ = inner
                        .send_method_response(&rid, MethodResponse::error(404, &message))
                        .await;
                });
            }
        }
    }

    fn on_event(&mut self, event: &Event) {
        let mut core = self.inner.lock();
        let s = &mut core.session;
        match event {
            Event::Incoming(Packet::ConnAck(ack)) => {
                self.connected = true;
                s.on_connack(ack.session_present, now());
            }
            Event::Incoming(Packet::Publish(p)) => {
                s.on_publish(&p.topic, p.payload.clone(), p.pkid)
            }
            Event::Incoming(Packet::PubAck(a)) => s.on_puback(a.pkid),
            Event::Incoming(Packet::SubAck(a)) => s.on_suback(
                a.pkid,
                a.return_codes
                    .iter()
                    .all(|c| !matches!(c, SubscribeReasonCode::Failure)),
            ),
            Event::Outgoing(Outgoing::Publish(pkid)) => s.on_outgoing_publish(*pkid),
            Event::Outgoing(Outgoing::Subscribe(pkid)) => s.on_outgoing_subscribe(*pkid),
            _ => {}
        }
        s.handle_timeout(now());
    }

    /// Asks rumqttc to send DISCONNECT; `false` when there is no connection to close.
    fn disconnect(&mut self) -> bool {
        if !self.connected || self.closing {
            return false;
        }
        self.closing = true;
        // Acknowledgements the application already earned (a C2D message it took just before
        // closing) go out first: rumqttc writes requests in order, and nothing after the
        // DISCONNECT. Without this, a close seen after an event skipped the loop's flush.
        self.flush();
        self.client.try_disconnect().is_ok()
    }

    fn set_token(&mut self, eventloop: &mut EventLoop) -> bool {
        match self.credentials.password(&self.inner) {
            Ok((password, ttl)) => {
                set_password(eventloop, &password);
                if let Some(ttl) = ttl {
                    self.inner
                        .lock()
                        .session
                        .on_token(now(), ttl, self.keep_alive);
                }
                true
            }
            Err(_) => false,
        }
    }
}

/// Sleeps until `at`, or forever.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Forget what rumqttc would replay: the session requeued all of it and sends it again.
fn forget_replay(eventloop: &mut EventLoop) {
    eventloop.pending.clear();
    eventloop.state.clean();
}

/// Runs the connection until the client closes or gives up.
pub(crate) async fn run(mut pump: Pump, mut eventloop: EventLoop) {
    let reason = 'outer: loop {
        let event = {
            let poll = eventloop.poll();
            tokio::pin!(poll);
            loop {
                pump.flush();
                if let Flow::Close(reason) = pump.act()
                    && !pump.disconnect()
                {
                    break 'outer reason;
                }
                let timer = pump.inner.lock().session.resync_deadline();
                let timer = timer.map(tokio::time::Instant::from_std);
                tokio::select! {
                    biased;
                    event = &mut poll => break event,
                    () = pump.inner.wake_pump.notified() => {}
                    () = sleep_until(timer) => {
                        // Only the resync here: a renewal needs the event loop, so it waits
                        // for the next event.
                        pump.inner.lock().session.handle_resync_timeout(now());
                    }
                }
            }
        };
        match event {
            Ok(Event::Outgoing(Outgoing::Disconnect)) if pump.closing => {
                break CloseReason::ClientClosed;
            }
            Err(_) if pump.closing => break CloseReason::ClientClosed,
            Ok(event) => pump.on_event(&event),
            Err(e) => {
                let was_connected = std::mem::replace(&mut pump.connected, false);
                Counters::bump(&pump.inner.stats.connection_losses);
                let error = connect_error(&e, &pump.inner);
                forget_replay(&mut eventloop);
                let closed = {
                    let mut core = pump.inner.lock();
                    core.session
                        .on_connection_lost(loss_of(&e), rand::random::<f64>());
                    core.session.is_closed()
                };
                // Every failed attempt is visible, with its cause and hint, even while
                // `connect` keeps retrying (retry_initial_connect) and has nothing to return.
                if was_connected && !closed {
                    tracing::warn!(
                        device_id = %pump.inner.device_id,
                        endpoint = %pump.inner.endpoint,
                        cause = %iot_common::hint::root_cause(&e),
                        "connection lost; reconnecting"
                    );
                } else if closed {
                    tracing::error!(device_id = %pump.inner.device_id, "{error}; giving up");
                } else {
                    tracing::warn!(device_id = %pump.inner.device_id, "{error}; retrying");
                }
                if let Some(tx) = pump.ready.take() {
                    if closed {
                        let _ = tx.send(Err(error));
                    } else {
                        pump.ready = Some(tx);
                    }
                }
            }
        }
        match pump.act() {
            Flow::Continue => {}
            Flow::Close(reason) => {
                if !pump.disconnect() {
                    break reason;
                }
            }
            Flow::Renew => {
                tracing::debug!(device_id = %pump.inner.device_id, "renewing the SAS token");
                Counters::bump(&pump.inner.stats.token_renewals);
                if !pump.set_token(&mut eventloop) {
                    break CloseReason::Unauthorized;
                }
                eventloop.clean();
                forget_replay(&mut eventloop);
                eventloop.network = None;
                pump.connected = false;
            }
            Flow::Reconnect(delay) => {
                let sleep = tokio::time::sleep(delay);
                tokio::pin!(sleep);
                loop {
                    if let Flow::Close(reason) = pump.act() {
                        break 'outer reason;
                    }
                    tokio::select! {
                        () = &mut sleep => break,
                        () = pump.inner.wake_pump.notified() => {}
                    }
                }
                if !pump.set_token(&mut eventloop) {
                    break CloseReason::Unauthorized;
                }
            }
        }
    };
    {
        let mut core = pump.inner.lock();
        core.session.close(reason);
    }
    pump.act();
    let status = ConnectionStatus::Closed { reason };
    pump.inner.status.send_replace(status);
    pump.inner.delivered.notify_waiters();
    pump.inner
        .handlers
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .stream = None;
    if let Some(tx) = pump.ready.take() {
        let _ = tx.send(Err(Error::closed()));
    }
    tracing::debug!(device_id = %pump.inner.device_id, ?reason, "client stopped");
}

/// Keep-alive short enough that a token renewal is noticed in time.
pub(crate) fn effective_keep_alive(keep_alive: Duration, ttl: Duration) -> Duration {
    keep_alive.min(ttl.mul_f64(0.1)).max(Duration::from_secs(1))
}
