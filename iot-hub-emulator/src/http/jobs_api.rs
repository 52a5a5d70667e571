//! `/jobs/v2/…`: create, get, cancel and query scheduled jobs.

use super::response::{ApiResult, authorize, json, parse_json};
use super::state::AppState;
use crate::hub::registry::Rights;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use bytes::Bytes;
use iot_common::JobRequest;
use std::collections::HashMap;

/// The jobs routes.
pub(crate) fn routes() -> Router<AppState> {
    use axum::routing::{get, post};
    Router::new()
        .route("/jobs/v2/query", get(query_jobs))
        .route("/jobs/v2/{id}", get(get_job).put(put_job))
        .route("/jobs/v2/{id}/cancel", post(cancel_job))
}

async fn put_job(
    State(s): State<AppState>,
    Path(id): Path<String>,
    h: HeaderMap,
    b: Bytes,
) -> ApiResult {
    authorize(&s.hub, &h, Rights::SERVICE_CONNECT)?;
    let req: JobRequest = parse_json(&b)?;
    Ok(json(StatusCode::OK, &s.hub.create_job(&id, req)?, None))
}

async fn get_job(State(s): State<AppState>, Path(id): Path<String>, h: HeaderMap) -> ApiResult {
    authorize(&s.hub, &h, Rights::SERVICE_CONNECT)?;
    Ok(json(StatusCode::OK, &s.hub.get_job(&id)?, None))
}

async fn cancel_job(State(s): State<AppState>, Path(id): Path<String>, h: HeaderMap) -> ApiResult {
    authorize(&s.hub, &h, Rights::SERVICE_CONNECT)?;
    Ok(json(StatusCode::OK, &s.hub.cancel_job(&id)?, None))
}

async fn query_jobs(
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    h: HeaderMap,
) -> ApiResult {
    authorize(&s.hub, &h, Rights::SERVICE_CONNECT)?;
    let jobs = s.hub.query_jobs(
        q.get("jobType").map(String::as_str),
        q.get("jobStatus").map(String::as_str),
    );
    let rows: Vec<serde_json::Value> = jobs
        .iter()
        .filter_map(|j| serde_json::to_value(j).ok())
        .collect();
    let (page, next) = super::paging::page(&h, rows)?;
    let mut r = json(StatusCode::OK, &page, None);
    r.headers_mut()
        .insert("x-ms-item-type", HeaderValue::from_static("jobResponse"));
    if let Some(token) = next.and_then(|t| HeaderValue::from_str(&t).ok()) {
        r.headers_mut().insert("x-ms-continuation", token);
    }
    Ok(r)
}
