//! The connection status and its change stream.

use futures_core::Stream;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
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
    /// The hub's certificate is not trusted (or expired, or for another name).
    Certificate,
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

/// A stream of status changes (the latest status first); ends when the client is gone.
/// It holds only the latest status: a slow reader skips intermediate ones, never grows.
pub struct StatusChanges {
    rx: watch::Receiver<ConnectionStatus>,
    first: bool,
    /// A wait for the next change started by `poll_next`; the mutex is never locked (see
    /// `poll_next`), it only makes the stream `Sync`.
    changed: Mutex<Option<Changed>>,
}

type Changed = Pin<Box<dyn Future<Output = bool> + Send>>;

impl fmt::Debug for StatusChanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatusChanges")
            .field("current", &*self.rx.borrow())
            .finish_non_exhaustive()
    }
}

impl StatusChanges {
    pub(crate) fn new(rx: watch::Receiver<ConnectionStatus>) -> Self {
        Self {
            rx,
            first: true,
            changed: Mutex::new(None),
        }
    }

    /// Waits for the next status; `None` once the client is gone.
    ///
    /// ```no_run
    /// # async fn demo(client: iot_device::DeviceClient) {
    /// let mut changes = client.status_changes();
    /// while let Some(status) = changes.next().await {
    ///     println!("now {status}");
    /// }
    /// # }
    /// ```
    ///
    /// # Cancel safety
    /// Cancel-safe: a status is marked seen only when it is returned.
    pub async fn next(&mut self) -> Option<ConnectionStatus> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// Waits until `pred` holds for the status.
    ///
    /// ```no_run
    /// # async fn demo(client: iot_device::DeviceClient) {
    /// use iot_device::ConnectionStatus;
    /// let mut changes = client.status_changes();
    /// changes.wait_for(|s| *s == ConnectionStatus::Connected).await;
    /// # }
    /// ```
    ///
    /// # Cancel safety
    /// Cancel-safe: it only reads the status.
    pub async fn wait_for(
        &mut self,
        pred: impl FnMut(&ConnectionStatus) -> bool,
    ) -> Option<ConnectionStatus> {
        self.rx.wait_for(pred).await.ok().map(|s| *s)
    }
}

impl Stream for StatusChanges {
    type Item = ConnectionStatus;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ConnectionStatus>> {
        let this = self.get_mut();
        if this.first {
            this.first = false;
            return Poll::Ready(Some(*this.rx.borrow_and_update()));
        }
        let slot = this
            .changed
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // The wait runs on a clone, which starts from the version `rx` has seen; `rx` is
        // marked seen only when a change is returned.
        let changed = slot.get_or_insert_with(|| {
            let mut rx = this.rx.clone();
            Box::pin(async move { rx.changed().await.is_ok() })
        });
        let alive = std::task::ready!(changed.as_mut().poll(cx));
        *slot = None;
        if alive {
            Poll::Ready(Some(*this.rx.borrow_and_update()))
        } else {
            Poll::Ready(None)
        }
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
