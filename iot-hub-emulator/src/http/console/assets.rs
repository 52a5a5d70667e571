//! The console's files, embedded in the binary: nothing to build or install beside it.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

pub(crate) const INDEX_HTML: &str = include_str!("../../../console/index.html");
pub(crate) const LOGIN_HTML: &str = include_str!("../../../console/login.html");
const CONSOLE_JS: &str = include_str!("../../../console/console.js");
const CONSOLE_CSS: &str = include_str!("../../../console/console.css");

/// Scripts and styles only from the emulator itself, no inline script, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

fn with_headers(mut r: Response, content_type: &'static str) -> Response {
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// An HTML page.
pub(crate) fn page(html: &'static str) -> Response {
    with_headers(html.into_response(), "text/html; charset=utf-8")
}

/// An HTML page made at run time.
pub(crate) fn page_owned(html: String) -> Response {
    with_headers(html.into_response(), "text/html; charset=utf-8")
}

/// `GET /console/assets/{file}`. Public: the files hold no data.
pub(crate) async fn serve(
    axum::extract::State(s): axum::extract::State<super::super::AppState>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    Path(file): Path<String>,
) -> Response {
    if let Err(r) = super::enabled(&s, method.clone(), uri.clone()).await {
        return r;
    }
    match file.as_str() {
        "console.js" => with_headers(CONSOLE_JS.into_response(), "text/javascript; charset=utf-8"),
        "console.css" => with_headers(CONSOLE_CSS.into_response(), "text/css; charset=utf-8"),
        _ => {
            let mut r = super::super::not_emulated::not_found(method, uri).await;
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    }
}
