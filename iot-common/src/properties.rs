//! Message property bags: `key=value&key=value` in a topic's last segment, percent-encoded.

use crate::encoding;

/// Why a property bag could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PropertyError {
    /// A key or value is not valid percent-encoded UTF-8.
    #[error("property bag is not valid percent-encoded UTF-8")]
    Encoding,
    /// A key is empty.
    #[error("property bag has an empty key")]
    EmptyKey,
}

/// The properties of a telemetry or cloud-to-device message.
///
/// System properties have their own fields and travel as `$.mid`, `$.cid`, `$.uid`, `$.ct`,
/// `$.ce`, `$.exp`, `$.to`; `iothub-ack` is the C2D feedback request; everything else is an
/// application property, in `custom`, in order.
///
/// ```
/// use iot_common::MessageProperties;
/// let p = MessageProperties::new()
///     .message_id("m1")
///     .content_type("application/json")
///     .property("key with space", "a/b");
/// let bag = p.encode();
/// assert_eq!(bag, "%24.mid=m1&%24.ct=application%2Fjson&key%20with%20space=a%2Fb");
/// assert_eq!(MessageProperties::decode(&bag)?, p);
/// # Ok::<(), iot_common::PropertyError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MessageProperties {
    /// `$.mid`
    pub message_id: Option<String>,
    /// `$.cid`
    pub correlation_id: Option<String>,
    /// `$.uid`
    pub user_id: Option<String>,
    /// `$.ct`, e.g. `application/json`.
    pub content_type: Option<String>,
    /// `$.ce`, e.g. `utf-8`.
    pub content_encoding: Option<String>,
    /// `$.exp`, absolute expiry (ISO-8601).
    pub expiry_time: Option<String>,
    /// `$.to`, destination (cloud-to-device).
    pub to: Option<String>,
    /// `iothub-ack`, the C2D feedback request.
    pub ack: Option<String>,
    /// Other `$.`-prefixed system properties (`$.on`, `$.ifid`, `$.sub`, …), key without `$.`.
    pub other_system: Vec<(String, String)>,
    /// Application properties.
    pub custom: Vec<(String, String)>,
}

impl MessageProperties {
    /// No properties.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `$.mid`.
    pub fn message_id(mut self, v: impl Into<String>) -> Self {
        self.message_id = Some(v.into());
        self
    }

    /// Sets `$.cid`.
    pub fn correlation_id(mut self, v: impl Into<String>) -> Self {
        self.correlation_id = Some(v.into());
        self
    }

    /// Sets `$.ct`.
    pub fn content_type(mut self, v: impl Into<String>) -> Self {
        self.content_type = Some(v.into());
        self
    }

    /// Sets `$.ce`.
    pub fn content_encoding(mut self, v: impl Into<String>) -> Self {
        self.content_encoding = Some(v.into());
        self
    }

    /// Adds an application property.
    pub fn property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.custom.push((key.into(), value.into()));
        self
    }

    /// The value of an application property.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.custom
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `true` when there is no property at all.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    fn system(&self) -> [(&'static str, Option<&String>); 8] {
        [
            ("$.mid", self.message_id.as_ref()),
            ("$.cid", self.correlation_id.as_ref()),
            ("$.uid", self.user_id.as_ref()),
            ("$.ct", self.content_type.as_ref()),
            ("$.ce", self.content_encoding.as_ref()),
            ("$.exp", self.expiry_time.as_ref()),
            ("$.to", self.to.as_ref()),
            ("iothub-ack", self.ack.as_ref()),
        ]
    }

    /// Encodes the bag: system properties first, then application properties, keys and values
    /// percent-encoded (so `$` travels as `%24`, as the Python and Node SDKs send it).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let mut push = |k: &str, v: &str| {
            if !out.is_empty() {
                out.push('&');
            }
            out.push_str(&encoding::encode(k));
            out.push('=');
            out.push_str(&encoding::encode(v));
        };
        for (k, v) in self.system() {
            if let Some(v) = v {
                push(k, v);
            }
        }
        for (k, v) in &self.other_system {
            push(&format!("$.{k}"), v);
        }
        for (k, v) in &self.custom {
            push(k, v);
        }
        out
    }

    /// Decodes a bag. Accepts literal `$` and `%24`; a key without `=` has an empty value;
    /// `+` is a literal plus.
    ///
    /// # Errors
    /// [`PropertyError`] for bad encoding or an empty key.
    pub fn decode(bag: &str) -> Result<Self, PropertyError> {
        let mut p = Self::default();
        for pair in bag.split('&').filter(|s| !s.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = encoding::decode(k).map_err(|_| PropertyError::Encoding)?;
            let v = encoding::decode(v)
                .map_err(|_| PropertyError::Encoding)?
                .into_owned();
            if k.is_empty() {
                return Err(PropertyError::EmptyKey);
            }
            let slot = match k.as_ref() {
                "$.mid" => &mut p.message_id,
                "$.cid" => &mut p.correlation_id,
                "$.uid" => &mut p.user_id,
                "$.ct" => &mut p.content_type,
                "$.ce" => &mut p.content_encoding,
                "$.exp" => &mut p.expiry_time,
                "$.to" => &mut p.to,
                "iothub-ack" => &mut p.ack,
                other => {
                    match other.strip_prefix("$.") {
                        Some(rest) => p.other_system.push((rest.to_owned(), v)),
                        None => p.custom.push((other.to_owned(), v)),
                    }
                    continue;
                }
            };
            *slot = Some(v);
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_python_sdk_capture() {
        let bag = "%24.mid=msg-0001&%24.cid=corr-42&%24.ct=application%2Fjson&%24.ce=utf-8&key%20with%20space=value%2Fwith%3Fspecial%26chars%3D1&temperatureAlert=false";
        let p = MessageProperties::decode(bag).unwrap();
        assert_eq!(p.message_id.as_deref(), Some("msg-0001"));
        assert_eq!(p.correlation_id.as_deref(), Some("corr-42"));
        assert_eq!(p.content_type.as_deref(), Some("application/json"));
        assert_eq!(p.content_encoding.as_deref(), Some("utf-8"));
        assert_eq!(p.get("key with space"), Some("value/with?special&chars=1"));
        assert_eq!(p.get("temperatureAlert"), Some("false"));
        assert_eq!(p.encode(), bag);
    }

    #[test]
    fn accepts_literal_dollar_and_c2d_keys() {
        let p = MessageProperties::decode("$.ct=application%2Fjson&$.on=out1&iothub-ack=full&flag")
            .unwrap();
        assert_eq!(p.content_type.as_deref(), Some("application/json"));
        assert_eq!(p.other_system, vec![("on".into(), "out1".into())]);
        assert_eq!(p.ack.as_deref(), Some("full"));
        assert_eq!(p.get("flag"), Some(""));
    }

    #[test]
    fn bad_encoding_is_an_error() {
        assert_eq!(
            MessageProperties::decode("a=%FF"),
            Err(PropertyError::Encoding)
        );
        assert_eq!(
            MessageProperties::decode("=x"),
            Err(PropertyError::EmptyKey)
        );
    }
}
