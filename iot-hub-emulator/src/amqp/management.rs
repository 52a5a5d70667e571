//! The `$management` node of the Event Hub-compatible endpoint: `READ` of the event hub's
//! runtime information (`com.microsoft:eventhub`) and of a partition's
//! (`com.microsoft:partition`), answered on the client's `$management` receiver link with
//! the key names and AMQP types azure-eventhub reads (reference §4.2 step 5).

use super::connection::ConnState;
use crate::hub::event_log::PARTITIONS;
use fe2o3_amqp::link::delivery::Sendable;
use fe2o3_amqp::link::{Receiver, Sender};
use fe2o3_amqp::types::messaging::{
    AmqpValue, ApplicationProperties, Body, Message, MessageId, Properties,
};
use fe2o3_amqp::types::primitives::{Array, OrderedMap, SimpleValue, Timestamp, Value};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{Mutex, Notify};

/// How long an answer waits for the client's `$management` receiver link (or its credit).
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// The link the client receives `$management` answers on, once attached.
#[derive(Debug, Default)]
pub(super) struct ReplyLink {
    link: Mutex<Option<Sender>>,
    attached: Notify,
}

impl ReplyLink {
    pub(super) async fn set(&self, sender: Sender) {
        *self.link.lock().await = Some(sender);
        self.attached.notify_waiters();
    }

    /// Sends `answer`, waiting at most [`REPLY_TIMEOUT`] for the link and its credit.
    async fn send(&self, answer: Message<AmqpValue<Value>>) {
        let sent = tokio::time::timeout(REPLY_TIMEOUT, async {
            let mut slot = loop {
                // Registered before the check so an attach in between is not missed.
                let attached = self.attached.notified();
                let slot = self.link.lock().await;
                if slot.is_some() {
                    break slot;
                }
                drop(slot);
                attached.await;
            };
            let sendable = Sendable::builder().message(answer).settled(true).build();
            let result = match slot.as_mut() {
                Some(s) => s.send(sendable).await.map(|_| ()),
                None => Ok(()),
            };
            if result.is_err() {
                *slot = None;
            }
            result
        });
        match sent.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "$management answer not sent"),
            Err(_) => tracing::debug!("$management answer timed out"),
        }
    }
}

/// Answers requests until the link or the connection ends.
pub(super) async fn serve_requests(state: Arc<ConnState>, mut link: Receiver) {
    loop {
        let delivery = match link.recv::<Body<Value>>().await {
            Ok(d) => d,
            Err(e) => return tracing::debug!(error = %e, "$management link ended"),
        };
        let _ = link.accept(&delivery).await;
        let msg = delivery.message();
        let (status, description, body) = answer(&state, msg);
        let correlation_id: Option<MessageId> =
            msg.properties.as_ref().and_then(|p| p.message_id.clone());
        let reply = Message::builder()
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
            .value(body)
            .build();
        state.management_reply.send(reply).await;
    }
}

/// `(status-code, status-description, body)` for one request.
fn answer(state: &ConnState, msg: &Message<Body<Value>>) -> (i32, String, Value) {
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
    // A request carries its own token; a connection authorised on `$cbs` needs none.
    let token_ok =
        app("security_token").is_some_and(|t| super::cbs::check_token(state, None, t).is_ok());
    if !state.authorized.load(Ordering::Acquire) && !token_ok {
        return (401, "Put a valid token on $cbs first.".into(), Value::Null);
    }
    if app("operation") != Some("READ") {
        return (
            400,
            "Only the READ operation is supported.".into(),
            Value::Null,
        );
    }
    let hub = &state.hub;
    let name = hub.event_hub_name();
    if !app("name").is_some_and(|n| n.eq_ignore_ascii_case(name)) {
        return (
            404,
            format!(
                "The messaging entity '{}' could not be found.",
                app("name").unwrap_or("")
            ),
            Value::Null,
        );
    }
    let entry = |k: &str, v: Value| (Value::String(k.to_owned()), v);
    match app("type") {
        Some("com.microsoft:eventhub") => {
            let ids: Vec<Value> = (0..PARTITIONS)
                .map(|p| Value::String(p.to_string()))
                .collect();
            let map: OrderedMap<Value, Value> = [
                entry("name", Value::String(name.to_owned())),
                entry("type", Value::String("com.microsoft:eventhub".into())),
                entry(
                    "created_at",
                    Value::Timestamp(Timestamp::from_milliseconds(hub.events.created_ms())),
                ),
                entry("partition_count", Value::Int(PARTITIONS as i32)),
                entry("partition_ids", Value::Array(Array::from(ids))),
            ]
            .into_iter()
            .collect();
            (200, "OK".into(), Value::Map(map))
        }
        Some("com.microsoft:partition") => {
            let Some(p) = app("partition")
                .and_then(|p| p.parse::<u32>().ok())
                .filter(|p| *p < PARTITIONS)
            else {
                return (
                    404,
                    format!(
                        "Partition '{}' does not exist.",
                        app("partition").unwrap_or("")
                    ),
                    Value::Null,
                );
            };
            let info = hub.events.info(p);
            let map: OrderedMap<Value, Value> = [
                entry("name", Value::String(name.to_owned())),
                entry("type", Value::String("com.microsoft:partition".into())),
                entry("partition", Value::String(p.to_string())),
                entry(
                    "begin_sequence_number",
                    Value::Long(info.begin_sequence_number),
                ),
                entry(
                    "last_enqueued_sequence_number",
                    Value::Long(info.last_sequence_number),
                ),
                entry(
                    "last_enqueued_offset",
                    Value::String(info.last_offset.to_string()),
                ),
                entry(
                    "last_enqueued_time_utc",
                    Value::Timestamp(Timestamp::from_milliseconds(info.last_enqueued_ms)),
                ),
                entry("is_partition_empty", Value::Bool(info.is_empty)),
            ]
            .into_iter()
            .collect();
            (200, "OK".into(), Value::Map(map))
        }
        other => (
            400,
            format!("Unknown management type {:?}.", other.unwrap_or("")),
            Value::Null,
        ),
    }
}
