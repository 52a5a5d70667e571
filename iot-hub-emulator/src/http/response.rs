//! Turning results into the hub's HTTP answers: JSON with `charset=utf-8`, `ETag` headers,
//! and the hub's error body with `iothub-errorcode`.

use crate::clock::now_string;
use crate::error::HubRefusal;
use crate::hub::Hub;
use crate::hub::registry::Rights;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub(crate) type ApiResult = Result<Response, HubRefusal>;

pub(crate) const JSON: &str = "application/json; charset=utf-8";

impl IntoResponse for HubRefusal {
    fn into_response(self) -> Response {
        let tracking = uuid::Uuid::new_v4().simple().to_string();
        let now = now_string();
        let body = iot_common::status::error_body(
            self.code,
            &self.message,
            &format!("{tracking}-TimeStamp:{now}"),
            &now,
            self.info,
        );
        let status =
            StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
        let mut r = (status, body).into_response();
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
        if let Ok(v) = HeaderValue::from_str(self.code.name()) {
            h.insert("iothub-errorcode", v);
        }
        r
    }
}

/// A JSON answer with an optional quoted `ETag` header.
pub(crate) fn json<T: Serialize>(status: StatusCode, body: &T, etag: Option<&str>) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut r = (status, bytes).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    if let Some(tag) = etag
        && let Ok(v) = HeaderValue::from_str(&format!("\"{tag}\""))
    {
        h.insert(header::ETAG, v);
    }
    r
}

/// Checks the request's SAS token for `needed`.
pub(crate) fn authorize(hub: &Hub, headers: &HeaderMap, needed: Rights) -> Result<(), HubRefusal> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    hub.authorize(auth, needed)
}

/// The `If-Match` header, if any.
pub(crate) fn if_match(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok())
}

/// Parses a JSON body, answering 400 ArgumentInvalid when it does not fit.
pub(crate) fn parse_json<T: DeserializeOwned>(body: &Bytes) -> Result<T, HubRefusal> {
    serde_json::from_slice(body)
        .map_err(|e| HubRefusal::bad_request(format!("The request body is not valid: {e}")))
}
