//! The service client's error: a kind, a retry classification, the HTTP status, the hub's
//! error code and the request id.

use iot_common::{ErrorCode, HubErrorBody};
use std::fmt;

/// What went wrong, coarsely.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Bad input caught before sending (timeout out of range, invalid method name, …).
    InvalidInput,
    /// Bad configuration (connection string, CA file, endpoint).
    Configuration,
    /// 401/403: bad key, expired token, or a policy without the needed right.
    Unauthorized,
    /// 404: the device, module or job does not exist.
    NotFound,
    /// 404103: the device is not connected or has not subscribed to methods.
    DeviceNotOnline,
    /// 504101, or no HTTP answer in time: the operation may have been applied.
    Timeout,
    /// 412: the `If-Match` etag is stale.
    PreconditionFailed,
    /// 409: the identity or job already exists.
    Conflict,
    /// 429.
    Throttled,
    /// Any other error answer from the hub (see [`Error::status`]); named as the device
    /// client's kind.
    Hub,
    /// The hub could not be reached, or the connection broke.
    Connection,
    /// The hub's certificate was refused (untrusted, expired, or for another name). Not
    /// retried: it fails the same way until the trust configuration changes.
    Certificate,
    /// A body could not be serialized or deserialized.
    Serialization,
    /// 403004 DeviceMaximumQueueDepthExceeded: the device already has the most pending
    /// cloud-to-device messages the hub holds (50). Retryable: the queue drains as the device
    /// takes messages or they expire.
    QueueFull,
    /// 413: the message (a cloud-to-device body over 64 KB) is larger than the hub accepts.
    MessageTooLarge,
    /// The answer's body is larger than
    /// [`ServiceClientOptions::max_response_bytes`](crate::ServiceClientOptions::max_response_bytes)
    /// (32 MiB by default, far above any answer the hub sends). Not retried.
    ResponseTooLarge,
}

/// The error type of this crate. Its `Display` never contains keys, tokens or bodies.
pub struct Error(Box<Inner>);

struct Inner {
    kind: ErrorKind,
    status: Option<u16>,
    hub: Option<HubErrorBody>,
    message: String,
    request_id: Option<String>,
    /// The innermost cause of a transport failure, shown by `Display`.
    cause: Option<String>,
    /// What to do about it, when known.
    hint: Option<String>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// A `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self(Box::new(Inner {
            kind,
            status: None,
            hub: None,
            message: message.into(),
            request_id: None,
            cause: None,
            hint: None,
            source: None,
        }))
    }

    /// A failure to exchange a request with `endpoint` (`host:port`): `Display` names the
    /// endpoint and the innermost cause, with a hint where the cause is a common one.
    pub(crate) fn transport(
        kind: ErrorKind,
        message: &str,
        endpoint: &str,
        e: reqwest::Error,
    ) -> Self {
        let kind = if iot_common::hint::is_certificate_failure(&e) {
            ErrorKind::Certificate
        } else {
            kind
        };
        let mut err = Self::new(kind, format!("{message} at {endpoint}"));
        err.0.cause = Some(iot_common::hint::root_cause(&e));
        err.0.hint =
            iot_common::hint::for_transport(&e, endpoint, iot_common::hint::Client::Service);
        err.with_source(e)
    }

    /// Adds the hint for an error answer from `endpoint`, if its status has one.
    pub(crate) fn with_status_hint(mut self, endpoint: &str) -> Self {
        if let Some(status) = self.0.status {
            self.0.hint = iot_common::hint::for_status(status, endpoint);
        }
        self
    }

    pub(crate) fn with_source(mut self, e: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.0.source = Some(Box::new(e));
        self
    }

    pub(crate) fn with_request_id(mut self, id: &str) -> Self {
        self.0.request_id = Some(id.to_owned());
        self
    }

    /// An error answer from the hub.
    pub(crate) fn from_response(status: u16, header_code: Option<&str>, body: &str) -> Self {
        let hub = HubErrorBody::parse(body, header_code);
        let kind = match (status, hub.code) {
            (_, Some(ErrorCode::DeviceNotOnline)) => ErrorKind::DeviceNotOnline,
            (_, Some(ErrorCode::GatewayTimeout)) | (504 | 408, _) => ErrorKind::Timeout,
            (401 | 403, _) => ErrorKind::Unauthorized,
            (404, _) => ErrorKind::NotFound,
            (409, _) => ErrorKind::Conflict,
            (412, _) => ErrorKind::PreconditionFailed,
            (429, _) => ErrorKind::Throttled,
            (400, _) => ErrorKind::InvalidInput,
            _ => ErrorKind::Hub,
        };
        let message = if hub.message.is_empty() {
            format!("the hub answered {status}")
        } else {
            hub.message.clone()
        };
        let mut e = Self::new(kind, message);
        e.0.status = Some(status);
        e.0.hub = Some(hub);
        e
    }

    /// The hub's refusal given as an error code alone (AMQP dispositions carry no HTTP
    /// status): the status is the code's own.
    pub(crate) fn from_code(code: ErrorCode, message: impl Into<String>) -> Self {
        let kind = match code {
            ErrorCode::DeviceMaximumQueueDepthExceeded => ErrorKind::QueueFull,
            ErrorCode::MessageTooLarge => ErrorKind::MessageTooLarge,
            c => match c.http_status() {
                401 | 403 => ErrorKind::Unauthorized,
                404 => ErrorKind::NotFound,
                429 => ErrorKind::Throttled,
                400 => ErrorKind::InvalidInput,
                _ => ErrorKind::Hub,
            },
        };
        let message = message.into();
        let mut e = Self::new(kind, message.clone());
        e.0.status = Some(code.http_status());
        let mut hub = HubErrorBody::default();
        hub.code = Some(code);
        hub.numeric_code = Some(code.code());
        hub.name = Some(code.name().to_owned());
        hub.message = message;
        e.0.hub = Some(hub);
        e
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// The HTTP status, when the hub answered.
    pub fn status(&self) -> Option<u16> {
        self.0.status
    }

    /// The hub's error code (e.g. `ErrorCode::DeviceNotOnline`, 404103), when known.
    pub fn error_code(&self) -> Option<ErrorCode> {
        self.0.hub.as_ref().and_then(|h| h.code)
    }

    /// The hub's numeric error code as sent.
    pub fn numeric_code(&self) -> Option<u32> {
        self.0.hub.as_ref().and_then(|h| h.numeric_code)
    }

    /// The hub's tracking id, for support requests.
    pub fn tracking_id(&self) -> Option<&str> {
        self.0.hub.as_ref().and_then(|h| h.tracking_id.as_deref())
    }

    /// The `Request-Id` this client sent.
    pub fn request_id(&self) -> Option<&str> {
        self.0.request_id.as_deref()
    }

    /// What to do about this error, when the cause is a common one (an untrusted certificate,
    /// nothing listening at the endpoint, refused credentials). Also part of `Display`.
    pub fn hint(&self) -> Option<&str> {
        self.0.hint.as_deref()
    }

    /// `true` when trying again later may succeed: connection failures, throttling,
    /// timeouts and 5xx answers.
    pub fn is_retryable(&self) -> bool {
        match self.0.kind {
            ErrorKind::Connection
            | ErrorKind::Throttled
            | ErrorKind::Timeout
            | ErrorKind::QueueFull => true,
            ErrorKind::Hub => self
                .0
                .status
                .is_some_and(iot_common::status::is_retryable_status),
            _ => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.message)?;
        match (
            self.0.status,
            self.0.hub.as_ref().and_then(|h| h.name.as_deref()),
        ) {
            (Some(s), Some(name)) => write!(f, " ({s} {name})")?,
            (Some(s), None) => write!(f, " ({s})")?,
            _ => {}
        }
        if let Some(cause) = &self.0.cause {
            write!(f, ": {cause}")?;
        }
        if let Some(hint) = &self.0.hint {
            write!(f, ". Hint: {hint}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.0.kind)
            .field("status", &self.0.status)
            .field("error_code", &self.numeric_code())
            .field("message", &self.0.message)
            .field("request_id", &self.0.request_id)
            .field("source", &self.0.source.as_ref().map(|s| s.to_string()))
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0
            .source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

impl From<iot_common::ConnectionStringError> for Error {
    fn from(e: iot_common::ConnectionStringError) -> Self {
        Self::new(ErrorKind::Configuration, e.to_string())
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Self::new(
            ErrorKind::Serialization,
            "a body did not match the expected JSON",
        )
        .with_source(e)
    }
}
