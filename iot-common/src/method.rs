//! Direct methods: the service's request body, the hub's result, and the device-side
//! request and response.

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;

/// Largest request or response payload the hub carries, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 128 * 1024;
/// The response timeout used when none is given, in seconds.
pub const DEFAULT_RESPONSE_TIMEOUT_SECS: u64 = 30;
/// Allowed range of `responseTimeoutInSeconds`.
pub const RESPONSE_TIMEOUT_RANGE: std::ops::RangeInclusive<u64> = 5..=300;
/// Allowed range of `connectTimeoutInSeconds`.
pub const CONNECT_TIMEOUT_RANGE: std::ops::RangeInclusive<u64> = 0..=300;

/// Why a direct-method request is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MethodInvocationError {
    /// The method name is empty or has a character the hub refuses.
    #[error("invalid method name")]
    InvalidName,
    /// The response timeout is outside 5–300 s.
    #[error("responseTimeoutInSeconds must be between 5 and 300")]
    ResponseTimeout,
    /// The connect timeout is outside 0–300 s.
    #[error("connectTimeoutInSeconds must be between 0 and 300")]
    ConnectTimeout,
    /// The payload is larger than 128 KB.
    #[error("method payload is {0} bytes, over the 128 KB limit")]
    PayloadTooLarge(usize),
    /// The payload is not JSON.
    #[error("method payload is not valid JSON")]
    NotJson,
}

/// Checks a method name: printable ASCII without `$ ( ) < > @ , ; : \ " / [ ] ? = { }`,
/// space, tab, `#` or `+` (the last two would break the MQTT topic).
pub fn validate_method_name(name: &str) -> Result<(), MethodInvocationError> {
    const FORBIDDEN: &[u8] = b"$()<>@,;:\\\"/[]?={} \t#+";
    if name.is_empty()
        || name.len() > 1024
        || !name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !FORBIDDEN.contains(&b))
    {
        return Err(MethodInvocationError::InvalidName);
    }
    Ok(())
}

/// The body of `POST /twins/{id}/methods` (the REST API's `CloudToDeviceMethod`). Built by
/// iot-service's `DirectMethodRequest`; taken by the emulator's `invoke_method`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct MethodInvocation {
    /// The method name.
    pub method_name: String,
    /// The JSON payload handed to the device.
    #[serde(default)]
    pub payload: Value,
    /// How long the hub waits for the device's answer (5–300 s, default 30).
    #[serde(
        default,
        alias = "timeoutInSeconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub response_timeout_in_seconds: Option<u64>,
    /// How long the hub waits for an offline device to connect (0–300 s, default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout_in_seconds: Option<u64>,
}

impl MethodInvocation {
    /// A request with the default timeouts.
    pub fn new(method_name: impl Into<String>, payload: Value) -> Self {
        Self {
            method_name: method_name.into(),
            payload,
            response_timeout_in_seconds: None,
            connect_timeout_in_seconds: None,
        }
    }

    /// The response timeout, defaulted.
    pub fn response_timeout(&self) -> u64 {
        self.response_timeout_in_seconds
            .unwrap_or(DEFAULT_RESPONSE_TIMEOUT_SECS)
    }

    /// The connect timeout, defaulted to 0.
    pub fn connect_timeout(&self) -> u64 {
        self.connect_timeout_in_seconds.unwrap_or(0)
    }

    /// Checks name, timeouts and payload size as the hub does.
    ///
    /// # Errors
    /// The first [`MethodInvocationError`] found.
    pub fn validate(&self) -> Result<(), MethodInvocationError> {
        validate_method_name(&self.method_name)?;
        if !RESPONSE_TIMEOUT_RANGE.contains(&self.response_timeout()) {
            return Err(MethodInvocationError::ResponseTimeout);
        }
        if !CONNECT_TIMEOUT_RANGE.contains(&self.connect_timeout()) {
            return Err(MethodInvocationError::ConnectTimeout);
        }
        let size = serde_json::to_vec(&self.payload).map_or(0, |v| v.len());
        if size > MAX_PAYLOAD_BYTES {
            return Err(MethodInvocationError::PayloadTooLarge(size));
        }
        Ok(())
    }
}

/// The hub's answer to a method invocation (the REST API's `CloudToDeviceMethodResult`): the device's status
/// and JSON payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MethodInvocationResult {
    /// The status the device answered with (not the HTTP status).
    pub status: i32,
    /// The device's JSON payload (`null` when it sent none).
    #[serde(default)]
    pub payload: Value,
}

impl MethodInvocationResult {
    /// Builds a result.
    pub fn new(status: i32, payload: Value) -> Self {
        Self { status, payload }
    }
}

/// A method request as a device receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MethodRequest {
    /// The method name.
    pub name: String,
    /// The hub's request id, echoed in the response topic.
    pub rid: String,
    /// The raw payload (JSON text; `null` when the service gave none).
    pub payload: Vec<u8>,
}

impl MethodRequest {
    /// Builds a request.
    pub fn new(name: impl Into<String>, rid: impl Into<String>, payload: Vec<u8>) -> Self {
        Self {
            name: name.into(),
            rid: rid.into(),
            payload,
        }
    }

    /// The payload deserialized as `T`; an empty body reads as JSON `null`.
    ///
    /// # Errors
    /// The serde error when the payload does not fit `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        if self.payload.iter().all(u8::is_ascii_whitespace) {
            serde_json::from_slice(b"null")
        } else {
            serde_json::from_slice(&self.payload)
        }
    }
}

/// A device's answer to a method request: a status and a JSON payload.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MethodResponse {
    /// The status reported to the caller (200, 404, 500, …).
    pub status: i32,
    /// The JSON payload.
    pub payload: Vec<u8>,
}

impl MethodResponse {
    /// Status 200 with `body` serialized as JSON.
    pub fn ok(body: &impl Serialize) -> Self {
        Self::new(200, body)
    }

    /// Any status with `body` serialized as JSON (a body that fails to serialize becomes
    /// status 500 with an error message).
    pub fn new(status: i32, body: &impl Serialize) -> Self {
        match serde_json::to_vec(body) {
            Ok(payload) => Self { status, payload },
            Err(_) => Self::error(500, "response payload could not be serialized"),
        }
    }

    /// A status with a JSON `null` payload.
    pub fn empty(status: i32) -> Self {
        Self {
            status,
            payload: b"null".to_vec(),
        }
    }

    /// A status with `{"message": …}`.
    pub fn error(status: i32, message: &str) -> Self {
        Self {
            status,
            payload: serde_json::json!({ "message": message })
                .to_string()
                .into_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_body_round_trip_and_legacy_alias() {
        let m: MethodInvocation =
            serde_json::from_value(json!({"methodName":"reboot","timeoutInSeconds":10})).unwrap();
        assert_eq!(m.response_timeout(), 10);
        assert_eq!(m.payload, Value::Null);
        let m: MethodInvocation = serde_json::from_value(json!({
            "methodName":"reboot","responseTimeoutInSeconds":30,"connectTimeoutInSeconds":0,"payload":{"delay":5}
        }))
        .unwrap();
        assert_eq!(m.validate(), Ok(()));
        assert_eq!(m.payload["delay"], 5);
    }

    #[test]
    fn validation() {
        let mut m = MethodInvocation::new("reboot", Value::Null);
        m.response_timeout_in_seconds = Some(4);
        assert_eq!(m.validate(), Err(MethodInvocationError::ResponseTimeout));
        m.response_timeout_in_seconds = Some(301);
        assert_eq!(m.validate(), Err(MethodInvocationError::ResponseTimeout));
        m.response_timeout_in_seconds = None;
        m.connect_timeout_in_seconds = Some(301);
        assert_eq!(m.validate(), Err(MethodInvocationError::ConnectTimeout));
        let big = MethodInvocation::new("x", Value::String("a".repeat(MAX_PAYLOAD_BYTES)));
        assert!(matches!(
            big.validate(),
            Err(MethodInvocationError::PayloadTooLarge(_))
        ));
        for bad in ["", "a/b", "a b", "a#", "a+b", "$x", "é"] {
            assert_eq!(
                validate_method_name(bad),
                Err(MethodInvocationError::InvalidName),
                "{bad}"
            );
        }
        assert_eq!(validate_method_name("component*reboot_2-x.y"), Ok(()));
    }

    #[test]
    fn device_side_payloads() {
        let r = MethodRequest::new("m", "1", b"{\"delay\":1}".to_vec());
        assert_eq!(r.json::<Value>().unwrap()["delay"], 1);
        assert_eq!(
            MethodRequest::new("m", "1", vec![])
                .json::<Option<u32>>()
                .unwrap(),
            None
        );
        assert_eq!(MethodResponse::ok(&json!({"a":1})).payload, b"{\"a\":1}");
        assert_eq!(MethodResponse::empty(404).payload, b"null");
    }
}
