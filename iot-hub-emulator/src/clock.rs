//! Times as the hub writes them, and the hub's clock, which tests may move forward.

use std::sync::atomic::{AtomicI64, Ordering};

/// The current time as registry records and jobs carry it.
pub(crate) fn now_timestamp() -> iot_common::Timestamp {
    std::time::SystemTime::now().into()
}

/// The current UTC time as the hub writes it (7 fractional digits).
pub(crate) fn now_string() -> String {
    format_time(chrono::Utc::now())
}

/// ISO-8601 UTC with 7 fractional digits, as the hub (a .NET service) writes times.
pub(crate) fn format_time(t: chrono::DateTime<chrono::Utc>) -> String {
    use chrono::Timelike as _;
    format!(
        "{}.{:07}Z",
        t.format("%Y-%m-%dT%H:%M:%S"),
        t.nanosecond() % 1_000_000_000 / 100
    )
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    iot_common::sas::unix_seconds(std::time::SystemTime::now())
}

/// The clock that message lifetimes (cloud-to-device expiry) are measured by: the system
/// clock plus an offset that only moves forward, so a test can let an hour pass at once
/// (`HubOps::advance_clock`). Token checks keep the system clock: a client signs with it.
#[derive(Debug, Default)]
pub(crate) struct HubClock {
    offset_ms: AtomicI64,
}

impl HubClock {
    /// Now, in milliseconds since the Unix epoch.
    pub(crate) fn now_ms(&self) -> i64 {
        chrono::Utc::now()
            .timestamp_millis()
            .saturating_add(self.offset_ms.load(Ordering::Relaxed))
    }

    /// Now, as a UTC time.
    pub(crate) fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp_millis(self.now_ms()).unwrap_or_default()
    }

    /// Moves the clock forward by `by`.
    pub(crate) fn advance(&self, by: std::time::Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }
}
