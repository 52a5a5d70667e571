//! Every bound the emulator enforces on what clients send it, in one place (RELIABILITY.md lists them).

/// Longest query (`POST /devices/query`) and job `queryCondition`, in bytes, as the hub allows.
pub(crate) const MAX_QUERY_LEN: usize = 8192;
/// Deepest nesting of a query expression: parentheses, arrays, calls, `NOT`, unary minus and
/// each operator of an arithmetic chain. Recursive parsing and evaluation use stack per level.
pub(crate) const MAX_QUERY_NESTING: usize = 64;

/// Longest a device connection may stay open on one token: a token that expires later (up to
/// `se=18446744073709551615`) closes the connection after this long, as a timer cannot reach
/// past the clock's range. The device reconnects with the same token.
pub(crate) const MAX_TOKEN_LIFETIME: std::time::Duration =
    std::time::Duration::from_secs(365 * 24 * 3600);

/// Largest `maxExecutionTimeInSeconds` a job may ask for: the hub's field is an int64. Larger
/// values get 400.
pub(crate) const MAX_JOB_EXECUTION_SECS: u64 = i64::MAX as u64;
/// A job's timer runs at most this long (longer limits are clamped to it, as a timer cannot
/// reach past the clock's range).
pub(crate) const MAX_JOB_TIMER: std::time::Duration =
    std::time::Duration::from_secs(365 * 24 * 3600);

/// A write to a device must finish within this; a device that stops reading is disconnected
/// (token expiry, disable, delete and disconnect-all still fire while a write is blocked).
pub(crate) const MQTT_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// The last bytes to a closing connection (a DISCONNECT reason, TLS close) get this long.
pub(crate) const MQTT_FAREWELL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
/// A connection must send its CONNECT within this.
pub(crate) const MQTT_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
