//! Times as the hub writes them.

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
