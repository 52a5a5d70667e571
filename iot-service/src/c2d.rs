//! Cloud-to-device messages: [`C2dMessage`] and [`ServiceClient::send_c2d`], over AMQP to the
//! hub's `/messages/devicebound` node.

use crate::{Error, ErrorCode, ErrorKind, Result, ServiceClient};
use bytes::Bytes;
use fe2o3_amqp::types::definitions::{self, AmqpError, ErrorCondition};
use fe2o3_amqp::types::messaging::{
    ApplicationProperties, Message, MessageId, Outcome, Properties,
};
use fe2o3_amqp::types::primitives::{Binary, SimpleValue, Symbol, Timestamp};
use std::time::SystemTime;

/// The node C2D messages are sent to.
const DEVICEBOUND: &str = "/messages/devicebound";

/// Which outcomes of a message produce a feedback record (`iothub-ack`), read with
/// [`ServiceClient::feedback`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FeedbackRequest {
    /// No feedback (the hub's default).
    #[default]
    None,
    /// A record when the device completes the message (`Success`).
    Positive,
    /// A record when the message is not completed (expired, rejected, too many deliveries,
    /// purged).
    Negative,
    /// Both.
    Full,
}

impl FeedbackRequest {
    fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Positive => "positive",
            Self::Negative => "negative",
            Self::Full => "full",
        }
    }
}

/// A cloud-to-device message: a body (at most 64 KB, the hub's limit), its system properties
/// and application properties.
///
/// ```
/// use iot_service::{C2dMessage, FeedbackRequest};
/// use std::time::{Duration, SystemTime};
/// let msg = C2dMessage::new("reboot")
///     .message_id("cmd-42")
///     .correlation_id("job-7")
///     .content_type("text/plain")
///     .content_encoding("utf-8")
///     .expires_at(SystemTime::now() + Duration::from_secs(600))
///     .feedback(FeedbackRequest::Full)
///     .property("priority", "high");
/// assert_eq!(msg.body().as_ref(), b"reboot");
/// ```
#[derive(Clone, Default)]
pub struct C2dMessage {
    body: Bytes,
    message_id: Option<String>,
    correlation_id: Option<String>,
    content_type: Option<String>,
    content_encoding: Option<String>,
    expiry: Option<SystemTime>,
    feedback: FeedbackRequest,
    properties: Vec<(String, String)>,
}

impl std::fmt::Debug for C2dMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Bodies and property values may be confidential: sizes and ids only.
        f.debug_struct("C2dMessage")
            .field("body_len", &self.body.len())
            .field("message_id", &self.message_id)
            .field("feedback", &self.feedback)
            .field("properties", &self.properties.len())
            .finish_non_exhaustive()
    }
}

impl C2dMessage {
    /// A message with `body`. Without [`C2dMessage::message_id`] a random UUID is used.
    pub fn new(body: impl Into<Bytes>) -> Self {
        Self {
            body: body.into(),
            ..Self::default()
        }
    }

    /// The message id (`$.mid` on the device); feedback records name it.
    pub fn message_id(mut self, id: impl Into<String>) -> Self {
        self.message_id = Some(id.into());
        self
    }

    /// The correlation id (`$.cid`).
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// The content type (`$.ct`).
    pub fn content_type(mut self, ct: impl Into<String>) -> Self {
        self.content_type = Some(ct.into());
        self
    }

    /// The content encoding (`$.ce`).
    pub fn content_encoding(mut self, ce: impl Into<String>) -> Self {
        self.content_encoding = Some(ce.into());
        self
    }

    /// When the hub drops the message if the device has not completed it (default: the
    /// hub's time to live, 1 hour unless configured).
    pub fn expires_at(mut self, at: SystemTime) -> Self {
        self.expiry = Some(at);
        self
    }

    /// Which outcomes produce feedback (`iothub-ack`).
    pub fn feedback(mut self, request: FeedbackRequest) -> Self {
        self.feedback = request;
        self
    }

    /// An application property.
    pub fn property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.push((key.into(), value.into()));
        self
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    fn to_amqp(&self, device_id: &str) -> Message<fe2o3_amqp::types::messaging::Data> {
        let message_id = self
            .message_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let expiry = self.expiry.map(|t| {
            let ms = match t.duration_since(SystemTime::UNIX_EPOCH) {
                Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
                Err(_) => 0,
            };
            Timestamp::from_milliseconds(ms)
        });
        let mut app = ApplicationProperties::builder();
        if self.feedback != FeedbackRequest::None {
            app = app.insert(
                "iothub-ack",
                SimpleValue::String(self.feedback.as_str().to_owned()),
            );
        }
        for (k, v) in &self.properties {
            app = app.insert(k.clone(), SimpleValue::String(v.clone()));
        }
        Message::builder()
            .properties(Properties {
                to: Some(format!("/devices/{device_id}/messages/devicebound")),
                message_id: Some(MessageId::String(message_id)),
                correlation_id: self.correlation_id.clone().map(MessageId::String),
                content_type: self.content_type.clone().map(Symbol::from),
                content_encoding: self.content_encoding.clone().map(Symbol::from),
                absolute_expiry_time: expiry,
                ..Default::default()
            })
            .application_properties(app.build())
            .data(Binary::from(self.body.to_vec()))
            .build()
    }
}

impl ServiceClient {
    /// Sends a cloud-to-device message to a device; resolves when the hub has queued it
    /// (disposition `accepted`). The hub delivers it when the device next takes messages and
    /// reports the outcome as feedback if [`C2dMessage::feedback`] asked for it.
    ///
    /// The first call opens the client's AMQP connection (port 5671, see
    /// [`ServiceClientOptions::amqp_port`](crate::ServiceClientOptions::amqp_port)); later
    /// calls share it. The hub has no C2D for modules, so there is no module variant.
    ///
    /// ```no_run
    /// # async fn demo(svc: iot_service::ServiceClient) -> iot_service::Result<()> {
    /// use iot_service::{C2dMessage, FeedbackRequest};
    /// svc.send_c2d("myDevice", C2dMessage::new("hello").feedback(FeedbackRequest::Full))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    /// Not cancel-safe: once the call has queued the message for the connection, dropping
    /// the future does not stop the send, so the message may reach the device. Send it again
    /// with the same [`C2dMessage::message_id`] if in doubt.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] (404001 DeviceNotFound), [`ErrorKind::QueueFull`] (403004, 50
    /// messages pending), [`ErrorKind::MessageTooLarge`] (body over 64 KB),
    /// [`ErrorKind::Unauthorized`] (a policy without ServiceConnect), [`ErrorKind::Timeout`]
    /// (no answer within twice the operation timeout: the message may have been queued),
    /// [`ErrorKind::Connection`] (retryable).
    pub async fn send_c2d(&self, device_id: &str, message: C2dMessage) -> Result<()> {
        if device_id.is_empty() || device_id.contains('/') {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "a device id is not empty and has no '/'",
            ));
        }
        let amqp = self.amqp()?;
        match amqp.send(DEVICEBOUND, message.to_amqp(device_id)).await {
            Ok(Outcome::Accepted(_)) => Ok(()),
            Ok(Outcome::Rejected(r)) => Err(refused(device_id, r.error)),
            Ok(other) => Err(Error::new(
                ErrorKind::Hub,
                format!("the hub did not accept the message ({other:?})"),
            )),
            Err(e) if e.to_string().contains("MessageSizeExceeded") => Err(Error::from_code(
                ErrorCode::MessageTooLarge,
                "the message is larger than the link accepts",
            )),
            Err(e) => Err(e),
        }
    }
}

/// The hub's `rejected` disposition as this crate's error.
fn refused(device_id: &str, error: Option<definitions::Error>) -> Error {
    let Some(e) = error else {
        return Error::new(ErrorKind::Hub, "the hub rejected the message");
    };
    let description = e.description.clone().unwrap_or_default();
    let code = match &e.condition {
        ErrorCondition::AmqpError(AmqpError::NotFound) => Some(ErrorCode::DeviceNotFound),
        ErrorCondition::AmqpError(AmqpError::UnauthorizedAccess) => {
            return Error::new(ErrorKind::Unauthorized, description);
        }
        ErrorCondition::Custom(sym) => sym
            .as_str()
            .strip_prefix("com.microsoft:")
            .and_then(|n| n.parse().ok())
            .and_then(ErrorCode::from_code),
        _ => None,
    }
    .or_else(|| ErrorCode::from_name(&description));
    match code {
        Some(ErrorCode::DeviceNotFound) => Error::from_code(
            ErrorCode::DeviceNotFound,
            format!("device {device_id} is not registered"),
        ),
        Some(code) => Error::from_code(code, description),
        None => Error::new(
            ErrorKind::Hub,
            format!(
                "the hub rejected the message: {:?} {description}",
                e.condition
            ),
        ),
    }
}
