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
    ///
    /// ```
    /// let m = iot_device::Message::new(&b"\x01\x02"[..]);
    /// assert_eq!(m.body().len(), 2);
    /// ```
    pub fn new(body: impl Into<Bytes>) -> Self {
        Self {
            body: body.into(),
            properties: MessageProperties::new(),
        }
    }

    /// A JSON body with `$.ct=application/json` and `$.ce=utf-8` (needed for body routing).
    ///
    /// ```
    /// let m = iot_device::Message::json(&serde_json::json!({ "t": 21 }))?;
    /// assert_eq!(m.properties().content_type.as_deref(), Some("application/json"));
    /// # Ok::<(), iot_device::Error>(())
    /// ```
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
    ///
    /// ```
    /// let m = iot_device::Message::new("x").message_id("reading-1");
    /// assert_eq!(m.properties().message_id.as_deref(), Some("reading-1"));
    /// ```
    pub fn message_id(mut self, id: impl Into<String>) -> Self {
        self.properties.message_id = Some(id.into());
        self
    }

    /// Sets `$.cid`.
    ///
    /// ```
    /// let m = iot_device::Message::new("x").correlation_id("req-7");
    /// assert_eq!(m.properties().correlation_id.as_deref(), Some("req-7"));
    /// ```
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.properties.correlation_id = Some(id.into());
        self
    }

    /// Sets `$.ct`.
    ///
    /// ```
    /// let m = iot_device::Message::new("a,b").content_type("text/csv");
    /// assert_eq!(m.properties().content_type.as_deref(), Some("text/csv"));
    /// ```
    pub fn content_type(mut self, ct: impl Into<String>) -> Self {
        self.properties.content_type = Some(ct.into());
        self
    }

    /// Sets `$.ce`.
    ///
    /// ```
    /// let m = iot_device::Message::new("x").content_encoding("utf-8");
    /// assert_eq!(m.properties().content_encoding.as_deref(), Some("utf-8"));
    /// ```
    pub fn content_encoding(mut self, ce: impl Into<String>) -> Self {
        self.properties.content_encoding = Some(ce.into());
        self
    }

    /// Adds an application property.
    ///
    /// ```
    /// let m = iot_device::Message::new("x").property("alert", "true");
    /// assert_eq!(m.properties().custom, vec![("alert".to_owned(), "true".to_owned())]);
    /// ```
    pub fn property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.custom.push((key.into(), value.into()));
        self
    }

    /// The body.
    ///
    /// ```
    /// let m = iot_device::Message::new("hello");
    /// assert_eq!(m.body().as_ref(), b"hello");
    /// ```
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The properties.
    ///
    /// ```
    /// let m = iot_device::Message::new("x").message_id("1");
    /// assert!(m.properties().custom.is_empty());
    /// ```
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
    /// ```no_run
    /// # async fn demo(client: iot_device::DeviceClient) -> iot_device::Result<()> {
    /// #[derive(serde::Deserialize)]
    /// struct Command { action: String }
    /// let mut inbox = client.c2d_messages().await?;
    /// if let Some(message) = inbox.next().await {
    ///     let command: Command = message.json()?;
    ///     println!("{}", command.action);
    /// }
    /// # Ok(()) }
    /// ```
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
    /// ```no_run
    /// # async fn demo(client: iot_device::DeviceClient) -> iot_device::Result<()> {
    /// let mut inbox = client.c2d_messages().await?;
    /// while let Some(message) = inbox.next().await {
    ///     println!("{:?}", message.body);
    /// }
    /// # Ok(()) }
    /// ```
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
