//! Fault injection: the failures devices and back ends meet in the field, on demand. Set from
//! the library ([`crate::Faults`]), the command line (`--fault-…`), or `POST /emulator/faults`.

use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// The current fault settings.
#[derive(Debug, Default)]
pub(crate) struct FaultState {
    throttle_rest: AtomicU32,
    fail_rest: AtomicU32,
    retry_after_secs: AtomicU64,
    refuse_until: Mutex<Option<Instant>>,
    method_delay_ms: AtomicU64,
    drop_method_responses: AtomicBool,
    connection_lifetime_ms: AtomicU64,
    throttle_mqtt: AtomicU32,
    drop_all_every_ms: AtomicU64,
    state_write_failures: std::sync::Arc<AtomicU32>,
    fired: AtomicU64,
}

/// Settings accepted by `POST /emulator/faults` (absent fields are left as they are).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct FaultSettings {
    /// The next N REST calls are answered 429 (ThrottlingException).
    pub throttle_rest: Option<u32>,
    /// The next N REST calls are answered 503 (ServiceUnavailable).
    pub fail_rest: Option<u32>,
    /// `Retry-After` seconds on those answers.
    pub retry_after_secs: Option<u64>,
    /// Refuse MQTT connections (CONNACK 3) for this many seconds from now.
    pub refuse_connections_secs: Option<u64>,
    /// Hold every device's method answer this long before passing it on.
    pub method_delay_ms: Option<u64>,
    /// Lose every device's method answer (callers get 504101).
    pub drop_method_responses: Option<bool>,
    /// Close every MQTT connection this long after it opened, as if its token expired
    /// (0 turns it off).
    pub connection_lifetime_secs: Option<u64>,
    /// Disconnect the next N devices that publish, as the hub does when it throttles MQTT.
    pub throttle_mqtt: Option<u32>,
    /// Drop all device connections every this many seconds (0 turns it off).
    pub drop_all_every_secs: Option<u64>,
    /// The next N commits to `--state` fail as a full disk would; the changes stay pending,
    /// are retried, and the callers waiting for them are answered once they are stored.
    pub fail_state_writes: Option<u32>,
}

/// Takes one unit of a countdown; `true` when there was one.
fn take(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        .is_ok()
}

impl FaultState {
    /// The countdown of failing state commits, shared with the store.
    pub(crate) fn state_write_failures(&self) -> std::sync::Arc<AtomicU32> {
        self.state_write_failures.clone()
    }

    pub(crate) fn apply(&self, s: &FaultSettings) {
        if let Some(n) = s.fail_state_writes {
            self.state_write_failures.store(n, Ordering::Release);
        }
        if let Some(n) = s.throttle_rest {
            self.throttle_rest.store(n, Ordering::Release);
        }
        if let Some(n) = s.fail_rest {
            self.fail_rest.store(n, Ordering::Release);
        }
        if let Some(n) = s.retry_after_secs {
            self.retry_after_secs.store(n, Ordering::Release);
        }
        if let Some(secs) = s.refuse_connections_secs {
            *crate::locks::lock(&self.refuse_until) =
                (secs > 0).then(|| Instant::now() + Duration::from_secs(secs));
        }
        if let Some(ms) = s.method_delay_ms {
            self.method_delay_ms.store(ms, Ordering::Release);
        }
        if let Some(b) = s.drop_method_responses {
            self.drop_method_responses.store(b, Ordering::Release);
        }
        if let Some(secs) = s.connection_lifetime_secs {
            self.connection_lifetime_ms
                .store(secs * 1000, Ordering::Release);
        }
        if let Some(n) = s.throttle_mqtt {
            self.throttle_mqtt.store(n, Ordering::Release);
        }
        if let Some(secs) = s.drop_all_every_secs {
            self.drop_all_every_ms.store(secs * 1000, Ordering::Release);
        }
    }

    /// A REST fault to answer with, if one is armed: (throttled?, retry-after seconds).
    pub(crate) fn rest_fault(&self) -> Option<(bool, u64)> {
        let retry_after = self.retry_after_secs.load(Ordering::Acquire);
        if take(&self.throttle_rest) {
            self.count();
            Some((true, retry_after))
        } else if take(&self.fail_rest) {
            self.count();
            Some((false, retry_after))
        } else {
            None
        }
    }

    pub(crate) fn refuse_connection(&self) -> bool {
        let refuse = crate::locks::lock(&self.refuse_until).is_some_and(|t| Instant::now() < t);
        if refuse {
            self.count();
        }
        refuse
    }

    pub(crate) fn method_delay(&self) -> Option<Duration> {
        match self.method_delay_ms.load(Ordering::Acquire) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    pub(crate) fn drop_method_response(&self) -> bool {
        let drop = self.drop_method_responses.load(Ordering::Acquire);
        if drop {
            self.count();
        }
        drop
    }

    pub(crate) fn connection_lifetime(&self) -> Option<Duration> {
        match self.connection_lifetime_ms.load(Ordering::Acquire) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    pub(crate) fn throttle_publish(&self) -> bool {
        let t = take(&self.throttle_mqtt);
        if t {
            self.count();
        }
        t
    }

    pub(crate) fn drop_all_every(&self) -> Option<Duration> {
        match self.drop_all_every_ms.load(Ordering::Acquire) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    pub(crate) fn count(&self) {
        self.fired.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn fired(&self) -> u64 {
        self.fired.load(Ordering::Relaxed)
    }
}
