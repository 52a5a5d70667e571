//! Command-line values that may name a file: `@path` reads the file.

use crate::error::CliError;
use serde_json::Value;

/// The bytes of `arg`, or of the file it names with a leading `@`.
pub fn bytes(arg: &str) -> Result<Vec<u8>, CliError> {
    match arg.strip_prefix('@') {
        Some(path) => {
            std::fs::read(path).map_err(|e| CliError::Usage(format!("cannot read {path}: {e}")))
        }
        None => Ok(arg.as_bytes().to_vec()),
    }
}

/// `arg` (or the file it names) parsed as JSON.
pub fn json(arg: &str) -> Result<Value, CliError> {
    let raw = bytes(arg)?;
    serde_json::from_slice(&raw).map_err(|e| {
        let what = arg.strip_prefix('@').unwrap_or("the argument");
        CliError::Usage(format!("{what} is not valid JSON: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_json_and_bad_json() {
        assert_eq!(json("{\"a\":1}").ok(), Some(serde_json::json!({"a": 1})));
        let e = json("{nope")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("not valid JSON"), "{e}");
        assert!(bytes("@/nonexistent/file").is_err());
    }
}
