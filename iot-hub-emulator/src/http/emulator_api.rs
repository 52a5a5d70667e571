//! Emulator-only endpoints, under `/emulator/…`; the real hub has none of these. They need a
//! service token with ServiceConnect, like the rest of the API (except `/emulator/health`).
//!
//! - `GET /emulator/health` — liveness, no auth.
//! - `GET /emulator/telemetry[?deviceId=&top=&continuationToken=]` — the buffered
//!   device-to-cloud messages, oldest first, in pages of at most 1000 records and about 4 MiB;
//!   `x-ms-continuation` in the answer is the next page's token (send it back as the header or
//!   as `continuationToken`). Text bodies are `body`, binary ones `bodyBase64`.
//! - `DELETE /emulator/telemetry` — empties the buffer.
//! - `POST /emulator/devices/{id}/messages` — queues a cloud-to-device message; the body is the
//!   message body, query parameters `messageId`, `correlationId`, `contentType`,
//!   `contentEncoding`, `ack` and `app.{name}` set its properties.
//! - `POST /emulator/devices/{id}/disconnect[?moduleId=]` — drops the identity's connection.
//! - `POST /emulator/disconnect-all` — drops every connection.
//! - `POST /emulator/faults` — arms faults (JSON, see [`crate::FaultSettings`]);
//!   `GET /emulator/faults` — how many injected faults fired.

use super::response::{ApiResult, authorize, json};
use super::state::AppState;
use crate::error::HubRefusal;
use crate::hub::C2dMessage;
use crate::hub::registry::Rights;
use crate::limits;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use bytes::Bytes;
use iot_common::MessageProperties;
use std::collections::HashMap;

const CONTINUATION: &str = "x-ms-continuation";

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/emulator/health", get(health))
        .route(
            "/emulator/telemetry",
            get(telemetry).delete(clear_telemetry),
        )
        .route("/emulator/devices/{id}/messages", post(send_c2d))
        .route("/emulator/devices/{id}/disconnect", post(disconnect))
        .route("/emulator/disconnect-all", post(disconnect_all))
        .route("/emulator/faults", post(set_faults).get(faults_fired))
}

async fn health(State(s): State<AppState>) -> impl IntoResponse {
    json(
        StatusCode::OK,
        &serde_json::json!({ "status": "ok", "connectedDevices": s.hub.connected_count() }),
        None,
    )
}

async fn telemetry(
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    h: HeaderMap,
) -> ApiResult {
    authorize(&s.hub, &h, Rights::SERVICE_CONNECT)?;
    let number = |name: &str| -> Result<Option<u64>, HubRefusal> {
        q.get(name)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    HubRefusal::bad_request(format!("{name} must be a non-negative integer"))
                })
            })
            .transpose()
    };
    // Paged like the hub's query API: the next page's start travels in x-ms-continuation
    // (header or `?continuationToken=`), so a reader never gets the whole buffer in one body.
    let from = match h.get(CONTINUATION).and_then(|v| v.to_str().ok()) {
        Some(v) => v.parse::<u64>().map_err(|_| {
            HubRefusal::bad_request("x-ms-continuation is not a token from this API")
        })?,
        None => number("continuationToken")?.unwrap_or(0),
    };
    let top = number("top")?.map_or(limits::TELEMETRY_PAGE_MAX, |t| {
        usize::try_from(t).map_or(limits::TELEMETRY_PAGE_MAX, |t| {
            t.clamp(1, limits::TELEMETRY_PAGE_MAX)
        })
    });
    let (records, next) = s.hub.telemetry_page(
        q.get("deviceId").map(String::as_str),
        from,
        top,
        limits::TELEMETRY_PAGE_MAX_BYTES,
    );
    let mut r = json(StatusCode::OK, &records, None);
    if let Some(next) = next
        && let Ok(v) = axum::http::HeaderValue::from_str(&next.to_string())
    {
        r.headers_mut().insert(CONTINUATION, v);
    }
    Ok(r)
}

async fn clear_telemetry(State(s): State<AppState>, h: HeaderMap) -> ApiResult {
    authorize(&s.hub, &h, Rights::SERVICE_CONNECT)?;
    s.hub.clear_telemetry();
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn send_c2d(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    h: HeaderMap,
    body: Bytes,
) -> ApiResult {
    authorize(&s.hub, &h, Rights::SERVICE_CONNECT)?;
    if body.len() > 64 * 1024 {
        return Err(crate::error::HubRefusal::new(
            iot_common::ErrorCode::MessageTooLarge,
            "Cloud-to-device messages are limited to 64 KB.",
        ));
    }
    let mut p = MessageProperties::new();
    p.message_id = Some(
        q.get("messageId")
            .cloned()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
    );
    p.correlation_id = q.get("correlationId").cloned();
    p.content_type = q.get("contentType").cloned();
    p.content_encoding = q.get("contentEncoding").cloned();
    p.ack = q.get("ack").cloned();
    p.to = Some(format!("/devices/{id}/messages/devicebound"));
    let mut custom: Vec<_> = q
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("app.").map(|k| (k.to_owned(), v.clone())))
        .collect();
    custom.sort();
    p.custom = custom;
    let message_id = p.message_id.clone();
    s.hub.enqueue_c2d(
        &id,
        C2dMessage {
            properties: p,
            body,
            id: 0,
            enqueued_ms: 0,
        },
    )?;
    Ok(json(
        StatusCode::ACCEPTED,
        &serde_json::json!({ "messageId": message_id }),
        None,
    ))
}

async fn disconnect(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    h: HeaderMap,
) -> ApiResult {
    authorize(&s.hub, &h, Rights::SERVICE_CONNECT)?;
    let dropped = s.hub.disconnect(&id, q.get("moduleId").map(String::as_str));
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "disconnected": dropped }),
        None,
    ))
}

async fn disconnect_all(State(s): State<AppState>, h: HeaderMap) -> ApiResult {
    authorize(&s.hub, &h, Rights::SERVICE_CONNECT)?;
    let n = s.hub.disconnect_all();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "disconnected": n }),
        None,
    ))
}

async fn set_faults(State(s): State<AppState>, h: HeaderMap, body: Bytes) -> ApiResult {
    authorize(&s.hub, &h, Rights::SERVICE_CONNECT)?;
    let settings: crate::hub::FaultSettings = super::response::parse_json(&body)?;
    s.hub.faults.apply(&settings);
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "fired": s.hub.faults.fired() }),
        None,
    ))
}

async fn faults_fired(State(s): State<AppState>, h: HeaderMap) -> ApiResult {
    authorize(&s.hub, &h, Rights::SERVICE_CONNECT)?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "fired": s.hub.faults.fired() }),
        None,
    ))
}
