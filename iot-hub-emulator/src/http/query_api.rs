//! `POST /devices/query`: runs a query over the current twins and pages the result with
//! `x-ms-max-item-count` and `x-ms-continuation` (absent on the last page).

use super::paging::page;
use super::response::{ApiResult, authorize, json, parse_json};
use super::state::AppState;
use crate::error::HubRefusal;
use crate::hub::registry::Rights;
use crate::limits::MAX_QUERY_LEN;
use crate::query::{self, Collection};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;

#[derive(Deserialize)]
struct QuerySpec {
    query: String,
}

/// The query route.
pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/devices/query", axum::routing::post(query_devices))
}

async fn query_devices(State(s): State<AppState>, h: HeaderMap, body: Bytes) -> ApiResult {
    authorize(&s.hub, &h, Rights::SERVICE_CONNECT)?;
    let spec: QuerySpec = parse_json(&body)?;
    if spec.query.len() > MAX_QUERY_LEN {
        return Err(HubRefusal::bad_request(
            "The query is longer than 8192 characters.",
        ));
    }
    let q = query::parse_query(&spec.query).map_err(|e| HubRefusal::bad_request(e.to_string()))?;
    let item_type = match (&q.projections, q.from) {
        (_, Collection::Jobs) => "deviceJob",
        (None, _) => "twin",
        (Some(_), _) => "raw",
    };
    let docs = s.hub.candidate_documents(q.from, q.filter.as_ref());
    let mut rows: Vec<Arc<Value>> = match &q.projections {
        None => query::select_shared(&q, docs),
        Some(_) => query::run(&q, &docs).into_iter().map(Arc::new).collect(),
    };
    if let Some(top) = q.top {
        rows.truncate(top);
    }
    let (page, next) = page(&h, rows)?;
    let page: Vec<&Value> = page.iter().map(AsRef::as_ref).collect();
    let mut r = json(StatusCode::OK, &page, None);
    let headers = r.headers_mut();
    headers.insert("x-ms-item-type", HeaderValue::from_static(item_type));
    if let Some(token) = next.and_then(|t| HeaderValue::from_str(&t).ok()) {
        headers.insert("x-ms-continuation", token);
    }
    Ok(r)
}
