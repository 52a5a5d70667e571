//! One telemetry event as read from the Event Hub-compatible endpoint.

use bytes::Bytes;
use fe2o3_amqp::types::messaging::annotations::OwnedKey;
use fe2o3_amqp::types::messaging::{Body, Message, MessageId};
use fe2o3_amqp::types::primitives::{SimpleValue, Symbol, Value};
use iot_common::Timestamp;

/// A device-to-cloud message with what the hub added to it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Event {
    /// The payload, byte for byte.
    pub body: Bytes,
    /// Application properties (the device's message properties), in the order received.
    pub properties: Vec<(String, String)>,
    /// The message's system properties (`$.mid`, `$.cid`, `$.ct`, `$.ce`, `$.uid`).
    pub system: SystemProperties,
    /// The sending device.
    pub device_id: String,
    /// The sending module, for module messages.
    pub module_id: Option<String>,
    /// When the hub enqueued it.
    pub enqueued_time: Timestamp,
    /// Where it is: partition id, sequence number (per partition) and offset.
    pub partition: String,
    /// Increases by one per event in its partition.
    pub sequence_number: i64,
    /// Event Hubs' offset of the event in its partition.
    pub offset: String,
}

/// The system properties a device can set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SystemProperties {
    /// Message id.
    pub message_id: Option<String>,
    /// Correlation id.
    pub correlation_id: Option<String>,
    /// Content type, e.g. `application/json`.
    pub content_type: Option<String>,
    /// Content encoding, e.g. `utf-8`.
    pub content_encoding: Option<String>,
    /// User id.
    pub user_id: Option<String>,
}

impl Event {
    /// The application property `key`, if present.
    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text, when it is UTF-8.
    pub fn body_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }

    /// Reads an event; `None` when it lacks the annotations every Event Hubs event carries
    /// (sequence number, offset, enqueued time).
    pub(super) fn from_message(partition: &str, msg: Message<Body<Value>>) -> Option<Self> {
        let ann = msg.message_annotations.map(|a| a.0).unwrap_or_default();
        let get = |k: &str| ann.get(&OwnedKey::from(Symbol::from(k)));
        let sequence_number = match get("x-opt-sequence-number")? {
            Value::Long(n) => *n,
            Value::Int(n) => i64::from(*n),
            _ => return None,
        };
        let offset = value_string(get("x-opt-offset")?)?;
        let enqueued_ms = match get("x-opt-enqueued-time")? {
            Value::Timestamp(t) => t.milliseconds(),
            _ => return None,
        };
        let enqueued = std::time::UNIX_EPOCH
            + std::time::Duration::from_millis(u64::try_from(enqueued_ms).unwrap_or(0));
        let device_id = get("iothub-connection-device-id")
            .and_then(value_string)
            .unwrap_or_default();
        let module_id = get("iothub-connection-module-id").and_then(value_string);
        let p = msg.properties.unwrap_or_default();
        let system = SystemProperties {
            message_id: p.message_id.as_ref().map(id_string),
            correlation_id: p.correlation_id.as_ref().map(id_string),
            content_type: p.content_type.map(Symbol::into_inner),
            content_encoding: p.content_encoding.map(Symbol::into_inner),
            user_id: p
                .user_id
                .map(|u| String::from_utf8_lossy(u.as_ref()).into_owned()),
        };
        let properties = msg
            .application_properties
            .map(|a| a.0)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| simple_string(&v).map(|v| (k, v)))
            .collect();
        let body = match msg.body {
            Body::Data(batch) => {
                let mut all = Vec::new();
                for d in batch.iter() {
                    all.extend_from_slice(&d.0);
                }
                Bytes::from(all)
            }
            Body::Value(v) => match v.0 {
                Value::String(s) => Bytes::from(s.into_bytes()),
                Value::Binary(b) => Bytes::from(b.into_vec()),
                _ => Bytes::new(),
            },
            _ => Bytes::new(),
        };
        Some(Self {
            body,
            properties,
            system,
            device_id,
            module_id,
            enqueued_time: enqueued.into(),
            partition: partition.to_owned(),
            sequence_number,
            offset,
        })
    }
}

fn value_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Symbol(s) => Some(s.as_str().to_owned()),
        Value::Long(n) => Some(n.to_string()),
        _ => None,
    }
}

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
        SimpleValue::Int(n) => n.to_string(),
        SimpleValue::Long(n) => n.to_string(),
        SimpleValue::Uint(n) => n.to_string(),
        SimpleValue::Ulong(n) => n.to_string(),
        SimpleValue::Double(n) => n.to_string(),
        SimpleValue::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        _ => return None,
    })
}
