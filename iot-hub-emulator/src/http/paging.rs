//! Paging of long answers (queries, job lists) with `x-ms-max-item-count` and
//! `x-ms-continuation` (absent on the last page).

use crate::error::HubRefusal;
use axum::http::HeaderMap;
use base64::Engine as _;

/// Page size when the client gives none.
const DEFAULT_PAGE: usize = 100;
/// Largest page the emulator returns.
const MAX_PAGE: usize = 1000;

fn encode_token(offset: usize) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("offset:{offset}"))
}

fn decode_token(token: &str) -> Result<usize, HubRefusal> {
    base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("offset:").and_then(|n| n.parse().ok()))
        .ok_or_else(|| HubRefusal::bad_request("The continuation token is invalid."))
}

/// One page of `rows` per the request's `x-ms-max-item-count` and `x-ms-continuation`, and the
/// continuation token for the next page (none on the last page).
pub(crate) fn page<T>(h: &HeaderMap, rows: Vec<T>) -> Result<(Vec<T>, Option<String>), HubRefusal> {
    let page_size = h
        .get("x-ms-max-item-count")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(DEFAULT_PAGE)
        .clamp(1, MAX_PAGE);
    let offset = match h.get("x-ms-continuation").and_then(|v| v.to_str().ok()) {
        Some(t) if !t.is_empty() => decode_token(t)?,
        _ => 0,
    };
    let total = rows.len();
    let end = offset.saturating_add(page_size).min(total);
    let page = rows
        .into_iter()
        .skip(offset)
        .take(end.saturating_sub(offset))
        .collect();
    Ok((page, (end < total).then(|| encode_token(end))))
}
