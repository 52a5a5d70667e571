//! What the client handles and the pump share: the session behind one lock, the waiters of
//! pending calls, and the wake-ups. Protocol decisions are the session's; this file only
//! turns its outcomes into resolved futures.

use crate::methods::{BoxFuture, IncomingMethod, MethodHandler, Respond};
use crate::session::{DeviceSession, OpId, Outcome, QueueFull};
use crate::status::ConnectionStatus;
use crate::{DeviceClient, DeviceClientOptions, Error, ErrorKind, Result};
use bytes::Bytes;
use iot_common::{MethodRequest, MethodResponse};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot, watch};

/// A method handler as registered.
#[derive(Clone)]
pub(crate) enum Handler {
    /// Sees only the request.
    Plain(Arc<dyn MethodHandler>),
    /// Also gets the client, for the duration of the call.
    WithClient(Arc<dyn Fn(DeviceClient, MethodRequest) -> BoxFuture<MethodResponse> + Send + Sync>),
}

#[derive(Default)]
pub(crate) struct Handlers {
    pub(crate) named: HashMap<String, Handler>,
    pub(crate) fallback: Option<Handler>,
    pub(crate) stream: Option<mpsc::Sender<IncomingMethod>>,
}

pub(crate) struct Core {
    pub(crate) session: DeviceSession,
    pub(crate) waiters: HashMap<OpId, oneshot::Sender<Outcome>>,
}

/// Connection counters behind [`crate::ClientStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) connects: AtomicU64,
    pub(crate) token_renewals: AtomicU64,
    pub(crate) connection_losses: AtomicU64,
}

pub(crate) struct Inner {
    pub(crate) host_name: String,
    /// `host:port` the transport connects to, for errors and logs.
    pub(crate) endpoint: String,
    pub(crate) device_id: String,
    pub(crate) module_id: Option<String>,
    pub(crate) options: DeviceClientOptions,
    pub(crate) core: Mutex<Core>,
    /// Something for the pump: a new operation, a cancelled one, a close.
    pub(crate) wake_pump: Notify,
    /// A desired update or C2D message is ready.
    pub(crate) delivered: Notify,
    pub(crate) status: watch::Sender<ConnectionStatus>,
    pub(crate) handlers: RwLock<Handlers>,
    pub(crate) method_permits: Arc<Semaphore>,
    pub(crate) stats: Counters,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("device_id", &self.device_id)
            .field("module_id", &self.module_id)
            .finish_non_exhaustive()
    }
}

/// Forgets exactly one operation when its call ends, however it ends (answered, timed out,
/// or its future dropped).
struct CancelOnDrop<'a> {
    inner: &'a Inner,
    id: OpId,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        let mut core = self.inner.lock();
        core.session.cancel(self.id);
        core.waiters.remove(&self.id);
    }
}

impl Inner {
    pub(crate) fn new(
        host_name: String,
        endpoint: String,
        device_id: String,
        module_id: Option<String>,
        options: DeviceClientOptions,
        session: DeviceSession,
    ) -> Self {
        let permits = Arc::new(Semaphore::new(options.max_concurrent_methods));
        Self {
            host_name,
            endpoint,
            device_id,
            module_id,
            options,
            core: Mutex::new(Core {
                session,
                waiters: HashMap::new(),
            }),
            wake_pump: Notify::new(),
            delivered: Notify::new(),
            status: watch::channel(ConnectionStatus::Connecting).0,
            handlers: RwLock::default(),
            method_permits: permits,
            stats: Counters::default(),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Core> {
        self.core
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Submits an operation and waits for its outcome. The whole wait, queue included, is
    /// bounded by the operation timeout; dropping the future cancels exactly this operation.
    pub(crate) async fn call(
        &self,
        what: &str,
        submit: impl FnOnce(&mut DeviceSession) -> std::result::Result<OpId, QueueFull>,
    ) -> Result<Outcome> {
        self.call_opt(what, |s| submit(s).map(Some))
            .await?
            .ok_or_else(Error::closed)
    }

    /// As [`Self::call`], for a submission that may need no operation at all (`Ok(None)`).
    pub(crate) async fn call_opt(
        &self,
        what: &str,
        submit: impl FnOnce(&mut DeviceSession) -> std::result::Result<Option<OpId>, QueueFull>,
    ) -> Result<Option<Outcome>> {
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut core = self.lock();
            if core.session.is_closed() {
                return Err(Error::closed());
            }
            let Some(id) = submit(&mut core.session).map_err(|QueueFull| queue_full())? else {
                return Ok(None);
            };
            core.waiters.insert(id, tx);
            id
        };
        let _cancel = CancelOnDrop { inner: self, id };
        self.wake_pump.notify_one();
        match tokio::time::timeout(self.options.operation_timeout, rx).await {
            Ok(Ok(Outcome::Closed) | Err(_)) => Err(Error::closed()),
            Ok(Ok(Outcome::Dropped)) => Err(Error::new(
                ErrorKind::QueueFull,
                "the message was dropped from the full telemetry queue to make room",
            )),
            Ok(Ok(outcome)) => Ok(Some(outcome)),
            Err(_) => Err(self.timeout_error(what)),
        }
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

    /// Makes sure the subscriptions of `bits` are in place (already wanted: nothing to do).
    pub(crate) async fn ensure(&self, bits: u8) -> Result<()> {
        let outcome = self.call_opt("subscription", |s| Ok(s.want(bits))).await;
        match outcome {
            Ok(None | Some(Outcome::Subscribed(true))) => Ok(()),
            other => {
                self.lock().session.unwant(bits);
                match other {
                    Err(e) => Err(e),
                    _ => Err(Error::new(
                        ErrorKind::Hub,
                        "the hub refused the subscription",
                    )),
                }
            }
        }
    }

    /// Sends a twin request and returns status, `$version` and body.
    pub(crate) async fn twin_request(
        &self,
        patch: Option<Bytes>,
    ) -> Result<(u16, Option<u64>, Bytes)> {
        match self
            .call("twin request", |s| Ok(s.submit_twin(patch)))
            .await?
        {
            Outcome::Twin(status, version, body) => Ok((status, version, body)),
            other => Err(unexpected(&other)),
        }
    }

    pub(crate) async fn send_method_response(
        &self,
        rid: &str,
        response: MethodResponse,
    ) -> Result<()> {
        let payload = Bytes::from(response.payload);
        self.call("method response", |s| {
            Ok(s.submit_method_response(rid, response.status, payload))
        })
        .await
        .map(drop)
    }
}

fn unexpected(o: &Outcome) -> Error {
    Error::new(ErrorKind::Connection, format!("unexpected outcome {o:?}"))
}

fn queue_full() -> Error {
    Error::new(
        ErrorKind::QueueFull,
        "the offline telemetry queue is full (see DeviceClientOptions::telemetry_queue)",
    )
}

impl Respond for Inner {
    fn respond(self: Arc<Self>, rid: String, response: MethodResponse) -> BoxFuture<Result<()>> {
        Box::pin(async move { self.send_method_response(&rid, response).await })
    }
}

impl Counters {
    pub(crate) fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

type BoxStream<T> = std::pin::Pin<Box<dyn futures_core::Stream<Item = T> + Send>>;

/// A stream that takes items out of the session. The mutex is never locked: `poll_next`
/// has `&mut self` and uses `get_mut`. It is there so that the public streams are `Sync`
/// (a boxed `async` state machine is only `Send`), which users need to hold them in
/// shared state.
pub(crate) struct Pull<T>(Mutex<BoxStream<T>>);

impl<T> futures_core::Stream for Pull<T> {
    type Item = T;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        self.get_mut()
            .0
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_mut()
            .poll_next(cx)
    }
}

/// Items taken from the session with `take`, waiting for [`Inner::delivered`] in between;
/// ends when the session closed and nothing is left.
pub(crate) fn pull<T: Send + 'static>(
    inner: Arc<Inner>,
    take: fn(&mut DeviceSession) -> Option<T>,
) -> Pull<T> {
    Pull(Mutex::new(Box::pin(futures_util::stream::unfold(
        inner,
        move |inner| async move {
            let item = loop {
                let notified = inner.delivered.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                {
                    let mut core = inner.lock();
                    if let Some(item) = take(&mut core.session) {
                        break item;
                    }
                    if core.session.is_closed() {
                        return None;
                    }
                }
                notified.await;
            };
            // Taking a C2D message queued its acknowledgement.
            inner.wake_pump.notify_one();
            Some((item, inner))
        },
    ))))
}
