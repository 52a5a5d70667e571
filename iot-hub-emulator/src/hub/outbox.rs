//! A connection's outbound queue: what the hub pushes to one device (method requests, twin
//! notifications, "C2D available"), drained by that connection's task.
//!
//! Not a tokio `mpsc` channel: that allocates its first block of 32 slots (1.8 KB with these
//! items) when created, for every connected device, although most devices are idle. This
//! queue allocates on its first push and holds only what waits.

use super::Outbound;
use crate::locks::lock;
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::Notify;

/// Items a connection may have waiting; a push beyond it is refused with [`Refused::Full`].
pub(crate) const OUTBOX_CAPACITY: usize = 256;

/// Why a push was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// [`OUTBOX_CAPACITY`] items wait: the device does not keep up.
    Full,
    /// The connection has ended.
    Closed,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Outbound>,
    closed: bool,
}

/// Bounded, allocated on first use; one receiver (the connection task).
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    state: Mutex<State>,
    notify: Notify,
}

impl Outbox {
    /// Queues `item` for the connection, or says why not (the item is dropped then).
    pub(crate) fn push(&self, item: Outbound) -> Result<(), Refused> {
        {
            let mut s = lock(&self.state);
            if s.closed {
                return Err(Refused::Closed);
            }
            if s.queue.len() >= OUTBOX_CAPACITY {
                return Err(Refused::Full);
            }
            s.queue.push_back(item);
        }
        // One waiter; the permit is kept when the task is not waiting yet.
        self.notify.notify_one();
        Ok(())
    }

    /// The next item, waiting for one.
    ///
    /// # Cancel safety
    /// Cancel-safe: an item is taken only in the poll that returns it.
    pub(crate) async fn recv(&self) -> Outbound {
        loop {
            if let Some(item) = lock(&self.state).queue.pop_front() {
                return item;
            }
            self.notify.notified().await;
        }
    }

    /// The connection has ended: later pushes are refused and what waits is dropped.
    pub(crate) fn close(&self) {
        let mut s = lock(&self.state);
        s.closed = true;
        s.queue = VecDeque::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_ordered_and_closed() {
        let outbox = Outbox::default();
        for _ in 0..OUTBOX_CAPACITY {
            outbox.push(Outbound::C2dAvailable).unwrap();
        }
        assert_eq!(outbox.push(Outbound::C2dAvailable), Err(Refused::Full));
        outbox.recv().await;
        outbox
            .push(Outbound::Publish {
                topic: "t".into(),
                payload: bytes::Bytes::new(),
            })
            .unwrap();
        outbox.close();
        assert_eq!(outbox.push(Outbound::C2dAvailable), Err(Refused::Closed));
    }

    #[tokio::test]
    async fn a_cancelled_recv_loses_nothing() {
        let outbox = Outbox::default();
        // Cancelled while waiting (nothing queued yet).
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(1), outbox.recv())
                .await
                .is_err()
        );
        outbox.push(Outbound::C2dAvailable).unwrap();
        assert!(matches!(outbox.recv().await, Outbound::C2dAvailable));
    }
}
