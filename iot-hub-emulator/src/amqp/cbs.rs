//! The `$cbs` node: a client puts a service SAS token; a valid one (a policy with
//! `ServiceConnect`, for this hub) authorises the connection's other links.

use super::connection::ConnState;
use crate::hub::registry::Rights;
use fe2o3_amqp::link::Receiver;
use fe2o3_amqp::link::delivery::Sendable;
use fe2o3_amqp::types::messaging::{ApplicationProperties, Body, Message, Properties};
use fe2o3_amqp::types::primitives::{SimpleValue, Value};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How long an answer waits for the client's `$cbs` receiver link (or for its credit).
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Answers put-token requests until the link or the connection ends.
pub(super) async fn serve_requests(state: Arc<ConnState>, mut link: Receiver) {
    loop {
        let delivery = match link.recv::<Body<Value>>().await {
            Ok(d) => d,
            Err(e) => return tracing::debug!(error = %e, "$cbs link ended"),
        };
        let _ = link.accept(&delivery).await;
        let (status, description) = put_token(&state, delivery.message());
        let message_id = delivery
            .message()
            .properties
            .as_ref()
            .and_then(|p| p.message_id.clone());
        reply(&state, message_id, status, description).await;
    }
}

/// Validates one request: `(status-code, status-description)`.
fn put_token(state: &ConnState, msg: &Message<Body<Value>>) -> (i32, String) {
    let app = |key: &str| {
        msg.application_properties
            .as_ref()
            .and_then(|a| a.0.get(key))
            .and_then(|v| match v {
                SimpleValue::String(s) => Some(s.as_str()),
                SimpleValue::Symbol(s) => Some(s.as_str()),
                _ => None,
            })
    };
    if app("operation") != Some("put-token") {
        return (400, "Only the put-token operation is supported.".to_owned());
    }
    let token = match &msg.body {
        Body::Value(v) => match &v.0 {
            Value::String(s) => s.as_str(),
            _ => return (400, "The token must be an AMQP string.".to_owned()),
        },
        _ => return (400, "The token must be an AMQP value.".to_owned()),
    };
    match check_token(state, Some(app("name").unwrap_or_default()), token) {
        Ok(()) => {
            state.authorized.store(true, Ordering::Release);
            (200, "OK".to_owned())
        }
        Err(e) => (401, e),
    }
}

/// Checks a service token: for this hub (the audience `name`, when given, names its host:
/// `{host}` or `https://{host}` for the hub, `sb://{host}/{entity}` for the Event
/// Hub-compatible endpoint) and signed by a policy with `ServiceConnect`.
pub(super) fn check_token(
    state: &ConnState,
    name: Option<&str>,
    token: &str,
) -> Result<(), String> {
    let host = state.hub.host_name();
    if name.is_some_and(|n| !iot_common::sas::scope_covers(host, audience_host(n))) {
        return Err(format!("The token's audience is not {host}."));
    }
    state
        .hub
        .authorize(Some(token), Rights::SERVICE_CONNECT)
        .map_err(|e| e.message)
}

/// `https://h/x`, `amqps://h`, `sb://h/` and `h` all name host `h`.
fn audience_host(name: &str) -> &str {
    let rest = name.split_once("://").map_or(name, |(_, r)| r);
    rest.split('/').next().unwrap_or("")
}

/// Sends the answer on the client's `$cbs` receiver link, with `correlation_id` of the same
/// AMQP type as the request's `message_id` (rhea hangs on any other type).
async fn reply(
    state: &ConnState,
    correlation_id: Option<fe2o3_amqp::types::messaging::MessageId>,
    status: i32,
    description: String,
) {
    let answer = Message::builder()
        .properties(Properties {
            correlation_id,
            ..Default::default()
        })
        .application_properties(
            ApplicationProperties::builder()
                .insert("status-code", SimpleValue::Int(status))
                .insert("status-description", SimpleValue::String(description))
                .build(),
        )
        .value(Value::Null)
        .build();
    let sent = tokio::time::timeout(REPLY_TIMEOUT, async {
        let mut slot = loop {
            // Registered before the check so an attach in between is not missed.
            let attached = state.cbs_reply_attached.notified();
            let slot = state.cbs_reply.lock().await;
            if slot.is_some() {
                break slot;
            }
            drop(slot);
            attached.await;
        };
        let sendable = Sendable::builder().message(answer).settled(true).build();
        let result = match slot.as_mut() {
            Some(sender) => sender.send(sendable).await.map(|_| ()),
            None => Ok(()),
        };
        if result.is_err() {
            // A closed link: forget it, so the next request waits for the client's new one.
            *slot = None;
        }
        result
    });
    match sent.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "$cbs answer not sent"),
        Err(_) => tracing::debug!("$cbs answer timed out (no receiver link or no credit)"),
    }
}

#[cfg(test)]
mod tests {
    use super::audience_host;

    #[test]
    fn audience_with_or_without_scheme() {
        assert_eq!(audience_host("https://h.net"), "h.net");
        assert_eq!(audience_host("sb://h.net/x/y"), "h.net");
        assert_eq!(audience_host("h.net"), "h.net");
    }
}
