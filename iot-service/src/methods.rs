//! Direct methods.

use crate::client::{Call, Retry, ServiceClient};
use crate::{Error, ErrorKind, Result};
use iot_common::MethodInvocation;
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::time::Duration;

/// A direct-method invocation.
///
/// ```
/// use iot_service::DirectMethodRequest;
/// use std::time::Duration;
/// let req = DirectMethodRequest::new("rebootDevice")
///     .payload(&serde_json::json!({"delay": 5}))?
///     .response_timeout(Duration::from_secs(30));
/// # Ok::<(), iot_service::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct DirectMethodRequest {
    body: MethodInvocation,
}

impl DirectMethodRequest {
    /// A request for `name` with a `null` payload and the default timeouts (response 30 s,
    /// connect 0: the device must be online).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            body: MethodInvocation::new(name, Value::Null),
        }
    }

    /// The payload, serialized as JSON.
    ///
    /// # Errors
    /// [`ErrorKind::Serialization`].
    pub fn payload(mut self, payload: &impl Serialize) -> Result<Self> {
        self.body.payload = serde_json::to_value(payload)?;
        Ok(self)
    }

    /// The payload as JSON.
    pub fn payload_json(mut self, payload: Value) -> Self {
        self.body.payload = payload;
        self
    }

    /// How long the hub waits for the device's answer (5–300 s).
    pub fn response_timeout(mut self, d: Duration) -> Self {
        self.body.response_timeout_in_seconds = Some(d.as_secs());
        self
    }

    /// How long the hub waits for an offline device to connect (0–300 s).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.body.connect_timeout_in_seconds = Some(d.as_secs());
        self
    }

    /// The method name.
    pub fn name(&self) -> &str {
        &self.body.method_name
    }

    pub(crate) fn body(&self) -> &MethodInvocation {
        &self.body
    }
}

/// The device's answer: its status and JSON payload.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[non_exhaustive]
pub struct DirectMethodResult {
    /// The status the device answered with (200, 404, 500, …).
    pub status: i32,
    /// The device's payload.
    #[serde(default)]
    pub payload: Value,
}

impl DirectMethodResult {
    /// The payload deserialized as `T`.
    ///
    /// # Errors
    /// [`ErrorKind::Serialization`].
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        Ok(T::deserialize(&self.payload)?)
    }
}

impl ServiceClient {
    /// Invokes a direct method on a device and returns its answer.
    ///
    /// Not retried once sent (the device may have acted); retried only when the request could
    /// not be sent at all.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a timeout outside the hub's range or a bad name (before
    /// sending); [`ErrorKind::NotFound`] for an unknown device; [`ErrorKind::DeviceNotOnline`]
    /// (404103); [`ErrorKind::Timeout`] when the device did not answer in time (504101).
    ///
    /// # Cancel safety
    /// Dropping the future abandons the request; if it was already sent the hub may still
    /// apply it, exactly as after a timeout. The device may already be running the method; it is not retried for you.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn example(service: iot_service::ServiceClient) -> Result<(), iot_service::Error> {
    /// use iot_service::DirectMethodRequest;
    /// use std::time::Duration;
    /// let request = DirectMethodRequest::new("rebootDevice")
    ///     .payload_json(serde_json::json!({ "delay": 5 }))
    ///     .response_timeout(Duration::from_secs(30));
    /// let answer = service.invoke_method("myDevice", &request).await?;
    /// println!("{} {}", answer.status, answer.payload);
    /// # Ok(()) }
    /// ```
    pub async fn invoke_method(
        &self,
        device_id: &str,
        request: &DirectMethodRequest,
    ) -> Result<DirectMethodResult> {
        self.invoke(vec!["twins", device_id, "methods"], request)
            .await
    }

    /// Invokes a direct method on a module.
    ///
    /// # Errors
    /// As [`ServiceClient::invoke_method`].
    ///
    /// # Cancel safety
    /// Dropping the future abandons the request; if it was already sent the hub may still
    /// apply it, exactly as after a timeout. The module may already be running the method; it is not retried for you.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn example(service: iot_service::ServiceClient) -> Result<(), iot_service::Error> {
    /// use iot_service::DirectMethodRequest;
    /// let answer = service
    ///     .invoke_module_method("myDevice", "thermostat", &DirectMethodRequest::new("getMaxMinReport"))
    ///     .await?;
    /// println!("{}", answer.status);
    /// # Ok(()) }
    /// ```
    pub async fn invoke_module_method(
        &self,
        device_id: &str,
        module_id: &str,
        request: &DirectMethodRequest,
    ) -> Result<DirectMethodResult> {
        self.invoke(
            vec!["twins", device_id, "modules", module_id, "methods"],
            request,
        )
        .await
    }

    async fn invoke(
        &self,
        path: Vec<&str>,
        request: &DirectMethodRequest,
    ) -> Result<DirectMethodResult> {
        let body = request.body();
        body.validate()
            .map_err(|e| Error::new(ErrorKind::InvalidInput, e.to_string()))?;
        // The hub answers within response + connect timeout; leave wire time on top.
        let timeout = Duration::from_secs(body.response_timeout() + body.connect_timeout() + 15);
        let mut call = Call::new(Method::POST, path)
            .json(body)?
            .retry(Retry::ConnectOnly);
        call.timeout = Some(timeout);
        self.send(call).await?.json()
    }
}
