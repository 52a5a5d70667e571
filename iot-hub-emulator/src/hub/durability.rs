//! The hub's side of `--state`: hands changes to the store's writer and waits for them to be
//! committed. Without `--state` every call here is a no-op.

use super::persistence::{Store, Write};
use crate::error::HubRefusal;
use std::sync::Arc;
use std::time::Duration;

/// The durable store, if there is one.
#[derive(Debug)]
pub(crate) struct Persistence(Option<Arc<Store>>);

impl Persistence {
    pub(crate) fn new(store: Option<Arc<Store>>) -> Self {
        Self(store)
    }

    /// Lets the fault settings make commits fail.
    pub(crate) fn attach_fault(&self, counter: Arc<std::sync::atomic::AtomicU32>) {
        if let Some(s) = &self.0 {
            s.attach_fault(counter);
        }
    }

    pub(crate) fn is_durable(&self) -> bool {
        self.0.is_some()
    }

    /// Queues changes; call it under the lock that ordered them. Returns the sequence number
    /// to wait for (0 without `--state`).
    pub(crate) fn enqueue(&self, writes: impl IntoIterator<Item = Write>) -> u64 {
        self.0.as_ref().map_or(0, |s| s.enqueue(writes))
    }

    /// The sequence number a caller must wait for so that every change queued so far is
    /// committed (0 without `--state`).
    pub(crate) fn last_seq(&self) -> u64 {
        self.0.as_ref().map_or(0, |s| s.last_seq())
    }

    /// Waits until the changes up to `seq` are committed to `--state`.
    ///
    /// # Cancel safety
    /// Cancel-safe: the changes are committed regardless.
    pub(crate) async fn wait(&self, seq: u64) -> Result<(), HubRefusal> {
        match &self.0 {
            Some(store) if seq > 0 => store.wait(seq).await.map_err(unavailable),
            _ => Ok(()),
        }
    }

    /// Blocks the calling thread until the changes up to `seq` are committed, at most
    /// `timeout`. For the in-process API, which has no task to park; the writer is a thread of
    /// its own, so this never waits on the caller's runtime.
    pub(crate) fn wait_blocking(&self, seq: u64, timeout: Duration) -> std::io::Result<()> {
        match &self.0 {
            Some(store) if seq > 0 => store.wait_blocking(seq, timeout),
            _ => Ok(()),
        }
    }

    /// Commits what is pending and stops the writer.
    pub(crate) fn close(&self) {
        if let Some(s) = &self.0 {
            s.close();
        }
    }
}

fn unavailable(e: String) -> HubRefusal {
    HubRefusal::new(
        iot_common::ErrorCode::ServiceUnavailable,
        format!("The change could not be stored yet ({e}); it is retried."),
    )
}
