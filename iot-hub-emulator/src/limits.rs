//! Every bound the emulator enforces on what clients send it, in one place (RELIABILITY.md lists them).

/// Longest query (`POST /devices/query`) and job `queryCondition`, in bytes, as the hub allows.
pub(crate) const MAX_QUERY_LEN: usize = 8192;
/// Deepest nesting of a query expression: parentheses, arrays, calls, `NOT`, unary minus and
/// each operator of an arithmetic chain. Recursive parsing and evaluation use stack per level.
pub(crate) const MAX_QUERY_NESTING: usize = 64;
