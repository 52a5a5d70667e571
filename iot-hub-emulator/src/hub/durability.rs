//! The hub's side of `--state`: hands changes to the store's writer and waits for them to be
//! committed. Without `--state` every call here is a no-op.
//!
//! An answer waits for the commit of its own writes, not for everything queued so far: each
//! hand-over returns the sequence number of the batch that carries the caller's rows, and a
//! caller that runs several operations (a REST request, the in-process API) collects those
//! numbers in a [`Receipt`] scope and waits for the highest.

use super::persistence::{Store, Write};
use crate::error::HubRefusal;
use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

tokio::task_local! {
    /// The highest sequence number handed out inside the current [`Receipt`] scope.
    static OWN_SEQ: Cell<u64>;
}

/// Collects the sequence numbers of the writes made inside a scope (a request, an
/// in-process call), so that its answer waits for exactly those.
pub(crate) struct Receipt;

impl Receipt {
    /// Runs `fut` and returns its output with the sequence number its writes need (0: none).
    ///
    /// # Cancel safety
    /// Cancel-safe if `fut` is: the scope only records numbers.
    pub(crate) async fn scope<F: std::future::Future>(fut: F) -> (F::Output, u64) {
        OWN_SEQ
            .scope(Cell::new(0), async {
                let out = fut.await;
                (out, OWN_SEQ.with(Cell::get))
            })
            .await
    }

    /// [`Self::scope`] for a synchronous call.
    pub(crate) fn sync<T>(f: impl FnOnce() -> T) -> (T, u64) {
        OWN_SEQ.sync_scope(Cell::new(0), || {
            let out = f();
            (out, OWN_SEQ.with(Cell::get))
        })
    }

    /// Records that the current scope (if any) must wait for `seq`.
    fn note(seq: u64) {
        let _ = OWN_SEQ.try_with(|c| c.set(c.get().max(seq)));
    }
}

/// One source of rows (a store whose changes are taken under its lock): the sequence number
/// of the last batch that carried its rows. A caller whose rows another caller already
/// handed over (taken with theirs under the same lock) waits for that batch, not for the
/// newest one of anyone.
#[derive(Debug, Default)]
pub(crate) struct Handover(u64);

impl Handover {
    /// Queues `writes` (call it under the source's lock) and returns the sequence number
    /// that covers every change of this source made so far.
    pub(crate) fn enqueue(&mut self, p: &Persistence, writes: Vec<Write>) -> u64 {
        if writes.is_empty() {
            Receipt::note(self.0);
        } else {
            self.0 = p.enqueue(writes);
        }
        self.0
    }

    /// Notes that a batch queued by another source (under this source's lock too) carried
    /// this source's rows.
    pub(crate) fn carried(&mut self, seq: u64) {
        self.0 = self.0.max(seq);
    }
}

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
    /// of the batch that carries them (0 without `--state`, or when there are none), which
    /// the current [`Receipt`] scope records too.
    pub(crate) fn enqueue(&self, writes: impl IntoIterator<Item = Write>) -> u64 {
        let Some(store) = &self.0 else {
            return 0;
        };
        let mut writes = writes.into_iter().peekable();
        if writes.peek().is_none() {
            return 0;
        }
        let seq = store.enqueue(writes);
        Receipt::note(seq);
        seq
    }

    /// The sequence number of the newest queued change, for waits that must cover everything
    /// (start-up, shutdown, [`super::Hub::flush`]); answers wait for their own writes instead.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::persistence::Kind;

    fn row(key: &str) -> Write {
        ((Kind::Meta, key.to_owned()), Some(b"1".to_vec()))
    }

    #[tokio::test]
    async fn a_receipt_holds_its_own_writes_not_later_ones_of_others() {
        let dir = std::env::temp_dir().join(format!("iot-emu-receipt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (store, _) = Store::open(&dir).unwrap();
        let p = Persistence::new(Some(store));
        let (mine, own) = Receipt::sync(|| p.enqueue([row("mine")]));
        // Someone else's change, queued after mine (outside my scope).
        let theirs = p.enqueue([row("theirs")]);
        assert!(theirs > mine);
        assert_eq!(own, mine);
        assert_eq!(p.last_seq(), theirs);
        // Nothing written: nothing to wait for.
        let ((), none) = Receipt::sync(|| {
            p.enqueue(Vec::new());
        });
        assert_eq!(none, 0);
        // Rows another caller carried: wait for the batch that carried them.
        let mut source = Handover::default();
        let carried = source.enqueue(&p, vec![row("a")]);
        let _later = p.enqueue([row("b")]);
        let (seq, own) = Receipt::sync(|| source.enqueue(&p, Vec::new()));
        assert_eq!((seq, own), (carried, carried));
        p.wait(own).await.unwrap();
        p.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn an_async_scope_collects_the_highest() {
        let dir = std::env::temp_dir().join(format!("iot-emu-receipt-a-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (store, _) = Store::open(&dir).unwrap();
        let p = Persistence::new(Some(store));
        let ((a, b), own) = Receipt::scope(async {
            let a = p.enqueue([row("x")]);
            tokio::task::yield_now().await;
            (a, p.enqueue([row("y")]))
        })
        .await;
        assert!(b > a);
        assert_eq!(own, b);
        p.close();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
