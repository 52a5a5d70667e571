//! Answers for routes the emulator does not serve: the hub's JSON error body and
//! `iothub-errorcode`, with a message that tells "the emulator does not implement this" apart
//! from "no such path", so a user of an SDK feature we lack is not left guessing.

use crate::error::HubRefusal;
use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};
use iot_common::ErrorCode;

/// Route families the real hub serves and the emulator does not (yet), by path prefix.
const NOT_EMULATED: &[(&str, &str)] = &[
    (
        "/configurations",
        "automatic device and module configurations",
    ),
    ("/digitaltwins", "the digital twin API"),
    ("/jobs/create", "import and export jobs"),
    ("/jobs/", "import and export jobs"),
    ("/messages/servicebound/feedback", "C2D feedback over HTTPS"),
    (
        "/messages/servicebound/filenotifications",
        "file upload notifications",
    ),
    ("/messages/devicebound", "device messaging over HTTPS"),
    ("/files", "file upload"),
    ("/devices/query", "this method on the query API"),
];

fn family(method: &Method, path: &str) -> Option<&'static str> {
    let lower = path.to_ascii_lowercase();
    if method == Method::POST && (lower == "/devices" || lower == "/devices/") {
        return Some("bulk registry operations");
    }
    if lower.starts_with("/devices/") && lower.contains("/messages/") {
        return Some("device messaging over HTTPS");
    }
    if lower.starts_with("/jobs/v2/") {
        return None;
    }
    if lower.starts_with("/devices/") && lower.contains("/files") {
        return Some("file upload");
    }
    NOT_EMULATED
        .iter()
        .find(|(prefix, _)| lower.starts_with(prefix))
        .map(|(_, what)| *what)
}

fn answer(code: ErrorCode, method: &Method, uri: &Uri) -> Response {
    // Only the path is echoed: a query string may carry a SAS token.
    let path = uri.path();
    let message = match family(method, path) {
        Some(what) => format!(
            "The IoT Hub emulator does not implement {method} {path} ({what}); the real hub serves it. The emulator's README lists the routes it serves."
        ),
        None => format!(
            "No route {method} {path} on this hub: check the path, the HTTP method and api-version."
        ),
    };
    let code = if family(method, path).is_some() {
        ErrorCode::GenericNotFound
    } else {
        code
    };
    HubRefusal::new(code, message).into_response()
}

/// The router's fallback: no route matched the path.
pub(crate) async fn not_found(method: Method, uri: Uri) -> Response {
    answer(ErrorCode::GenericNotFound, &method, &uri)
}

/// The path matched a route that does not take this method.
pub(crate) async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    answer(ErrorCode::GenericMethodNotAllowed, &method, &uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_families_are_named_and_unknown_paths_are_not() {
        assert_eq!(
            family(&Method::GET, "/configurations/c1"),
            Some("automatic device and module configurations")
        );
        assert_eq!(
            family(&Method::POST, "/devices"),
            Some("bulk registry operations")
        );
        assert_eq!(
            family(&Method::POST, "/devices/d1/messages/events"),
            Some("device messaging over HTTPS")
        );
        assert_eq!(family(&Method::GET, "/no/such/thing"), None);
    }
}
