//! The service plane: HTTPS REST with the hub's paths, plus MQTT over WebSockets at
//! `/$iothub/websocket` on the same port, as the real hub serves both on 443.

//!
//! Adding an endpoint: its handler goes in the file of its area here (or a new one), one
//! `.route(..)` line goes in [`router`], and the operation it calls goes in `hub/`.

pub(crate) mod console;
mod dps_api;
mod emulator_api;
mod jobs_api;
mod not_emulated;
mod paging;
mod query_api;
mod registry_api;
mod response;
mod state;
mod twin_api;
mod ws;

pub(crate) use state::{AppState, StreamHandler};

/// A JSON answer without an etag.
pub(crate) fn json_response<T: serde::Serialize>(
    status: axum::http::StatusCode,
    body: &T,
) -> axum::response::Response {
    response::json(status, body, None)
}

use axum::Router;
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/twins/{id}",
            get(twin_api::get_twin)
                .patch(twin_api::patch_twin)
                .put(twin_api::put_twin),
        )
        .route("/twins/{id}/methods", post(twin_api::invoke_method))
        .route(
            "/twins/{id}/modules/{mid}",
            get(twin_api::get_module_twin)
                .patch(twin_api::patch_module_twin)
                .put(twin_api::put_module_twin),
        )
        .route(
            "/twins/{id}/modules/{mid}/methods",
            post(twin_api::invoke_module_method),
        )
        .route("/devices", get(registry_api::list_devices))
        .route("/devices/", get(registry_api::list_devices))
        .route("/devices/query", post(query_api::query_devices))
        .route(
            "/devices/{id}",
            get(registry_api::get_device)
                .put(registry_api::put_device)
                .delete(registry_api::delete_device),
        )
        .route("/devices/{id}/modules", get(registry_api::list_modules))
        .route(
            "/devices/{id}/modules/{mid}",
            get(registry_api::get_module)
                .put(registry_api::put_module)
                .delete(registry_api::delete_module),
        )
        .route("/statistics/devices", get(registry_api::device_statistics))
        .route("/statistics/service", get(registry_api::service_statistics))
        .route("/jobs/v2/query", get(jobs_api::query_jobs))
        .route(
            "/jobs/v2/{id}",
            get(jobs_api::get_job).put(jobs_api::put_job),
        )
        .route("/jobs/v2/{id}/cancel", post(jobs_api::cancel_job))
        .route("/$iothub/websocket", get(ws::upgrade))
        // uamqp (the Python service SDK's AmqpOverWebsocket) asks for this path.
        .route("/$servicebus/websocket", get(ws::upgrade))
        .route("/$servicebus/websocket/", get(ws::upgrade))
        .merge(dps_api::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            rest_faults,
        ))
        .merge(emulator_api::routes())
        .merge(console::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            durable_answers,
        ))
        .fallback(not_emulated::not_found)
        .method_not_allowed_fallback(not_emulated::method_not_allowed)
        .with_state(state)
}

/// Accepts HTTPS connections until shutdown.
///
/// `idle` closes connections that do not send a complete request head in time: silent after
/// the handshake, idle between keep-alive requests, or stalled part-way through a head.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    tls: TlsAcceptor,
    idle: Duration,
    state: AppState,
) {
    let app = router(state.clone());
    let mut shutdown = state.shutdown.clone();
    loop {
        let (tcp, _peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let _ = tcp.set_nodelay(true);
        let tls = tls.clone();
        let app = app.clone();
        let mut conn_shutdown = state.shutdown.clone();
        tokio::spawn(async move {
            let Ok(Ok(stream)) =
                tokio::time::timeout(crate::limits::TLS_HANDSHAKE_TIMEOUT, tls.accept(tcp)).await
            else {
                return;
            };
            // The client certificate chain travels with each request, for MQTT over WebSockets.
            let peer = crate::client_cert::peer_chain(stream.get_ref().1);
            let app = tower::ServiceExt::map_request(
                app,
                move |mut r: hyper::Request<hyper::body::Incoming>| {
                    r.extensions_mut().insert(peer.clone());
                    r
                },
            );
            let service = TowerToHyperService::new(app);
            // HTTP/1.1 only (ALPN offers nothing else): hyper-util's auto builder would sniff
            // the version with a read that has no timeout. hyper's header-read timer also runs
            // while a keep-alive connection waits for its next request, so it is the idle
            // timeout too; without a timer it never fires.
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(idle);
            let conn = builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::select! {
                _ = conn => {}
                _ = conn_shutdown.changed() => {}
            }
        });
    }
}

/// A successful answer to a request that may have changed something goes out only once
/// the change is committed to `--state`: what a client was told succeeded survives a crash.
async fn durable_answers(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let reads_only = matches!(
        *request.method(),
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    );
    let response = next.run(request).await;
    if reads_only || !response.status().is_success() {
        return response;
    }
    match state.hub.wait_durable(state.hub.durable_seq()).await {
        Ok(()) => response,
        Err(e) => e.into_response(),
    }
}

/// Answers with an injected 429 or 503 when one is armed (emulator-only paths are exempt).
async fn rest_faults(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    if let Some((throttled, retry_after)) = state.hub.faults.rest_fault() {
        let e = if throttled {
            crate::error::HubRefusal::new(
                iot_common::ErrorCode::ThrottlingException,
                "The request was throttled (fault injection).",
            )
        } else {
            crate::error::HubRefusal::new(
                iot_common::ErrorCode::ServiceUnavailable,
                "The service is unavailable (fault injection).",
            )
        };
        let mut r = e.into_response();
        if let Ok(v) = axum::http::HeaderValue::from_str(&retry_after.to_string()) {
            r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
        }
        return r;
    }
    next.run(request).await
}
