//! `/devices…` and `/statistics/…`: the identity registry.

use super::response::{ApiResult, authorize, if_match, json, parse_json};
use super::state::AppState;
use crate::hub::registry::Rights;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use bytes::Bytes;
use iot_common::registry::{Device, Module};
use std::collections::HashMap;

const READ: Rights = Rights::REGISTRY_READ;
const WRITE: Rights = Rights::REGISTRY_WRITE;

/// The identity registry's routes.
pub(crate) fn routes() -> Router<AppState> {
    use axum::routing::get;
    Router::new()
        .route("/devices", get(list_devices))
        .route("/devices/", get(list_devices))
        .route(
            "/devices/{id}",
            get(get_device).put(put_device).delete(delete_device),
        )
        .route("/devices/{id}/modules", get(list_modules))
        .route(
            "/devices/{id}/modules/{mid}",
            get(get_module).put(put_module).delete(delete_module),
        )
        .route("/statistics/devices", get(device_statistics))
        .route("/statistics/service", get(service_statistics))
}

async fn list_devices(
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    h: HeaderMap,
) -> ApiResult {
    authorize(&s.hub, &h, READ)?;
    let top = q
        .get("top")
        .and_then(|t| t.parse::<usize>().ok())
        .filter(|t| (1..=1000).contains(t))
        .unwrap_or(1000);
    Ok(json(StatusCode::OK, &s.hub.list_devices(top), None))
}

async fn get_device(State(s): State<AppState>, Path(id): Path<String>, h: HeaderMap) -> ApiResult {
    authorize(&s.hub, &h, READ)?;
    let d = s.hub.get_device(&id)?;
    let etag = d.etag.clone();
    Ok(json(StatusCode::OK, &d, etag.as_deref()))
}

async fn put_device(
    State(s): State<AppState>,
    Path(id): Path<String>,
    h: HeaderMap,
    b: Bytes,
) -> ApiResult {
    authorize(&s.hub, &h, WRITE)?;
    let body: Device = parse_json(&b)?;
    let d = s.hub.put_device(&id, body, if_match(&h))?;
    let etag = d.etag.clone();
    Ok(json(StatusCode::OK, &d, etag.as_deref()))
}

async fn delete_device(
    State(s): State<AppState>,
    Path(id): Path<String>,
    h: HeaderMap,
) -> ApiResult {
    authorize(&s.hub, &h, WRITE)?;
    s.hub.delete_device(&id, if_match(&h))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_modules(
    State(s): State<AppState>,
    Path(id): Path<String>,
    h: HeaderMap,
) -> ApiResult {
    authorize(&s.hub, &h, READ)?;
    Ok(json(StatusCode::OK, &s.hub.list_modules(&id)?, None))
}

async fn get_module(
    State(s): State<AppState>,
    Path((id, mid)): Path<(String, String)>,
    h: HeaderMap,
) -> ApiResult {
    authorize(&s.hub, &h, READ)?;
    let m = s.hub.get_module(&id, &mid)?;
    let etag = m.etag.clone();
    Ok(json(StatusCode::OK, &m, etag.as_deref()))
}

async fn put_module(
    State(s): State<AppState>,
    Path((id, mid)): Path<(String, String)>,
    h: HeaderMap,
    b: Bytes,
) -> ApiResult {
    authorize(&s.hub, &h, WRITE)?;
    let body: Module = parse_json(&b)?;
    let (m, created) = s.hub.put_module(&id, &mid, body, if_match(&h))?;
    let etag = m.etag.clone();
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json(status, &m, etag.as_deref()))
}

async fn delete_module(
    State(s): State<AppState>,
    Path((id, mid)): Path<(String, String)>,
    h: HeaderMap,
) -> ApiResult {
    authorize(&s.hub, &h, WRITE)?;
    s.hub.delete_module(&id, &mid, if_match(&h))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn device_statistics(State(s): State<AppState>, h: HeaderMap) -> ApiResult {
    authorize(&s.hub, &h, READ)?;
    Ok(json(StatusCode::OK, &s.hub.statistics(), None))
}

async fn service_statistics(State(s): State<AppState>, h: HeaderMap) -> ApiResult {
    authorize(&s.hub, &h, Rights::SERVICE_CONNECT)?;
    let body = serde_json::json!({ "connectedDeviceCount": s.hub.connected_count() });
    Ok(json(StatusCode::OK, &body, None))
}
