//! `POST /devices/query`: runs a query over the current twins and pages the result with
//! `x-ms-max-item-count` and `x-ms-continuation` (absent on the last page).

use crate::error::ApiError;
use crate::http::{ApiResult, AppState, authorize, parse_json};
use crate::hub::lock;
use crate::limits::MAX_QUERY_LEN;
use crate::query::{self, Collection};
use crate::registry::Rights;
use crate::twins::twin_document;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;

/// Page size when the client gives none.
const DEFAULT_PAGE: usize = 100;
/// Largest page the emulator returns.
const MAX_PAGE: usize = 1000;

#[derive(Deserialize)]
struct QuerySpec {
    query: String,
}

fn encode_token(offset: usize) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("offset:{offset}"))
}

fn decode_token(token: &str) -> Result<usize, ApiError> {
    base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("offset:").and_then(|n| n.parse().ok()))
        .ok_or_else(|| ApiError::bad_request("The continuation token is invalid."))
}

impl crate::hub::Hub {
    /// The documents of a collection, in id order (shared from the records' caches).
    pub(crate) fn documents(&self, from: Collection) -> Vec<Arc<Value>> {
        let reg = lock(&self.registry);
        let mut docs = Vec::with_capacity(reg.devices.len());
        for rec in reg.devices.values() {
            match from {
                Collection::Devices => docs.extend(twin_document(rec, None)),
                Collection::Modules => docs.extend(
                    rec.modules
                        .keys()
                        .filter_map(|m| twin_document(rec, Some(m))),
                ),
                Collection::Jobs => {}
            }
        }
        drop(reg);
        if from == Collection::Jobs {
            return self
                .device_job_documents()
                .into_iter()
                .map(Arc::new)
                .collect();
        }
        docs
    }
}

pub(crate) async fn query_devices(
    State(s): State<AppState>,
    h: HeaderMap,
    body: Bytes,
) -> ApiResult {
    authorize(&s.hub, &h, Rights::SERVICE_CONNECT)?;
    let spec: QuerySpec = parse_json(&body)?;
    if spec.query.len() > MAX_QUERY_LEN {
        return Err(ApiError::bad_request(
            "The query is longer than 8192 characters.",
        ));
    }
    let q = query::parse_query(&spec.query).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let item_type = match (&q.projections, q.from) {
        (_, Collection::Jobs) => "deviceJob",
        (None, _) => "twin",
        (Some(_), _) => "raw",
    };
    let docs = s.hub.documents(q.from);
    let mut rows: Vec<Arc<Value>> = match &q.projections {
        None => query::select_shared(&q, docs),
        Some(_) => query::run(&q, &docs).into_iter().map(Arc::new).collect(),
    };
    if let Some(top) = q.top {
        rows.truncate(top);
    }
    let (page, next) = page(&h, rows)?;
    let page: Vec<&Value> = page.iter().map(AsRef::as_ref).collect();
    let mut r = crate::http::json_response(StatusCode::OK, &page);
    let headers = r.headers_mut();
    headers.insert("x-ms-item-type", HeaderValue::from_static(item_type));
    if let Some(token) = next.and_then(|t| HeaderValue::from_str(&t).ok()) {
        headers.insert("x-ms-continuation", token);
    }
    Ok(r)
}

/// One page of `rows` per the request's `x-ms-max-item-count` and `x-ms-continuation`, and the
/// continuation token for the next page (none on the last page).
pub(crate) fn page<T>(h: &HeaderMap, rows: Vec<T>) -> Result<(Vec<T>, Option<String>), ApiError> {
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
