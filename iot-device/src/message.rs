//! Telemetry messages and cloud-to-device messages.

use bytes::Bytes;
use futures_core::Stream;
use iot_common::MessageProperties;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A device-to-cloud message: a body and its properties.
///
/// ```
/// use iot_device::Message;
/// let m = Message::json(&serde_json::json!({"temperature": 21.5}))?
///     .message_id("m-1")
///     .property("alert", "false");
/// # Ok::<(), iot_device::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub(crate) body: Bytes,
    pub(crate) properties: MessageProperties,
}

impl Message {
    /// A message with an opaque body.
    pub fn new(body: impl Into<Bytes>) -> Self {
        Self {
            body: body.into(),
            properties: MessageProperties::new(),
        }
    }

    /// A JSON body with `$.ct=application/json` and `$.ce=utf-8` (needed for body routing).
    ///
    /// # Errors
    /// [`ErrorKind::Serialization`](crate::ErrorKind::Serialization).
    pub fn json(body: &impl serde::Serialize) -> crate::Result<Self> {
        let bytes = serde_json::to_vec(body)?;
        Ok(Self::new(bytes)
            .content_type("application/json")
            .content_encoding("utf-8"))
    }

    /// Sets `$.mid`.
    pub fn message_id(mut self, id: impl Into<String>) -> Self {
        self.properties.message_id = Some(id.into());
        self
    }

    /// Sets `$.cid`.
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.properties.correlation_id = Some(id.into());
        self
    }

    /// Sets `$.ct`.
    pub fn content_type(mut self, ct: impl Into<String>) -> Self {
        self.properties.content_type = Some(ct.into());
        self
    }

    /// Sets `$.ce`.
    pub fn content_encoding(mut self, ce: impl Into<String>) -> Self {
        self.properties.content_encoding = Some(ce.into());
        self
    }

    /// Adds an application property.
    pub fn property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.custom.push((key.into(), value.into()));
        self
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The properties.
    pub fn properties(&self) -> &MessageProperties {
        &self.properties
    }
}

/// A message from the cloud (or, for modules, routed to an input).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct C2dMessage {
    /// The body.
    pub body: Bytes,
    /// System and application properties.
    pub properties: MessageProperties,
    /// The module input it arrived on (module clients only).
    pub input: Option<String>,
}

impl C2dMessage {
    /// The body deserialized from JSON.
    ///
    /// # Errors
    /// [`ErrorKind::Serialization`](crate::ErrorKind::Serialization).
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> crate::Result<T> {
        Ok(serde_json::from_slice(&self.body)?)
    }
}

/// The stream of cloud-to-device messages; ends when the client closes.
///
/// A message is acknowledged to the hub only when it is taken from here, so the hub keeps
/// (and later redelivers) what the application has not taken. At most `c2d_capacity`
/// messages (default 16) wait here. All streams of a client share one queue.
pub struct C2dMessages {
    pub(crate) inner: crate::inner::Pull<C2dMessage>,
}

impl std::fmt::Debug for C2dMessages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("C2dMessages")
    }
}

impl C2dMessages {
    /// The next message.
    ///
    /// # Cancel safety
    /// Cancel-safe: a message is taken (and acknowledged) only when this resolves.
    pub async fn next(&mut self) -> Option<C2dMessage> {
        futures_util::StreamExt::next(&mut self.inner).await
    }
}

impl Stream for C2dMessages {
    type Item = C2dMessage;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.get_mut().inner).poll_next(cx)
    }
}
