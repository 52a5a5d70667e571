//! The web console: a few pages of plain JavaScript served at `/`, embedded in the binary.
//!
//! The page reads and writes through the hub's own REST API (registry, twins, methods, query,
//! jobs) and the emulator's routes (C2D, faults), with an `iothubowner` SAS token it gets from
//! `GET /console/token`, so what the console shows is what the API returns. Live telemetry
//! and connection changes come from `GET /console/events` (server-sent events, see
//! [`events`]).
//!
//! Access: on a loopback address the console opens without a login (requests must name a
//! loopback or the hub's own host in `Host`, so that a web page elsewhere cannot reach it by
//! rebinding a DNS name to 127.0.0.1). On any other address every console route except the
//! static assets and the login needs a session cookie, obtained by posting the `iothubowner`
//! key to `POST /console/login` (see [`access`]).
//!
//! Routes:
//! - `GET /` — the console, or the login form when a login is needed.
//! - `GET /console/assets/{file}` — the page's script and style sheet.
//! - `POST /console/login` — form field `key`; sets the session cookie and redirects to `/`.
//! - `POST /console/logout` — clears the cookie.
//! - `GET /console/token` — `{authorization, expiresAt, hostName, deviceGateway,
//!   serviceConnectionString, loginRequired}`; 401 without access.
//! - `GET /console/events[?deviceId=]` — the live stream.

pub(crate) mod access;
mod assets;
pub(crate) mod events;

use super::AppState;
use crate::clock::unix_now;
use crate::error::HubRefusal;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use iot_common::sas::SasToken;

// The page asks for a new token before this runs out.
use crate::limits::CONSOLE_TOKEN_LIFETIME_SECS as TOKEN_LIFETIME_SECS;

/// The console's settings, fixed at start-up.
#[derive(Debug)]
pub(crate) struct Console {
    access: access::Access,
    /// The MQTT port devices dial, for the device connection strings the page shows.
    mqtt_port: u16,
}

impl Console {
    /// A console for an emulator bound to `bind` whose devices dial `mqtt_port`.
    pub(crate) fn new(bind: std::net::IpAddr, mqtt_port: u16) -> Self {
        Self {
            access: access::Access::new(bind.is_loopback()),
            mqtt_port,
        }
    }
}

/// The console's routes. They answer the emulator's usual JSON 404 when the console is off
/// (`--no-console`, [`crate::EmulatorBuilder::console`]).
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/console/assets/{file}", get(assets::serve))
        .route("/console/login", post(access::login))
        .route("/console/logout", post(access::logout))
        .route("/console/token", get(token))
        .route("/console/events", get(events::stream))
}

/// The console when it is on, else the 404 every unknown path gets.
pub(crate) async fn enabled(
    s: &AppState,
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> Result<&Console, Response> {
    match s.console.as_deref() {
        Some(c) => Ok(c),
        None => Err(super::not_emulated::not_found(method, uri).await),
    }
}

async fn index(
    State(s): State<AppState>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let console = match enabled(&s, method, uri).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    match console.access.check(&s.hub, &headers) {
        access::Verdict::Allowed => assets::page(assets::INDEX_HTML),
        access::Verdict::NeedsLogin => assets::page(assets::LOGIN_HTML),
        access::Verdict::WrongHost => access::wrong_host(),
    }
}

async fn token(
    State(s): State<AppState>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let console = match enabled(&s, method, uri).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if console.access.check(&s.hub, &headers) != access::Verdict::Allowed {
        return HubRefusal::unauthorized().into_response();
    }
    let host = s.hub.host_name().to_owned();
    let key = {
        let reg = crate::locks::lock(&s.hub.registry);
        reg.policies.get("iothubowner").map(|p| p.primary.clone())
    };
    let Some(key) = key else {
        return HubRefusal::unauthorized().into_response();
    };
    let expires_at = unix_now() + TOKEN_LIFETIME_SECS;
    let Ok(token) = SasToken::for_service(&host, "iothubowner", &key, expires_at) else {
        return HubRefusal::unauthorized().into_response();
    };
    let https_port = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.rsplit_once(':'))
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .unwrap_or(443);
    let service_host = if https_port == 443 {
        host.clone()
    } else {
        format!("{host}:{https_port}")
    };
    // As `RunningEmulator::device_connection_string`: a gateway only when devices cannot
    // dial the host name on the default port.
    let dial = if access::is_loopback_host(&headers) {
        "localhost"
    } else {
        host.as_str()
    };
    let device_gateway = (console.mqtt_port != 8883 || dial != host).then(|| {
        if console.mqtt_port == 8883 {
            dial.to_owned()
        } else {
            format!("{dial}:{}", console.mqtt_port)
        }
    });
    let body = serde_json::json!({
        "authorization": token.as_secret().expose(),
        "expiresAt": expires_at,
        "hostName": host,
        "deviceGateway": device_gateway,
        "loginRequired": console.access.login_required(),
        "serviceConnectionString": format!(
            "HostName={service_host};SharedAccessKeyName=iothubowner;SharedAccessKey={}",
            key.expose()
        ),
    });
    let mut r = super::json_response(StatusCode::OK, &body);
    r.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    r
}
