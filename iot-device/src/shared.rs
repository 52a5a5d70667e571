//! State shared by the client handles and the driver task.

use crate::message::C2dMessage;
use crate::methods::{IncomingMethod, MethodHandler};
use crate::outbox::Outbox;
use crate::status::ConnectionStatus;
use crate::twin::{DesiredKind, DesiredState};
use crate::{DeviceClientOptions, Error, ErrorKind, Result};
use bytes::Bytes;
use futures_util::FutureExt as _;
use iot_common::topic::{self, Inbound};
use iot_common::{MethodRequest, MethodResponse, TwinProperties};
use rumqttc::{Publish, QoS, SubscribeFilter};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot, watch};

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Subscription bits.
pub(crate) mod sub {
    pub(crate) const TWIN: u8 = 1;
    pub(crate) const METHODS: u8 = 2;
    pub(crate) const DESIRED: u8 = 4;
    pub(crate) const MESSAGES: u8 = 8;
}

/// A twin response: status, `$version`, body.
pub(crate) type TwinReply = (u16, Option<u64>, Bytes);

#[derive(Default)]
pub(crate) struct Handlers {
    pub(crate) named: HashMap<String, Arc<dyn MethodHandler>>,
    pub(crate) fallback: Option<Arc<dyn MethodHandler>>,
    pub(crate) stream: Option<mpsc::Sender<IncomingMethod>>,
}

pub(crate) struct Shared {
    pub(crate) host_name: String,
    pub(crate) device_id: String,
    pub(crate) module_id: Option<String>,
    pub(crate) options: DeviceClientOptions,
    pub(crate) outbox: Outbox,
    twin_pending: Mutex<HashMap<String, oneshot::Sender<TwinReply>>>,
    next_rid: AtomicU64,
    pub(crate) wanted: AtomicU8,
    pub(crate) handlers: RwLock<Handlers>,
    pub(crate) desired: Mutex<DesiredState>,
    pub(crate) messages: Mutex<Vec<mpsc::UnboundedSender<C2dMessage>>>,
    pub(crate) status: watch::Sender<ConnectionStatus>,
    method_permits: Arc<Semaphore>,
    pub(crate) closing: AtomicBool,
    pub(crate) close_notify: Notify,
    pub(crate) stats: Counters,
}

/// Connection counters behind [`crate::ClientStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) connects: AtomicU64,
    pub(crate) token_renewals: AtomicU64,
    pub(crate) connection_losses: AtomicU64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("device_id", &self.device_id)
            .field("module_id", &self.module_id)
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn new(
        host_name: String,
        device_id: String,
        module_id: Option<String>,
        options: DeviceClientOptions,
        outbox: Outbox,
    ) -> Self {
        let permits = Arc::new(Semaphore::new(options.max_concurrent_methods));
        Self {
            host_name,
            device_id,
            module_id,
            options,
            outbox,
            twin_pending: Mutex::default(),
            next_rid: AtomicU64::new(1),
            wanted: AtomicU8::new(sub::TWIN),
            handlers: RwLock::default(),
            desired: Mutex::default(),
            messages: Mutex::default(),
            status: watch::channel(ConnectionStatus::Connecting).0,
            method_permits: permits,
            closing: AtomicBool::new(false),
            close_notify: Notify::new(),
            stats: Counters::default(),
        }
    }

    fn filters(&self, bits: u8) -> Vec<SubscribeFilter> {
        let mut f = Vec::new();
        let mut add = |bit: u8, filter: String| {
            if bits & bit != 0 {
                f.push(SubscribeFilter::new(filter, QoS::AtLeastOnce));
            }
        };
        add(sub::TWIN, topic::TWIN_RESPONSE_FILTER.to_owned());
        add(sub::METHODS, topic::METHODS_FILTER.to_owned());
        add(sub::DESIRED, topic::TWIN_DESIRED_FILTER.to_owned());
        let messages = match &self.module_id {
            Some(m) => topic::module_inputs_filter(&self.device_id, m),
            None => topic::c2d_filter(&self.device_id),
        };
        add(sub::MESSAGES, messages);
        f
    }

    fn check_open(&self) -> Result<()> {
        if self.closing.load(Ordering::Acquire) {
            Err(Error::closed())
        } else {
            Ok(())
        }
    }

    /// Subscribes to the filters of `bits` and waits for the SUBACK.
    pub(crate) async fn subscribe(&self, bits: u8) -> Result<()> {
        self.check_open()?;
        let filters = self.filters(bits);
        if filters.is_empty() {
            return Ok(());
        }
        let rx = self.outbox.subscribe(filters).await?;
        match tokio::time::timeout(self.options.operation_timeout, rx).await {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => Err(Error::new(
                ErrorKind::Hub,
                "the hub refused the subscription",
            )),
            Ok(Err(_)) => Err(Error::new(
                ErrorKind::Connection,
                "the connection dropped before the subscription was acknowledged",
            )),
            Err(_) => Err(self.timeout_error("subscription")),
        }
    }

    /// Makes sure a subscription is in place (subscribing the first time it is wanted).
    pub(crate) async fn ensure(&self, bit: u8) -> Result<()> {
        if self.wanted.fetch_or(bit, Ordering::AcqRel) & bit != 0 {
            return Ok(());
        }
        let r = self.subscribe(bit).await;
        if r.is_err() {
            self.wanted.fetch_and(!bit, Ordering::AcqRel);
        }
        r
    }

    fn timeout_error(&self, what: &str) -> Error {
        match *self.status.borrow() {
            ConnectionStatus::Connected => Error::timeout(what),
            ConnectionStatus::Closed { .. } => Error::closed(),
            _ => Error::new(
                ErrorKind::Connection,
                format!("{what} timed out while disconnected"),
            ),
        }
    }

    /// Sends a twin request and waits for the hub's answer.
    pub(crate) async fn twin_request(&self, patch: Option<Bytes>) -> Result<TwinReply> {
        self.check_open()?;
        let rid = self.next_rid.fetch_add(1, Ordering::Relaxed).to_string();
        let (topic, body) = match patch {
            Some(p) => (topic::twin_patch_reported_topic(&rid), p),
            None => (topic::twin_get_topic(&rid), Bytes::from_static(b" ")),
        };
        let (tx, rx) = oneshot::channel();
        lock(&self.twin_pending).insert(rid.clone(), tx);
        let sent = self
            .outbox
            .publish(topic, QoS::AtLeastOnce, body, false)
            .await;
        if let Err(e) = sent {
            lock(&self.twin_pending).remove(&rid);
            return Err(e);
        }
        let reply = tokio::time::timeout(self.options.operation_timeout, rx).await;
        lock(&self.twin_pending).remove(&rid);
        match reply {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_)) => Err(Error::closed()),
            Err(_) => Err(self.timeout_error("twin request")),
        }
    }

    pub(crate) async fn get_twin(&self) -> Result<TwinProperties> {
        let (status, _, body) = self.twin_request(None).await?;
        if status != 200 {
            return Err(hub_error(status, &body));
        }
        Ok(serde_json::from_slice(&body)?)
    }

    pub(crate) async fn send_method_response(
        &self,
        rid: &str,
        response: MethodResponse,
    ) -> Result<()> {
        let topic = topic::method_response_topic(response.status, rid);
        self.outbox
            .publish(
                topic,
                QoS::AtLeastOnce,
                Bytes::from(response.payload),
                false,
            )
            .await
            .map(drop)
    }

    /// Answers from synchronous code (a dropped request): sends from a task when a runtime
    /// is there.
    pub(crate) fn try_send_method_response(self: &Arc<Self>, rid: &str, response: MethodResponse) {
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let shared = self.clone();
            let rid = rid.to_owned();
            rt.spawn(async move {
                let _ = shared.send_method_response(&rid, response).await;
            });
        }
    }

    /// Routes one publish from the hub.
    pub(crate) fn dispatch(self: &Arc<Self>, p: Publish) {
        match Inbound::parse(&p.topic) {
            Ok(Inbound::MethodRequest { name, rid }) => {
                let request = MethodRequest::new(name, rid, p.payload.to_vec());
                self.dispatch_method(request);
            }
            Ok(Inbound::TwinResponse {
                status,
                rid,
                version,
            }) => {
                if let Some(tx) = lock(&self.twin_pending).remove(rid) {
                    let _ = tx.send((status, version, p.payload));
                }
            }
            Ok(Inbound::DesiredPatch { version }) => {
                let body: Map<String, Value> = match serde_json::from_slice(&p.payload) {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(error = %e, "desired patch is not a JSON object");
                        return;
                    }
                };
                let version = version.or_else(|| body.get("$version").and_then(Value::as_u64));
                if let Some(v) = version {
                    lock(&self.desired).deliver(v, DesiredKind::Patch, body);
                }
            }
            Ok(Inbound::C2d { properties }) => self.deliver_message(C2dMessage {
                body: p.payload,
                properties,
                input: None,
            }),
            Ok(Inbound::ModuleInput { input, properties }) => self.deliver_message(C2dMessage {
                body: p.payload,
                properties,
                input: Some(input.to_owned()),
            }),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(topic = %p.topic, error = %e, "unexpected publish from the hub")
            }
        }
    }

    fn deliver_message(&self, m: C2dMessage) {
        lock(&self.messages).retain(|s| s.send(m.clone()).is_ok());
    }

    fn dispatch_method(self: &Arc<Self>, request: MethodRequest) {
        let (handler, stream) = {
            let h = self
                .handlers
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let handler = h.named.get(&request.name).or(h.fallback.as_ref()).cloned();
            (handler, h.stream.clone())
        };
        let shared = self.clone();
        match (handler, stream) {
            (Some(handler), _) => {
                let permits = self.method_permits.clone();
                tokio::spawn(async move {
                    let _permit = permits.acquire_owned().await;
                    let rid = request.rid.clone();
                    let name = request.name.clone();
                    let response = AssertUnwindSafe(handler.call(request))
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|_| {
                            tracing::error!(method = %name, "method handler panicked");
                            MethodResponse::error(500, "the method handler failed")
                        });
                    let _ = shared.send_method_response(&rid, response).await;
                });
            }
            (None, Some(stream)) => {
                let incoming = IncomingMethod::new(request, Arc::downgrade(self));
                if let Err(e) = stream.try_send(incoming) {
                    // Full or closed: the request inside answers 500 when dropped here.
                    drop(e);
                }
            }
            (None, None) => {
                let rid = request.rid.clone();
                let message = format!("method '{}' is not implemented", request.name);
                tokio::spawn(async move {
                    let _ = shared
                        .send_method_response(&rid, MethodResponse::error(404, &message))
                        .await;
                });
            }
        }
    }

    /// After every CONNACK: resubscribe, and fetch the twin to catch up on desired changes.
    pub(crate) fn on_connected(self: &Arc<Self>) {
        let shared = self.clone();
        tokio::spawn(async move {
            let bits = shared.wanted.load(Ordering::Acquire);
            if let Err(e) = shared.subscribe(bits).await {
                tracing::warn!(error = %e, "resubscribe failed");
                return;
            }
            if bits & sub::DESIRED != 0 {
                shared.resync_desired().await;
            }
        });
    }

    pub(crate) async fn resync_desired(&self) {
        match self.get_twin().await {
            Ok(twin) => {
                let version = twin.desired.version.unwrap_or(0);
                lock(&self.desired).resync(version, twin.desired.properties);
            }
            Err(e) => tracing::warn!(error = %e, "desired-property resync failed"),
        }
    }

    /// Ends streams and fails waiters when the client stops.
    pub(crate) fn shut_down(&self) {
        lock(&self.twin_pending).clear();
        lock(&self.messages).clear();
        lock(&self.desired).subscribers.clear();
        self.handlers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .stream = None;
    }
}

/// An error from a twin response's status and JSON body.
pub(crate) fn hub_error(status: u16, body: &[u8]) -> Error {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| "the hub refused the twin request".to_owned());
    Error::hub(status, message)
}
