//! Locking that survives a panicked request, and the order of the hub's locks.
//!
//! # Lock order
//!
//! A thread that holds more than one of the hub's locks took them in this order, and never
//! takes an earlier one while holding a later one:
//!
//! 1. `Hub::registry` (identities, keys, policies)
//! 2. `Hub::twins` (twin documents, the tag index)
//! 3. the DPS's lock (`Dps::take_changes`, under the registry's)
//! 4. the store's queue of pending writes (`Store::pending`), always last: it is held only
//!    to queue rows.
//!
//! Operations on twins alone (reported patches, desired updates, twin reads) take only the
//! twins' lock; identity operations that do not change a twin take only the registry's.
//! Creating or deleting an identity takes both, so that no reader sees one without the
//! other and `--state` commits both in one batch. The other stores (sessions, C2D queues,
//! jobs, telemetry) are never held while one of these is taken.

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex, recovering from poisoning: a panicked request must not take the hub down.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
