//! Percent-encoding as the official SDKs apply it to SAS resources, signatures and property bags.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use std::borrow::Cow;

/// Everything but the RFC 3986 unreserved characters `A-Z a-z 0-9 - _ . ~` is encoded, with
/// upper-case hex: what Python's `quote(s, safe="")` and the embedded C SDK produce.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes `s`, leaving only unreserved characters as they are.
pub fn encode(s: &str) -> Cow<'_, str> {
    utf8_percent_encode(s, UNRESERVED).into()
}

/// Decodes `%XX` sequences. A `+` stays a `+` (it is a literal in SAS signatures and property
/// bags, never a space). Fails when the result is not UTF-8.
pub fn decode(s: &str) -> Result<Cow<'_, str>, std::str::Utf8Error> {
    percent_decode_str(s).decode_utf8()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_python_quote_safe_empty() {
        assert_eq!(encode("a/b c$.mid~_-"), "a%2Fb%20c%24.mid~_-");
        assert_eq!(encode("é"), "%C3%A9");
    }

    #[test]
    fn decode_keeps_plus() {
        assert_eq!(decode("a+b%2Bc%2f").unwrap(), "a+b+c/");
    }
}
