//! `/twins/{id}[/modules/{mid}]`: get, patch, replace, and `…/methods` to invoke a method.

use super::response::{ApiResult, authorize, if_match, json, parse_json};
use super::state::AppState;
use crate::hub::registry::Rights;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use iot_common::MethodInvocation;
use serde_json::Value;

/// The twin routes.
pub(crate) fn routes() -> Router<AppState> {
    use axum::routing::{get, post};
    Router::new()
        .route("/twins/{id}", get(get_twin).patch(patch_twin).put(put_twin))
        .route("/twins/{id}/methods", post(invoke_method))
        .route(
            "/twins/{id}/modules/{mid}",
            get(get_module_twin)
                .patch(patch_module_twin)
                .put(put_module_twin),
        )
        .route(
            "/twins/{id}/modules/{mid}/methods",
            post(invoke_module_method),
        )
}

async fn get(state: &AppState, headers: &HeaderMap, id: &str, module: Option<&str>) -> ApiResult {
    authorize(&state.hub, headers, Rights::SERVICE_CONNECT)?;
    let twin = state.hub.get_twin(id, module)?;
    let etag = twin.etag.clone();
    Ok(json(StatusCode::OK, &twin, etag.as_deref()))
}

async fn update(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
    module: Option<&str>,
    body: &Bytes,
    replace: bool,
) -> ApiResult {
    authorize(&state.hub, headers, Rights::SERVICE_CONNECT)?;
    let body: Value = parse_json(body)?;
    let twin = state
        .hub
        .update_twin(id, module, &body, if_match(headers), replace)?;
    let etag = twin.etag.clone();
    Ok(json(StatusCode::OK, &twin, etag.as_deref()))
}

async fn invoke(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
    module: Option<&str>,
    body: &Bytes,
) -> ApiResult {
    authorize(&state.hub, headers, Rights::SERVICE_CONNECT)?;
    let request: MethodInvocation = parse_json(body)?;
    let result = state.hub.invoke_method(id, module, request).await?;
    Ok(json(StatusCode::OK, &result, None))
}

async fn get_twin(State(s): State<AppState>, Path(id): Path<String>, h: HeaderMap) -> ApiResult {
    get(&s, &h, &id, None).await
}

async fn patch_twin(
    State(s): State<AppState>,
    Path(id): Path<String>,
    h: HeaderMap,
    b: Bytes,
) -> ApiResult {
    update(&s, &h, &id, None, &b, false).await
}

async fn put_twin(
    State(s): State<AppState>,
    Path(id): Path<String>,
    h: HeaderMap,
    b: Bytes,
) -> ApiResult {
    update(&s, &h, &id, None, &b, true).await
}

async fn invoke_method(
    State(s): State<AppState>,
    Path(id): Path<String>,
    h: HeaderMap,
    b: Bytes,
) -> ApiResult {
    invoke(&s, &h, &id, None, &b).await
}

async fn get_module_twin(
    State(s): State<AppState>,
    Path((id, mid)): Path<(String, String)>,
    h: HeaderMap,
) -> ApiResult {
    get(&s, &h, &id, Some(&mid)).await
}

async fn patch_module_twin(
    State(s): State<AppState>,
    Path((id, mid)): Path<(String, String)>,
    h: HeaderMap,
    b: Bytes,
) -> ApiResult {
    update(&s, &h, &id, Some(&mid), &b, false).await
}

async fn put_module_twin(
    State(s): State<AppState>,
    Path((id, mid)): Path<(String, String)>,
    h: HeaderMap,
    b: Bytes,
) -> ApiResult {
    update(&s, &h, &id, Some(&mid), &b, true).await
}

async fn invoke_module_method(
    State(s): State<AppState>,
    Path((id, mid)): Path<(String, String)>,
    h: HeaderMap,
    b: Bytes,
) -> ApiResult {
    invoke(&s, &h, &id, Some(&mid), &b).await
}
