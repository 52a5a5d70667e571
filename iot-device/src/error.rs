//! The device client's error: a kind, a retry classification, and the hub's status.

use std::fmt;

/// What went wrong, coarsely; see [`Error::is_retryable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Bad input caught before anything was sent (payload not JSON, patch over limits, …).
    InvalidInput,
    /// Bad configuration: malformed connection string, unusable CA file, …
    Configuration,
    /// The hub refused the credentials (CONNACK 4/5): a wrong key, an expired token, or a
    /// disabled device. Not retried by `connect`.
    Unauthorized,
    /// The hub's certificate was refused (untrusted, expired, or for another name). Not
    /// retried: it fails the same way until the trust configuration changes.
    Certificate,
    /// The connection failed or dropped.
    Connection,
    /// No answer within the operation timeout; the operation may have been applied.
    Timeout,
    /// The hub answered with an error status (see [`Error::status`]).
    Hub,
    /// A payload could not be serialized or deserialized.
    Serialization,
    /// The client was closed.
    Closed,
    /// The offline telemetry queue was full; retry later or raise its bounds.
    QueueFull,
    /// The Device Provisioning Service did not assign the device: the registration failed
    /// or the enrollment is disabled.
    Provisioning,
}

/// The error type of this crate. Its `Display` never contains keys, tokens or payloads.
pub struct Error {
    kind: ErrorKind,
    status: Option<u16>,
    message: String,
    /// The innermost cause of a connection failure, shown by `Display`.
    cause: Option<String>,
    /// What to do about it, when known.
    hint: Option<String>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// A `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            status: None,
            message: message.into(),
            cause: None,
            hint: None,
            source: None,
        }
    }

    /// A failed connection (attempt) of `device_id` to `endpoint` (`host:port`): `Display`
    /// names both, the innermost cause, and a hint where the cause is a common one.
    pub(crate) fn connection(
        kind: ErrorKind,
        device_id: &str,
        endpoint: &str,
        e: &(dyn std::error::Error + 'static),
    ) -> Self {
        use iot_common::hint;
        let kind = if hint::is_certificate_failure(e) {
            ErrorKind::Certificate
        } else {
            kind
        };
        let mut err = Self::new(
            kind,
            format!("device '{device_id}' could not connect to {endpoint}"),
        );
        err.cause = Some(hint::root_cause(e));
        err.hint = if kind == ErrorKind::Unauthorized {
            Some(hint::device_refused(device_id, endpoint))
        } else {
            hint::for_transport(e, endpoint, hint::Client::Device)
        };
        err
    }

    pub(crate) fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    pub(crate) fn hub(status: u16, message: impl Into<String>) -> Self {
        Self {
            status: Some(status),
            ..Self::new(ErrorKind::Hub, message)
        }
    }

    pub(crate) fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    pub(crate) fn timeout(what: &str) -> Self {
        Self::new(ErrorKind::Timeout, format!("{what} timed out"))
    }

    pub(crate) fn closed() -> Self {
        Self::new(ErrorKind::Closed, "the client is closed")
    }

    /// The kind of failure.
    ///
    /// ```no_run
    /// # async fn demo(client: iot_device::DeviceClient) -> iot_device::Result<()> {
    /// use iot_device::ErrorKind;
    /// match client.get_twin().await {
    ///     Err(e) if e.kind() == ErrorKind::Timeout => println!("no answer in time: {e}"),
    ///     Err(e) => return Err(e),
    ///     Ok(twin) => println!("{:?}", twin.reported.version),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The status the hub answered with (twin operations), when there is one.
    ///
    /// ```no_run
    /// # async fn demo(client: iot_device::DeviceClient) -> iot_device::Result<()> {
    /// if let Err(e) = client.update_reported(&serde_json::json!({ "a": 1 })).await {
    ///     println!("hub status: {:?}", e.status());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// What to do about this error, when the cause is a common one (an untrusted certificate,
    /// nothing listening at the endpoint, refused credentials). Also part of `Display`.
    ///
    /// ```no_run
    /// # async fn demo() -> iot_device::Result<()> {
    /// use iot_device::{DeviceClient, DeviceClientOptions};
    /// if let Err(e) = DeviceClient::from_connection_string("HostName=localhost;DeviceId=d;SharedAccessKey=AAAA", DeviceClientOptions::new()).await {
    ///     if let Some(hint) = e.hint() {
    ///         eprintln!("what to do: {hint}");
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// `true` when trying again later may succeed: connection failures, timeouts, and hub
    /// answers 408, 429 and 5xx.
    ///
    /// ```no_run
    /// # async fn demo(client: iot_device::DeviceClient) -> iot_device::Result<()> {
    /// let message = iot_device::Message::new("reading");
    /// if let Err(e) = client.send_telemetry(message.clone()).await {
    ///     if e.is_retryable() {
    ///         client.send_telemetry(message).await?;
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn is_retryable(&self) -> bool {
        match self.kind {
            ErrorKind::Connection | ErrorKind::Timeout | ErrorKind::QueueFull => true,
            ErrorKind::Hub => self
                .status
                .is_some_and(iot_common::status::is_retryable_status),
            _ => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(s) = self.status {
            write!(f, " (status {s})")?;
        }
        if let Some(cause) = &self.cause {
            write!(f, ": {cause}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, ". Hint: {hint}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("status", &self.status)
            .field("message", &self.message)
            .field("cause", &self.cause)
            .field("source", &self.source.as_ref().map(|s| s.to_string()))
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

impl From<iot_common::ConnectionStringError> for Error {
    fn from(e: iot_common::ConnectionStringError) -> Self {
        Self::new(ErrorKind::Configuration, e.to_string())
    }
}

impl From<iot_common::provisioning::ProvisioningError> for Error {
    fn from(e: iot_common::provisioning::ProvisioningError) -> Self {
        crate::provisioning::into_error(e)
    }
}

impl From<iot_common::TwinError> for Error {
    fn from(e: iot_common::TwinError) -> Self {
        Self::new(ErrorKind::InvalidInput, e.to_string())
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Self::new(
            ErrorKind::Serialization,
            "payload is not valid JSON for this type",
        )
        .with_source(e)
    }
}
