use crate::{sas::SasError, topic::TopicError};
use std::time::Duration;

/// Why a registration failed. Never contains key or token bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProvisioningError {
    /// The registration id breaks DPS's rules.
    #[error("registration id is invalid: {reason}")]
    InvalidRegistrationId {
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The key could not sign a token.
    #[error("provisioning key: {0}")]
    Key(#[from] SasError),
    /// DPS answered on a topic this client does not understand.
    #[error("provisioning answer topic: {0}")]
    Topic(#[from] TopicError),
    /// DPS answered with a body this client does not understand.
    #[error("provisioning answer is malformed: {0}")]
    Malformed(String),
    /// DPS refused the request (a 3xx or 4xx status other than 429). 401 means the key, the
    /// derived key or the certificate was not accepted; 404 an unknown registration or scope.
    #[error("the provisioning service refused the request with status {status}{}: {message}", error_code.map(|c| format!(" (error code {c})")).unwrap_or_default())]
    Refused {
        /// The status of the answer.
        status: u16,
        /// DPS's error code, when the body had one.
        error_code: Option<u32>,
        /// DPS's message.
        message: String,
    },
    /// The registration finished with status `failed`.
    #[error("the registration failed{}: {}", error_code.map(|c| format!(" with error code {c}")).unwrap_or_default(), message.as_deref().unwrap_or("no reason given"))]
    Failed {
        /// DPS's error code.
        error_code: Option<u32>,
        /// DPS's message.
        message: Option<String>,
    },
    /// The enrollment is disabled.
    #[error("the enrollment is disabled")]
    Disabled,
    /// No answer came in time, or the registration took longer than allowed.
    #[error("no provisioning answer within {0:?}")]
    Timeout(Duration),
    /// The transport failed (filled in by the I/O layer).
    #[error("provisioning transport: {0}")]
    Transport(String),
}

impl ProvisioningError {
    /// Whether trying the whole registration again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Refused { status, .. } => *status >= 500 || *status == 429,
            Self::Timeout(_) | Self::Transport(_) => true,
            _ => false,
        }
    }

    /// The status DPS answered with, when the failure came from an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}
