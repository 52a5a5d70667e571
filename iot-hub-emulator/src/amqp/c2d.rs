//! The `/messages/devicebound` node: each message is queued for the device named by its `to`,
//! through the same hub operation as the emulator's HTTP C2D route, and settled only once the
//! queue (and `--state`) holds it.

use super::connection::ConnState;
use crate::error::HubRefusal;
use crate::hub::C2dMessage;
use bytes::Bytes;
use fe2o3_amqp::link::Receiver;
use fe2o3_amqp::types::definitions::{self, AmqpError, ErrorCondition};
use fe2o3_amqp::types::messaging::{Body, Message, MessageId};
use fe2o3_amqp::types::primitives::{SimpleValue, Symbol, Value};
use iot_common::{ErrorCode, MessageProperties};
use std::sync::Arc;

/// IoT Hub's limit on a cloud-to-device message body.
const MAX_BODY: usize = 64 * 1024;

/// Queues the link's messages until the link or the connection ends.
pub(super) async fn serve_sends(state: Arc<ConnState>, mut link: Receiver) {
    loop {
        let delivery = match link.recv::<Body<Value>>().await {
            Ok(d) => d,
            Err(e) => return tracing::debug!(error = %e, "devicebound link ended"),
        };
        let outcome = match enqueue(&state, delivery.message()).await {
            Ok(()) => link.accept(&delivery).await,
            Err(e) => link.reject(&delivery, e).await,
        };
        if let Err(e) = outcome {
            return tracing::debug!(error = %e, "devicebound disposition failed");
        }
    }
}

async fn enqueue(state: &ConnState, msg: &Message<Body<Value>>) -> Result<(), definitions::Error> {
    let props = msg.properties.clone().unwrap_or_default();
    let to = props.to.clone().unwrap_or_default();
    let device_id = to
        .strip_prefix("/devices/")
        .and_then(|r| r.strip_suffix("/messages/devicebound"))
        .filter(|d| !d.is_empty() && !d.contains('/'))
        .ok_or_else(|| {
            error(
                AmqpError::InvalidField,
                format!("'to' must be /devices/{{deviceId}}/messages/devicebound, not '{to}'."),
            )
        })?;
    let body = body_bytes(&msg.body)?;
    if body.len() > MAX_BODY {
        return Err(refusal(HubRefusal::new(
            ErrorCode::MessageTooLarge,
            "Cloud-to-device messages are limited to 64 KB.",
        )));
    }
    let mut p = MessageProperties::new();
    p.message_id = Some(
        props
            .message_id
            .as_ref()
            .map(id_string)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
    );
    p.correlation_id = props.correlation_id.as_ref().map(id_string);
    p.content_type = props.content_type.map(Symbol::into_inner);
    p.content_encoding = props.content_encoding.map(Symbol::into_inner);
    p.expiry_time = props.absolute_expiry_time.and_then(|t| {
        chrono::DateTime::from_timestamp_millis(t.milliseconds())
            .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    });
    p.to = Some(to.clone());
    for (k, v) in msg.application_properties.iter().flat_map(|a| a.0.iter()) {
        let Some(v) = simple_string(v) else { continue };
        if k == "iothub-ack" {
            p.ack = Some(v);
        } else {
            p.custom.push((k.clone(), v));
        }
    }
    let seq = state
        .hub
        .enqueue_c2d(
            device_id,
            C2dMessage {
                properties: p,
                body,
                id: 0,
                enqueued_ms: 0,
            },
        )
        .map_err(refusal)?;
    // Accepted means queued durably: a restart with --state still delivers it.
    state.hub.wait_durable(seq).await.map_err(refusal)
}

fn body_bytes(body: &Body<Value>) -> Result<Bytes, definitions::Error> {
    match body {
        Body::Data(batch) => {
            let mut all = Vec::new();
            for d in batch.iter() {
                all.extend_from_slice(&d.0);
            }
            Ok(Bytes::from(all))
        }
        Body::Value(v) => match &v.0 {
            Value::String(s) => Ok(Bytes::from(s.clone().into_bytes())),
            Value::Binary(b) => Ok(Bytes::from(b.to_vec())),
            _ => Err(error(
                AmqpError::DecodeError,
                "An amqp-value body must be a string or binary.".to_owned(),
            )),
        },
        Body::Empty => Ok(Bytes::new()),
        Body::Sequence(_) => Err(error(
            AmqpError::DecodeError,
            "amqp-sequence bodies are not supported; send data sections.".to_owned(),
        )),
    }
}

/// A message or correlation id as the MQTT property bag carries it.
fn id_string(id: &MessageId) -> String {
    match id {
        MessageId::Ulong(n) => n.to_string(),
        MessageId::Uuid(u) => uuid::Uuid::from_bytes(*u.as_inner()).to_string(),
        MessageId::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        MessageId::String(s) => s.clone(),
    }
}

fn simple_string(v: &SimpleValue) -> Option<String> {
    Some(match v {
        SimpleValue::String(s) => s.clone(),
        SimpleValue::Symbol(s) => s.as_str().to_owned(),
        SimpleValue::Bool(b) => b.to_string(),
        SimpleValue::Ubyte(n) => n.to_string(),
        SimpleValue::Ushort(n) => n.to_string(),
        SimpleValue::Uint(n) => n.to_string(),
        SimpleValue::Ulong(n) => n.to_string(),
        SimpleValue::Byte(n) => n.to_string(),
        SimpleValue::Short(n) => n.to_string(),
        SimpleValue::Int(n) => n.to_string(),
        SimpleValue::Long(n) => n.to_string(),
        SimpleValue::Float(n) => n.to_string(),
        SimpleValue::Double(n) => n.to_string(),
        SimpleValue::Uuid(u) => uuid::Uuid::from_bytes(*u.as_inner()).to_string(),
        _ => return None,
    })
}

fn error(condition: AmqpError, description: String) -> definitions::Error {
    definitions::Error::new(
        ErrorCondition::AmqpError(condition),
        Some(description),
        None,
    )
}

/// The hub's refusal as an AMQP error: unknown device is `amqp:not-found` (what the SDKs
/// expect); the others carry IoT Hub's error name as the description.
fn refusal(e: HubRefusal) -> definitions::Error {
    match e.code {
        ErrorCode::DeviceNotFound => error(AmqpError::NotFound, e.message),
        code => definitions::Error::new(
            ErrorCondition::Custom(Symbol::from(format!("com.microsoft:{}", code.code()))),
            Some(format!("{code:?}")),
            None,
        ),
    }
}
