//! Locking that survives a panicked request.

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex, recovering from poisoning: a panicked request must not take the hub down.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
