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
