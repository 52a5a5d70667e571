//! Direct-method handlers: a small trait with a boxed future (closures and stateful types both
//! implement it), typed handlers on top of it, and a stream for those who prefer one.

use futures_core::Stream;
use iot_common::{MethodRequest, MethodResponse};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Answers direct-method requests. Implemented for every
/// `Fn(MethodRequest) -> impl Future<Output = MethodResponse>`.
pub trait MethodHandler: Send + Sync + 'static {
    /// Handles one request.
    fn call(&self, request: MethodRequest) -> BoxFuture<MethodResponse>;
}

impl<F, Fut> MethodHandler for F
where
    F: Fn(MethodRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = MethodResponse> + Send + 'static,
{
    fn call(&self, request: MethodRequest) -> BoxFuture<MethodResponse> {
        Box::pin(self(request))
    }
}

/// The error a typed method handler returns: a status and a JSON payload.
///
/// Any `std::error::Error` converts into a 500 with its message, so `?` works in handlers.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodError {
    status: i32,
    payload: Value,
}

impl MethodError {
    /// An error with a status and `{"message": …}`.
    ///
    /// ```
    /// let e = iot_device::MethodError::new(409, "already rebooting");
    /// # let _ = e;
    /// ```
    pub fn new(status: i32, message: impl Into<String>) -> Self {
        Self {
            status,
            payload: serde_json::json!({ "message": message.into() }),
        }
    }

    /// An error with a status and any JSON payload.
    ///
    /// ```
    /// let e = iot_device::MethodError::with_payload(422, serde_json::json!({ "field": "delay" }));
    /// # let _ = e;
    /// ```
    pub fn with_payload(status: i32, payload: Value) -> Self {
        Self { status, payload }
    }

    /// 400: the request is not acceptable.
    ///
    /// ```no_run
    /// # async fn demo(client: iot_device::DeviceClient) -> iot_device::Result<()> {
    /// client
    ///     .on_method("setDelay", |delay: i64| async move {
    ///         if delay < 0 {
    ///             return Err(iot_device::MethodError::bad_request("delay must not be negative"));
    ///         }
    ///         Ok(serde_json::json!({ "delay": delay }))
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }

    pub(crate) fn into_response(self) -> MethodResponse {
        MethodResponse::new(self.status, &self.payload)
    }
}

impl<E: std::error::Error> From<E> for MethodError {
    fn from(e: E) -> Self {
        Self::new(500, e.to_string())
    }
}

/// Wraps a typed handler: the request payload is deserialized as `Req` (400 when it does not
/// fit), `Ok(resp)` answers 200 with `resp` as JSON, `Err(e)` answers `e`'s status.
pub(crate) fn typed<Req, Resp, F, Fut>(f: F) -> impl MethodHandler
where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
    F: Fn(Req) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, MethodError>> + Send + 'static,
{
    move |request: MethodRequest| {
        let parsed = request.json::<Req>();
        let fut = parsed.map(&f);
        async move {
            match fut {
                Ok(fut) => match fut.await {
                    Ok(resp) => MethodResponse::ok(&resp),
                    Err(e) => e.into_response(),
                },
                Err(e) => {
                    MethodResponse::error(400, &format!("the request payload does not fit: {e}"))
                }
            }
        }
    }
}

/// Sends a method response; implemented by the client's state, so that this module needs
/// nothing from it (and no import loop forms).
pub(crate) trait Respond: Send + Sync + 'static {
    /// Queues the response and resolves on the hub's PUBACK.
    fn respond(
        self: Arc<Self>,
        rid: String,
        response: MethodResponse,
    ) -> BoxFuture<crate::Result<()>>;
}

/// A method request from [`MethodRequests`]; answer it with [`IncomingMethod::respond`].
/// Dropped unanswered, it answers 500.
#[must_use = "an unanswered method request makes the caller wait; it answers 500 when dropped"]
pub struct IncomingMethod {
    request: MethodRequest,
    responder: Weak<dyn Respond>,
    answered: bool,
}

impl std::fmt::Debug for IncomingMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingMethod")
            .field("request", &self.request)
            .field("answered", &self.answered)
            .finish()
    }
}

impl IncomingMethod {
    pub(crate) fn new(request: MethodRequest, responder: Weak<dyn Respond>) -> Self {
        Self {
            request,
            responder,
            answered: false,
        }
    }

    /// The request.
    ///
    /// ```no_run
    /// # async fn demo(client: iot_device::DeviceClient) -> iot_device::Result<()> {
    /// let mut requests = client.method_requests().await?;
    /// if let Some(incoming) = requests.next().await {
    ///     println!("{} with {} payload bytes", incoming.request().name, incoming.request().payload.len());
    ///     incoming.respond(iot_device::MethodResponse::empty(200)).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn request(&self) -> &MethodRequest {
        &self.request
    }

    /// Sends the answer and waits for the hub's PUBACK, at most the operation timeout.
    ///
    /// ```no_run
    /// # async fn demo(client: iot_device::DeviceClient) -> iot_device::Result<()> {
    /// let mut requests = client.method_requests().await?;
    /// if let Some(incoming) = requests.next().await {
    ///     incoming.respond(iot_device::MethodResponse::error(503, "busy")).await?;
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    /// Dropping the future before it resolves withdraws the answer if it was not sent yet;
    /// the request then counts as answered (no automatic 500 follows).
    ///
    /// # Errors
    /// [`ErrorKind::Closed`](crate::ErrorKind::Closed) when the client is gone.
    pub async fn respond(mut self, response: MethodResponse) -> crate::Result<()> {
        self.answered = true;
        let responder = self.responder.upgrade().ok_or_else(crate::Error::closed)?;
        responder.respond(self.request.rid.clone(), response).await
    }
}

impl Drop for IncomingMethod {
    fn drop(&mut self) {
        if !self.answered
            && let Some(responder) = self.responder.upgrade()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let response =
                MethodResponse::error(500, "the method request was dropped without an answer");
            rt.spawn(responder.respond(self.request.rid.clone(), response));
        }
    }
}

/// The stream of method requests that no named handler took.
#[derive(Debug)]
pub struct MethodRequests {
    pub(crate) rx: mpsc::Receiver<IncomingMethod>,
}

impl MethodRequests {
    /// The next request.
    ///
    /// ```no_run
    /// # async fn demo(client: iot_device::DeviceClient) -> iot_device::Result<()> {
    /// let mut requests = client.method_requests().await?;
    /// while let Some(incoming) = requests.next().await {
    ///     incoming.respond(iot_device::MethodResponse::empty(200)).await?;
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    /// Cancel-safe: a request is taken only when this resolves.
    pub async fn next(&mut self) -> Option<IncomingMethod> {
        self.rx.recv().await
    }
}

impl Stream for MethodRequests {
    type Item = IncomingMethod;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().rx.poll_recv(cx)
    }
}
