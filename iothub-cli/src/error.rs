//! The CLI's error: one line for stderr and an exit code (see `cli::EXIT_CODES`).

use iot_service::ErrorKind;
use std::fmt;

/// The hub refused the request (4xx).
pub const EXIT_REFUSED: u8 = 1;
/// Bad flags, input or configuration.
pub const EXIT_USAGE: u8 = 2;
/// Connection, TLS or timeout.
pub const EXIT_CONNECTION: u8 = 3;
/// A 5xx or an unexpected answer.
pub const EXIT_HUB_FAILED: u8 = 4;
/// Not supported against this hub.
pub const EXIT_UNSUPPORTED: u8 = 5;

/// Everything a command can fail with.
#[derive(Debug)]
pub enum CliError {
    /// A failed `iot_service` call; its `Display` has the status, code name and hint.
    Service(iot_service::Error),
    /// An error answer to one of the emulator-only requests.
    Answer {
        status: u16,
        hub: iot_common::HubErrorBody,
    },
    /// The hub could not be reached, or did not answer in time.
    Transport(String),
    /// Bad input or configuration.
    Usage(String),
    /// The request needs something this hub (or this SDK) does not offer.
    Unsupported(String),
    /// The hub answered something this tool cannot read.
    Unexpected(String),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Service(e) => match e.kind() {
                ErrorKind::Configuration => EXIT_USAGE,
                // Caught by the SDK before anything was sent.
                ErrorKind::InvalidInput if e.status().is_none() => EXIT_USAGE,
                ErrorKind::Connection | ErrorKind::Certificate | ErrorKind::Timeout => {
                    EXIT_CONNECTION
                }
                _ => status_code(e.status()),
            },
            Self::Answer { status, .. } => status_code(Some(*status)),
            Self::Transport(_) => EXIT_CONNECTION,
            Self::Usage(_) => EXIT_USAGE,
            Self::Unsupported(_) => EXIT_UNSUPPORTED,
            Self::Unexpected(_) => EXIT_HUB_FAILED,
        }
    }

    /// The hub's numeric error code (e.g. 404103), when it sent one.
    fn numeric_code(&self) -> Option<u32> {
        match self {
            Self::Service(e) => e.numeric_code(),
            Self::Answer { hub, .. } => hub.numeric_code,
            _ => None,
        }
    }
}

fn status_code(status: Option<u16>) -> u8 {
    match status {
        Some(400..=499) => EXIT_REFUSED,
        _ => EXIT_HUB_FAILED,
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(code) = self.numeric_code() {
            write!(f, "[{code}] ")?;
        }
        match self {
            Self::Service(e) => write!(f, "{e}"),
            Self::Answer { status, hub } => {
                let message = if hub.message.is_empty() {
                    "the hub refused the request"
                } else {
                    hub.message.as_str()
                };
                match &hub.name {
                    Some(name) => write!(f, "{message} ({status} {name})"),
                    None => write!(f, "{message} ({status})"),
                }
            }
            Self::Transport(m) | Self::Usage(m) | Self::Unsupported(m) | Self::Unexpected(m) => {
                f.write_str(m)
            }
        }
    }
}

impl From<iot_service::Error> for CliError {
    fn from(e: iot_service::Error) -> Self {
        Self::Service(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_status() {
        let refused = CliError::Answer {
            status: 404,
            hub: iot_common::HubErrorBody::parse("", Some("DeviceNotFound")),
        };
        assert_eq!(refused.exit_code(), EXIT_REFUSED);
        assert!(refused.to_string().contains("404 DeviceNotFound"));
        let failed = CliError::Answer {
            status: 503,
            hub: iot_common::HubErrorBody::default(),
        };
        assert_eq!(failed.exit_code(), EXIT_HUB_FAILED);
        assert_eq!(CliError::Usage("x".into()).exit_code(), EXIT_USAGE);
        assert_eq!(
            CliError::Unsupported("x".into()).exit_code(),
            EXIT_UNSUPPORTED
        );
    }
}
