//! "Close this connection": a signal that reaches a connection task even when its outbound
//! queue is full or it is blocked writing to a device that stopped reading.

use crate::locks::lock;
use std::sync::Mutex;
use tokio::sync::Notify;

/// Set once; the first reason wins.
#[derive(Debug, Default)]
pub(crate) struct CloseSignal {
    reason: Mutex<Option<&'static str>>,
    notify: Notify,
}

impl CloseSignal {
    /// Asks the connection to close.
    pub(crate) fn close(&self, why: &'static str) {
        lock(&self.reason).get_or_insert(why);
        // One waiter (the connection task); the permit is kept if it is not waiting yet.
        self.notify.notify_one();
    }

    /// Resolves with the reason once [`close`](Self::close) was called. Cancel-safe.
    pub(crate) async fn closed(&self) -> &'static str {
        loop {
            if let Some(why) = *lock(&self.reason) {
                return why;
            }
            self.notify.notified().await;
        }
    }
}
