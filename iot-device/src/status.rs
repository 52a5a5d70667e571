//! The connection status and its change stream.

use std::fmt;
use tokio::sync::watch;

/// Why the connection dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The network or the hub closed the connection.
    ConnectionLost,
    /// The client reconnects with a fresh SAS token.
    TokenRenewal,
    /// The hub refused a reconnect.
    Refused,
}

/// Why the client stopped for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// [`DeviceClient::close`](crate::DeviceClient::close) or the last handle was dropped.
    ClientClosed,
    /// The hub refused the credentials and they cannot be renewed.
    Unauthorized,
    /// `max_reconnect_attempts` failed reconnects in a row.
    RetriesExhausted,
}

/// The state of the client's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionStatus {
    /// Opening the first connection.
    Connecting,
    /// Connected.
    Connected,
    /// Not connected; the client is reconnecting (`attempt` counts failed tries in a row).
    Disconnected {
        /// Why.
        reason: DisconnectReason,
        /// Failed reconnects so far.
        attempt: u32,
    },
    /// Stopped; operations fail with [`ErrorKind::Closed`](crate::ErrorKind::Closed).
    Closed {
        /// Why.
        reason: CloseReason,
    },
}

impl fmt::Display for ConnectionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connecting => f.write_str("connecting"),
            Self::Connected => f.write_str("connected"),
            Self::Disconnected { reason, attempt } => {
                write!(f, "disconnected ({reason:?}), reconnect attempt {attempt}")
            }
            Self::Closed { reason } => write!(f, "closed ({reason:?})"),
        }
    }
}

/// A stream of status changes (the latest status first).
#[derive(Debug)]
pub struct StatusChanges {
    rx: watch::Receiver<ConnectionStatus>,
    first: bool,
}

impl StatusChanges {
    pub(crate) fn new(rx: watch::Receiver<ConnectionStatus>) -> Self {
        Self { rx, first: true }
    }

    /// Waits for the next status; `None` once the client is gone.
    pub async fn next(&mut self) -> Option<ConnectionStatus> {
        if self.first {
            self.first = false;
            return Some(*self.rx.borrow_and_update());
        }
        self.rx.changed().await.ok()?;
        Some(*self.rx.borrow_and_update())
    }

    /// Waits until `pred` holds for the status.
    pub async fn wait_for(
        &mut self,
        pred: impl FnMut(&ConnectionStatus) -> bool,
    ) -> Option<ConnectionStatus> {
        self.rx.wait_for(pred).await.ok().map(|s| *s)
    }
}

/// Counters of a client's connection history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStats {
    /// Successful CONNACKs, the first one included.
    pub connects: u64,
    /// Planned reconnects with a fresh SAS token.
    pub token_renewals: u64,
    /// Connections or connection attempts that failed or dropped.
    pub connection_losses: u64,
    /// Telemetry messages dropped from the full offline queue
    /// ([`QueueFullPolicy::DropOldest`](crate::QueueFullPolicy::DropOldest)).
    pub telemetry_dropped: u64,
    /// Telemetry messages in the offline queue now.
    pub telemetry_queued: usize,
    /// Bytes (topic and body) in the offline queue now.
    pub telemetry_queued_bytes: usize,
    /// Desired updates waiting for the application now (at most `desired_capacity` + 1).
    pub desired_waiting: usize,
    /// C2D messages waiting for the application now (at most `c2d_capacity`).
    pub c2d_waiting: usize,
}
