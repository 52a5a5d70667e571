//! The hub's error codes, its error body format, and which failures are worth retrying.

use serde_json::Value;

macro_rules! error_codes {
    ($($variant:ident = $code:literal, $http:literal, $doc:literal;)*) => {
        /// An IoT Hub error code: a six-digit number, a name (the `iothub-errorcode` header)
        /// and the HTTP status it travels with.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $(#[doc = $doc] $variant,)*
        }

        impl ErrorCode {
            /// Every known code.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The six-digit number, e.g. `404103`.
            pub fn code(self) -> u32 {
                match self { $(Self::$variant => $code,)* }
            }

            /// The name sent in `iothub-errorcode`, e.g. `DeviceNotOnline`.
            pub fn name(self) -> &'static str {
                match self { $(Self::$variant => stringify!($variant),)* }
            }

            /// The HTTP status it is sent with.
            pub fn http_status(self) -> u16 {
                match self { $(Self::$variant => $http,)* }
            }
        }
    };
}

error_codes! {
    GenericBadRequest = 400000, 400, "A request the hub could not understand.";
    ArgumentInvalid = 400004, 400, "Bad JSON, twin content, query or timeout.";
    ArgumentNull = 400005, 400, "A required field is missing.";
    IotHubFormatError = 400006, 400, "Malformed request.";
    ConnectionForcefullyClosedOnNewConnection = 400027, 400, "A second connection replaced this one.";
    IotHubUnauthorizedAccess = 401002, 401, "Bad or expired SAS token, or missing permission.";
    IotHubUnauthorized = 401003, 401, "The token expired (MQTT).";
    IotHubQuotaExceeded = 403002, 403, "The daily message quota is used up.";
    DeviceMaximumQueueDepthExceeded = 403004, 403, "More than 50 pending cloud-to-device messages.";
    DeviceDisabled = 403012, 403, "The device is disabled.";
    GenericNotFound = 404000, 404, "No such route or resource.";
    DeviceNotFound = 404001, 404, "The device does not exist.";
    JobNotFound = 404002, 404, "The job does not exist.";
    ModuleNotFound = 404010, 404, "The module does not exist.";
    DeviceNotOnline = 404103, 404, "The device is not connected or has not subscribed to methods.";
    DeviceConnectionClosedRemotely = 404104, 404, "The device's connection was closed.";
    GenericMethodNotAllowed = 405000, 405, "The route does not take this HTTP method.";
    DeviceAlreadyExists = 409001, 409, "A device with that id exists.";
    ModuleAlreadyExistsOnDevice = 409301, 409, "A module with that id exists.";
    JobAlreadyExists = 409104, 409, "A job with that id exists.";
    PreconditionFailed = 412001, 412, "The `If-Match` etag does not match.";
    MessageTooLarge = 413001, 413, "The message or document is too large.";
    TooManyDevices = 413002, 413, "Too many devices.";
    ThrottlingException = 429001, 429, "Throttled.";
    ThrottleBacklogLimitExceeded = 429002, 429, "Throttled: backlog full.";
    ThrottlingBacklogTimeout = 429003, 429, "Throttled: backlog timeout.";
    ThrottlingMaxActiveJobCountExceeded = 429004, 429, "Too many active jobs.";
    ServerError = 500001, 500, "Internal error.";
    ServiceUnavailable = 503001, 503, "The service is unavailable.";
    GatewayTimeout = 504101, 504, "The device did not answer the method in time.";
}

impl ErrorCode {
    /// Looks a code up by its number.
    pub fn from_code(code: u32) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.code() == code)
    }

    /// Looks a code up by its name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.name() == name)
    }

    /// `true` for failures that may succeed when tried again: throttling, server errors and
    /// timeouts.
    pub fn is_retryable(self) -> bool {
        is_retryable_status(self.http_status())
    }
}

/// `true` for HTTP or MQTT twin statuses worth retrying: 408, 429 and 5xx except 501.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429) || (500..600).contains(&status) && status != 501
}

/// Builds the hub's error body: a JSON object whose `Message` is itself JSON text with
/// `errorCode`, `trackingId`, `message`, `info` and `timestampUtc`.
///
/// ```
/// use iot_common::{ErrorCode, status::{error_body, HubErrorBody}};
/// let body = error_body(ErrorCode::DeviceNotOnline, "offline", "abc", "2024-01-01T00:00:00Z", None);
/// let parsed = HubErrorBody::parse(&body, Some("DeviceNotOnline"));
/// assert_eq!(parsed.code, Some(ErrorCode::DeviceNotOnline));
/// assert_eq!(parsed.message, "offline");
/// ```
pub fn error_body(
    code: ErrorCode,
    message: &str,
    tracking_id: &str,
    timestamp_utc: &str,
    info: Option<Value>,
) -> String {
    let inner = serde_json::json!({
        "errorCode": code.code(),
        "trackingId": tracking_id,
        "message": message,
        "info": info.unwrap_or_else(|| Value::Object(Default::default())),
        "timestampUtc": timestamp_utc,
    });
    serde_json::json!({ "Message": inner.to_string(), "ExceptionMessage": "" }).to_string()
}

/// An error as read from a hub response body and its `iothub-errorcode` header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubErrorBody {
    /// The code, when it is one we know.
    pub code: Option<ErrorCode>,
    /// The numeric code as sent.
    pub numeric_code: Option<u32>,
    /// The code's name as sent (header, or legacy `ErrorCode:` prefix).
    pub name: Option<String>,
    /// The human-readable message.
    pub message: String,
    /// The tracking id, for support requests.
    pub tracking_id: Option<String>,
}

impl HubErrorBody {
    /// Reads both body formats: the current JSON-in-`Message` one and the legacy
    /// `ErrorCode:{Name};{text}` one; anything else keeps the raw text (truncated) as message.
    pub fn parse(body: &str, header_name: Option<&str>) -> Self {
        let mut e = Self {
            name: header_name.map(str::to_owned),
            ..Default::default()
        };
        let outer: Option<Value> = serde_json::from_str(body).ok();
        let message = outer
            .as_ref()
            .and_then(|v| v.get("Message"))
            .and_then(Value::as_str);
        match message {
            Some(m) => match serde_json::from_str::<Value>(m) {
                Ok(inner) if inner.is_object() => {
                    e.numeric_code = inner
                        .get("errorCode")
                        .and_then(Value::as_u64)
                        .and_then(|c| u32::try_from(c).ok());
                    e.message = inner
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    e.tracking_id = inner
                        .get("trackingId")
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                }
                _ => match m.strip_prefix("ErrorCode:").and_then(|r| r.split_once(';')) {
                    Some((name, text)) => {
                        e.name.get_or_insert_with(|| name.to_owned());
                        e.message = text.to_owned();
                    }
                    None => e.message = m.to_owned(),
                },
            },
            None => {
                if let Some(v) = &outer {
                    e.numeric_code = v
                        .get("errorCode")
                        .and_then(Value::as_u64)
                        .and_then(|c| u32::try_from(c).ok());
                    if let Some(m) = v.get("message").and_then(Value::as_str) {
                        e.message = m.to_owned();
                    }
                } else {
                    e.message = body.chars().take(200).collect();
                }
            }
        }
        e.code = e
            .numeric_code
            .and_then(ErrorCode::from_code)
            .or_else(|| e.name.as_deref().and_then(ErrorCode::from_name));
        if e.name.is_none() {
            e.name = e.code.map(|c| c.name().to_owned());
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_code(c.code()), Some(*c));
            assert_eq!(ErrorCode::from_name(c.name()), Some(*c));
            assert_eq!(u32::from(c.http_status()), c.code() / 1000);
        }
        assert_eq!(ErrorCode::DeviceNotOnline.code(), 404103);
        assert!(ErrorCode::ThrottlingException.is_retryable());
        assert!(ErrorCode::GatewayTimeout.is_retryable());
        assert!(!ErrorCode::DeviceNotFound.is_retryable());
        assert!(!ErrorCode::PreconditionFailed.is_retryable());
    }

    #[test]
    fn parses_real_bodies() {
        let real = r#"{"Message":"{\"errorCode\":404103,\"trackingId\":\"abc-TimeStamp:03/14/2024 09:54:49\",\"message\":\"The operation failed because the requested device isn't online\",\"info\":{\"timeout\":\"00:00:00\"},\"timestampUtc\":\"2024-03-14T09:54:49.6536567Z\"}","ExceptionMessage":""}"#;
        let e = HubErrorBody::parse(real, Some("DeviceNotOnline"));
        assert_eq!(e.code, Some(ErrorCode::DeviceNotOnline));
        assert_eq!(e.numeric_code, Some(404103));
        assert!(e.message.starts_with("The operation failed"));
        let legacy = r#"{"Message":"ErrorCode:DeviceNotOnline;Timed out waiting for device to connect.","ExceptionMessage":"Tracking ID:x"}"#;
        let e = HubErrorBody::parse(legacy, None);
        assert_eq!(e.code, Some(ErrorCode::DeviceNotOnline));
        assert_eq!(e.message, "Timed out waiting for device to connect.");
        let twin = r#"{"errorCode":400004,"trackingId":"t","message":"Value of Property or Tag cannot be null.","timestampUtc":"x"}"#;
        assert_eq!(
            HubErrorBody::parse(twin, None).code,
            Some(ErrorCode::ArgumentInvalid)
        );
        assert_eq!(HubErrorBody::parse("<html>", None).message, "<html>");
    }
}
