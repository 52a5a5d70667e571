//! Errors: the emulator's own (start-up), and the hub's answers to API calls.

use iot_common::ErrorCode;
use serde_json::Value;

/// Why the emulator could not start or stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmulatorError {
    /// A socket or file operation failed.
    #[error("i/o error")]
    Io(#[from] std::io::Error),
    /// The TLS material could not be built or loaded.
    #[error("tls setup failed: {0}")]
    Tls(String),
    /// The configuration is not usable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The state or seed file could not be read.
    #[error("state file error: {0}")]
    State(String),
    /// A listener could not be bound (most often: the port is in use).
    #[error("cannot listen for {what} on {addr}: {source}{}", bind_hint(*.addr, .flag, .source))]
    Bind {
        /// What the listener serves, e.g. "MQTT over TLS".
        what: &'static str,
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The command-line flag that sets this port.
        flag: &'static str,
        /// The operating system's error.
        source: std::io::Error,
    },
}

fn bind_hint(addr: std::net::SocketAddr, flag: &str, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            ". Hint: another process (perhaps another emulator) uses port {}; stop it, or pick another port with {flag} (0 picks a free one)",
            addr.port()
        ),
        std::io::ErrorKind::PermissionDenied => {
            format!(". Hint: ports below 1024 need privileges; pick another port with {flag}")
        }
        std::io::ErrorKind::AddrNotAvailable => {
            ". Hint: this machine has no such address; check --bind".to_owned()
        }
        _ => String::new(),
    }
}

/// An error the hub answers an API call with: an error code, a message, optional `info`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HubRefusal {
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
    pub(crate) info: Option<Value>,
}

impl HubRefusal {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            info: None,
        }
    }

    pub(crate) fn with_info(mut self, info: Value) -> Self {
        self.info = Some(info);
        self
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ArgumentInvalid, message)
    }

    pub(crate) fn device_not_found(id: &str) -> Self {
        Self::new(
            ErrorCode::DeviceNotFound,
            format!("Device {id} could not be found."),
        )
    }

    pub(crate) fn module_not_found(device: &str, module: &str) -> Self {
        Self::new(
            ErrorCode::ModuleNotFound,
            format!("Module {module} on device {device} could not be found."),
        )
    }

    pub(crate) fn unauthorized() -> Self {
        Self::new(ErrorCode::IotHubUnauthorizedAccess, "Unauthorized")
    }

    pub(crate) fn precondition_failed() -> Self {
        Self::new(
            ErrorCode::PreconditionFailed,
            "Precondition failed: the ETag does not match.",
        )
    }
}

impl From<iot_common::TwinError> for HubRefusal {
    fn from(e: iot_common::TwinError) -> Self {
        let code = match e {
            iot_common::TwinError::TooLarge { .. } => ErrorCode::MessageTooLarge,
            _ => ErrorCode::ArgumentInvalid,
        };
        Self::new(code, e.to_string())
    }
}

/// An error the hub answered an in-process API call with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code:?} ({}): {message}", code.code())]
#[non_exhaustive]
pub struct EmulatorApiError {
    /// The hub's error code.
    pub code: ErrorCode,
    /// Its message.
    pub message: String,
}

impl From<HubRefusal> for EmulatorApiError {
    fn from(e: HubRefusal) -> Self {
        Self {
            code: e.code,
            message: e.message,
        }
    }
}
