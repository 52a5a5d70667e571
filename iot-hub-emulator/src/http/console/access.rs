//! Who may use the console.
//!
//! On loopback anyone on the machine may (as with the development keys), provided the request
//! names a loopback host or the hub's host name: a page on another site that rebinds its DNS
//! name to 127.0.0.1 sends its own name in `Host` and is refused.
//!
//! Elsewhere the `iothubowner` key is the login. It is posted once to `/console/login`, compared
//! in constant time, never logged, and traded for a session cookie: `HttpOnly` (scripts cannot
//! read it), `Secure` (HTTPS only), `SameSite=Strict` (other sites cannot ride on it), signed
//! with a key made at start-up (a restart logs everyone out) and valid for
//! `limits::CONSOLE_SESSION_SECS` (8 hours).

use super::super::AppState;
use super::assets;
use crate::clock::unix_now;
use crate::hub::Hub;
use crate::locks::lock;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use iot_common::Secret;
use iot_common::sas::SasToken;

/// The session cookie's name.
pub(crate) const COOKIE: &str = "iothub-console";
use crate::limits::CONSOLE_SESSION_SECS as SESSION_SECS;
/// The resource the session cookie is signed for.
const SESSION_RESOURCE: &str = "iothub-console-session";
const SAS_PREFIX: &str = "SharedAccessSignature ";

/// The access rule and the cookie-signing key.
pub(crate) struct Access {
    loopback: bool,
    cookie_key: Secret,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("loopback", &self.loopback)
            .finish_non_exhaustive()
    }
}

/// What a request may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allowed,
    NeedsLogin,
    /// On loopback, a request for a host name that is neither loopback nor the hub's.
    WrongHost,
}

impl Access {
    pub(crate) fn new(loopback: bool) -> Self {
        Self {
            loopback,
            cookie_key: crate::hub::registry::generate_key(),
        }
    }

    /// Whether this console asks for the key (it is not on loopback).
    pub(crate) fn login_required(&self) -> bool {
        !self.loopback
    }

    pub(crate) fn check(&self, hub: &Hub, headers: &HeaderMap) -> Verdict {
        if self.loopback {
            let hub_host =
                host_of(headers).is_some_and(|h| h.eq_ignore_ascii_case(hub.host_name()));
            return if is_loopback_host(headers) || hub_host {
                Verdict::Allowed
            } else {
                Verdict::WrongHost
            };
        }
        if self.session_valid(headers) {
            Verdict::Allowed
        } else {
            Verdict::NeedsLogin
        }
    }

    fn session_valid(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .filter(|(name, _)| *name == COOKIE)
            .any(|(_, value)| {
                SasToken::parse(&format!("{SAS_PREFIX}{value}")).is_ok_and(|t| {
                    t.raw_resource() == SESSION_RESOURCE
                        && t.check_expiry(unix_now()).is_ok()
                        && t.verify(&self.cookie_key).is_ok()
                })
            })
    }

    fn new_session(&self) -> Option<String> {
        let token = SasToken::sign(
            SESSION_RESOURCE,
            &self.cookie_key,
            None,
            unix_now() + SESSION_SECS,
        )
        .ok()?;
        token
            .as_secret()
            .expose()
            .strip_prefix(SAS_PREFIX)
            .map(str::to_owned)
    }
}

/// The host part of the `Host` header.
fn host_of(headers: &HeaderMap) -> Option<&str> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    Some(match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => host.split(':').next().unwrap_or(host),
    })
}

/// Whether the request's `Host` names this machine (`localhost`, 127.0.0.0/8 or `::1`).
pub(crate) fn is_loopback_host(headers: &HeaderMap) -> bool {
    host_of(headers).is_some_and(|h| {
        h.eq_ignore_ascii_case("localhost")
            || h.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    })
}

pub(crate) fn wrong_host() -> Response {
    (
        StatusCode::FORBIDDEN,
        "The console on a loopback address answers only to localhost, a loopback address or the hub's host name.",
    )
        .into_response()
}

/// Equal without telling, through timing, how much of a guess was right.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `key` field of an `application/x-www-form-urlencoded` body.
fn form_key(body: &[u8]) -> Option<String> {
    let body = std::str::from_utf8(body).ok()?;
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == "key")
        .and_then(|(_, v)| {
            iot_common::encoding::decode(&v.replace('+', " "))
                .ok()
                .map(|v| v.trim().to_owned())
        })
}

/// `POST /console/login` with the form field `key`: the `iothubowner` primary or secondary key.
pub(crate) async fn login(
    State(s): State<AppState>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    body: Bytes,
) -> Response {
    let console = match super::enabled(&s, method, uri).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let given = form_key(&body).unwrap_or_default();
    let accepted = {
        let reg = lock(&s.hub.registry);
        reg.policies.get("iothubowner").is_some_and(|p| {
            // Both compared, so the time taken does not tell which key matched.
            let primary = same_bytes(given.as_bytes(), p.primary.expose().as_bytes());
            let secondary = same_bytes(given.as_bytes(), p.secondary.expose().as_bytes());
            !given.is_empty() && (primary | secondary)
        })
    };
    let session = accepted.then(|| console.access.new_session()).flatten();
    let Some(session) = session else {
        let page = assets::LOGIN_HTML.replace(
            "<!--error-->",
            "<p class=\"error\" role=\"alert\" id=\"login-error\">That is not the iothubowner key.</p>",
        );
        let mut r = assets::page_owned(page);
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        return r;
    };
    let cookie = format!(
        "{COOKIE}={session}; Path=/; Max-Age={SESSION_SECS}; HttpOnly; Secure; SameSite=Strict"
    );
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// `POST /console/logout`: clears the session cookie.
pub(crate) async fn logout(
    State(s): State<AppState>,
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> Response {
    if let Err(r) = super::enabled(&s, method, uri).await {
        return r;
    }
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "iothub-console=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict",
        ),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_keys_are_percent_decoded_and_plus_is_a_space() {
        assert_eq!(form_key(b"key=ab%2Bc%3D%3D").as_deref(), Some("ab+c=="));
        assert_eq!(form_key(b"x=1&key=a+b").as_deref(), Some("a b"));
        assert_eq!(form_key(b"nokey=1"), None);
        assert_eq!(form_key(&[0xFF, 0xFE]), None);
    }

    #[test]
    fn a_session_cookie_is_valid_only_with_the_key_that_signed_it() {
        let a = Access::new(false);
        let b = Access::new(false);
        let session = a.new_session().unwrap_or_default();
        let mut h = HeaderMap::new();
        let cookie = format!("other=1; {COOKIE}={session}");
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&cookie).unwrap_or(HeaderValue::from_static("")),
        );
        assert!(a.session_valid(&h));
        assert!(!b.session_valid(&h));
        assert!(!a.session_valid(&HeaderMap::new()));
    }

    #[test]
    fn loopback_hosts_are_recognised_with_and_without_ports() {
        for (host, expected) in [
            ("localhost:8443", true),
            ("127.0.0.1", true),
            ("[::1]:8443", true),
            ("evil.example:8443", false),
            ("10.0.0.1", false),
        ] {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_static(host));
            assert_eq!(is_loopback_host(&h), expected, "{host}");
        }
    }

    #[test]
    fn debug_output_holds_no_key() {
        let a = Access::new(false);
        assert!(!format!("{a:?}").contains(a.cookie_key.expose()));
    }
}
