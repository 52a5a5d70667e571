//! MQTT topic names and filters, both directions: what a device publishes and subscribes to,
//! and what the hub publishes back. Nothing else in the workspace spells a topic string.

use crate::encoding;
use crate::properties::{MessageProperties, PropertyError};

/// Subscription filter for direct-method requests.
pub const METHODS_FILTER: &str = "$iothub/methods/POST/#";
/// Subscription filter for twin responses.
pub const TWIN_RESPONSE_FILTER: &str = "$iothub/twin/res/#";
/// Subscription filter for desired-property patches.
pub const TWIN_DESIRED_FILTER: &str = "$iothub/twin/PATCH/properties/desired/#";

const METHOD_POST: &str = "$iothub/methods/POST/";
const METHOD_RES: &str = "$iothub/methods/res/";
const TWIN_RES: &str = "$iothub/twin/res/";
const TWIN_GET: &str = "$iothub/twin/GET/";
const TWIN_REPORTED: &str = "$iothub/twin/PATCH/properties/reported/";
const TWIN_DESIRED: &str = "$iothub/twin/PATCH/properties/desired/";

/// Why a topic or filter was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// Not an IoT Hub topic of the expected direction.
    #[error("not an IoT Hub topic")]
    Unknown,
    /// The topic belongs to another identity.
    #[error("topic belongs to another identity")]
    WrongIdentity,
    /// The prefix matched but the rest did not.
    #[error("malformed IoT Hub topic: {0}")]
    Malformed(&'static str),
    /// The property bag could not be decoded.
    #[error("malformed property bag: {0}")]
    Properties(#[from] PropertyError),
}

fn identity_prefix(device_id: &str, module_id: Option<&str>) -> String {
    match module_id {
        Some(m) => format!("devices/{device_id}/modules/{m}/"),
        None => format!("devices/{device_id}/"),
    }
}

/// `devices/{device}/messages/devicebound/#`
pub fn c2d_filter(device_id: &str) -> String {
    format!("devices/{device_id}/messages/devicebound/#")
}

/// `devices/{device}/modules/{module}/inputs/#`
pub fn module_inputs_filter(device_id: &str, module_id: &str) -> String {
    format!("devices/{device_id}/modules/{module_id}/inputs/#")
}

/// `devices/{device}[/modules/{module}]/messages/events/{bag}`
pub fn telemetry_topic(
    device_id: &str,
    module_id: Option<&str>,
    properties: &MessageProperties,
) -> String {
    let mut t = identity_prefix(device_id, module_id);
    t.push_str("messages/events/");
    t.push_str(&properties.encode());
    t
}

/// `$iothub/methods/res/{status}/?$rid={rid}`
pub fn method_response_topic(status: i32, rid: &str) -> String {
    format!("{METHOD_RES}{status}/?$rid={rid}")
}

/// `$iothub/twin/GET/?$rid={rid}`
pub fn twin_get_topic(rid: &str) -> String {
    format!("{TWIN_GET}?$rid={rid}")
}

/// `$iothub/twin/PATCH/properties/reported/?$rid={rid}`
pub fn twin_patch_reported_topic(rid: &str) -> String {
    format!("{TWIN_REPORTED}?$rid={rid}")
}

/// Hub side: `$iothub/methods/POST/{name}/?$rid={rid}`
pub fn method_request_topic(name: &str, rid: &str) -> String {
    format!("{METHOD_POST}{name}/?$rid={rid}")
}

/// Hub side: `$iothub/twin/res/{status}/?$rid={rid}[&$version={v}]`
pub fn twin_response_topic(status: u16, rid: &str, version: Option<u64>) -> String {
    match version {
        Some(v) => format!("{TWIN_RES}{status}/?$rid={rid}&$version={v}"),
        None => format!("{TWIN_RES}{status}/?$rid={rid}"),
    }
}

/// Hub side: `$iothub/twin/PATCH/properties/desired/?$version={v}`
pub fn desired_patch_topic(version: u64) -> String {
    format!("{TWIN_DESIRED}?$version={version}")
}

/// Hub side: `devices/{device}/messages/devicebound/{bag}`
pub fn c2d_topic(device_id: &str, properties: &MessageProperties) -> String {
    format!(
        "devices/{device_id}/messages/devicebound/{}",
        properties.encode()
    )
}

/// Splits `?a=b&c=d` (the `?` optional) into decoded-key / raw-value pairs.
fn query_param<'a>(query: &'a str, wanted: &str) -> Option<&'a str> {
    query
        .strip_prefix('?')
        .unwrap_or(query)
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| encoding::decode(k).is_ok_and(|k| k == wanted))
        .map(|(_, v)| v)
}

fn rid_of(query: &str) -> Result<&str, TopicError> {
    query_param(query, "$rid")
        .filter(|r| !r.is_empty())
        .ok_or(TopicError::Malformed("missing $rid"))
}

fn version_of(query: &str) -> Result<Option<u64>, TopicError> {
    query_param(query, "$version")
        .map(|v| v.parse().map_err(|_| TopicError::Malformed("bad $version")))
        .transpose()
}

/// A message the hub sent to a device, identified by its topic.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Inbound<'a> {
    /// A direct-method request.
    MethodRequest {
        /// The method name.
        name: &'a str,
        /// The request id to echo in the response.
        rid: &'a str,
    },
    /// The answer to a twin GET or reported PATCH.
    TwinResponse {
        /// The status (200 GET, 204 PATCH, 4xx/5xx errors).
        status: u16,
        /// The request id.
        rid: &'a str,
        /// The new reported `$version` (PATCH responses).
        version: Option<u64>,
    },
    /// A desired-properties patch.
    DesiredPatch {
        /// The new desired `$version` from the topic.
        version: Option<u64>,
    },
    /// A cloud-to-device message.
    C2d {
        /// Its properties.
        properties: MessageProperties,
    },
    /// A message routed to a module input.
    ModuleInput {
        /// The input name.
        input: &'a str,
        /// Its properties.
        properties: MessageProperties,
    },
}

impl<'a> Inbound<'a> {
    /// Identifies a topic the hub published to a device.
    ///
    /// ```
    /// use iot_common::topic::Inbound;
    /// assert_eq!(
    ///     Inbound::parse("$iothub/methods/POST/rebootDevice/?$rid=1")?,
    ///     Inbound::MethodRequest { name: "rebootDevice", rid: "1" }
    /// );
    /// # Ok::<(), iot_common::TopicError>(())
    /// ```
    ///
    /// # Errors
    /// [`TopicError::Unknown`] when the topic is not one the hub sends; `Malformed` when a
    /// known prefix is followed by something unexpected.
    pub fn parse(topic: &'a str) -> Result<Self, TopicError> {
        if let Some(rest) = topic.strip_prefix(METHOD_POST) {
            let (name, query) = rest
                .split_once('/')
                .ok_or(TopicError::Malformed("method request without $rid"))?;
            if name.is_empty() {
                return Err(TopicError::Malformed("empty method name"));
            }
            return Ok(Self::MethodRequest {
                name,
                rid: rid_of(query)?,
            });
        }
        if let Some(rest) = topic.strip_prefix(TWIN_RES) {
            let (status, query) = rest
                .split_once('/')
                .ok_or(TopicError::Malformed("twin response without $rid"))?;
            let status = status
                .parse()
                .map_err(|_| TopicError::Malformed("twin response status"))?;
            return Ok(Self::TwinResponse {
                status,
                rid: rid_of(query)?,
                version: version_of(query)?,
            });
        }
        if let Some(query) = topic.strip_prefix(TWIN_DESIRED) {
            return Ok(Self::DesiredPatch {
                version: version_of(query)?,
            });
        }
        if let Some(rest) = topic.strip_prefix("devices/") {
            let mut parts = rest.splitn(4, '/');
            let (_device, second) = (parts.next(), parts.next());
            match second {
                Some("messages") if parts.next() == Some("devicebound") => {
                    let bag = parts.next().unwrap_or("");
                    return Ok(Self::C2d {
                        properties: MessageProperties::decode(bag)?,
                    });
                }
                Some("modules") => {
                    let _module = parts.next();
                    let mut p = parts.next().unwrap_or("").splitn(3, '/');
                    if p.next() == Some("inputs") {
                        let input = p.next().filter(|s| !s.is_empty());
                        let input = input.ok_or(TopicError::Malformed("empty input name"))?;
                        return Ok(Self::ModuleInput {
                            input,
                            properties: MessageProperties::decode(p.next().unwrap_or(""))?,
                        });
                    }
                }
                _ => {}
            }
        }
        Err(TopicError::Unknown)
    }
}

/// A message a device published to the hub, identified by its topic (hub side).
// Parsed once per publish and consumed at once: boxing the properties would only add an
// allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeviceTopic {
    /// Telemetry (device-to-cloud message).
    Telemetry {
        /// Its properties.
        properties: MessageProperties,
    },
    /// The answer to a direct method.
    MethodResponse {
        /// The device-chosen status.
        status: i32,
        /// The request id being answered.
        rid: String,
    },
    /// Twin GET.
    TwinGet {
        /// The request id.
        rid: String,
    },
    /// Reported-properties patch.
    TwinPatchReported {
        /// The request id.
        rid: String,
    },
}

impl DeviceTopic {
    /// Identifies a topic published by the identity `device_id`/`module_id`. Topics that name
    /// another identity are refused.
    ///
    /// # Errors
    /// [`TopicError::WrongIdentity`] for another identity's topic, [`TopicError::Unknown`] for
    /// anything that is not a device-to-hub topic.
    pub fn parse(
        topic: &str,
        device_id: &str,
        module_id: Option<&str>,
    ) -> Result<Self, TopicError> {
        if let Some(rest) = topic.strip_prefix(METHOD_RES) {
            let (status, query) = rest
                .split_once('/')
                .ok_or(TopicError::Malformed("method response without $rid"))?;
            let status = status
                .parse()
                .map_err(|_| TopicError::Malformed("method response status"))?;
            return Ok(Self::MethodResponse {
                status,
                rid: rid_of(query)?.to_owned(),
            });
        }
        if let Some(query) = topic.strip_prefix(TWIN_GET) {
            return Ok(Self::TwinGet {
                rid: rid_of(query)?.to_owned(),
            });
        }
        if let Some(query) = topic.strip_prefix(TWIN_REPORTED) {
            return Ok(Self::TwinPatchReported {
                rid: rid_of(query)?.to_owned(),
            });
        }
        if topic.starts_with("devices/") {
            let prefix = identity_prefix(device_id, module_id);
            let rest = topic
                .strip_prefix(prefix.as_str())
                .ok_or(TopicError::WrongIdentity)?;
            let bag = match rest.strip_prefix("messages/events") {
                Some("") => "",
                Some(r) => r.strip_prefix('/').ok_or(TopicError::Unknown)?,
                None => return Err(TopicError::Unknown),
            };
            return Ok(Self::Telemetry {
                properties: MessageProperties::decode(bag)?,
            });
        }
        Err(TopicError::Unknown)
    }
}

/// A subscription filter the hub accepts from a device (hub side).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Subscription {
    /// `$iothub/methods/POST/#`
    Methods,
    /// `$iothub/twin/res/#`
    TwinResponses,
    /// `$iothub/twin/PATCH/properties/desired/#`
    DesiredPatches,
    /// `devices/{device}/messages/devicebound/#` (or `devices/+/…`)
    C2d,
    /// `devices/{device}/modules/{module}/inputs/#` (or `…/{module}/#`)
    ModuleInputs,
}

impl Subscription {
    /// Identifies a filter sent by `device_id`/`module_id`.
    ///
    /// # Errors
    /// [`TopicError::WrongIdentity`] for another identity's filter, [`TopicError::Unknown`]
    /// for anything else that is not a documented filter.
    pub fn parse(
        filter: &str,
        device_id: &str,
        module_id: Option<&str>,
    ) -> Result<Self, TopicError> {
        match filter {
            METHODS_FILTER => return Ok(Self::Methods),
            TWIN_RESPONSE_FILTER => return Ok(Self::TwinResponses),
            TWIN_DESIRED_FILTER => return Ok(Self::DesiredPatches),
            _ => {}
        }
        let Some(rest) = filter.strip_prefix("devices/") else {
            return Err(TopicError::Unknown);
        };
        let (device, tail) = rest.split_once('/').ok_or(TopicError::Unknown)?;
        if device != device_id && device != "+" {
            return Err(TopicError::WrongIdentity);
        }
        match (module_id, tail) {
            (None, "messages/devicebound/#") => Ok(Self::C2d),
            (Some(m), tail) => {
                let rest = tail
                    .strip_prefix("modules/")
                    .and_then(|t| t.strip_prefix(m))
                    .ok_or(TopicError::WrongIdentity)?;
                match rest {
                    "/inputs/#" | "/#" => Ok(Self::ModuleInputs),
                    _ => Err(TopicError::Unknown),
                }
            }
            _ => Err(TopicError::Unknown),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbound_table() {
        let cases: Vec<(&str, Inbound<'_>)> = vec![
            (
                "$iothub/methods/POST/rebootDevice/?$rid=1",
                Inbound::MethodRequest {
                    name: "rebootDevice",
                    rid: "1",
                },
            ),
            (
                "$iothub/twin/res/204/?$rid=c23c7157&$version=2",
                Inbound::TwinResponse {
                    status: 204,
                    rid: "c23c7157",
                    version: Some(2),
                },
            ),
            (
                "$iothub/twin/res/200/?$rid=6b65",
                Inbound::TwinResponse {
                    status: 200,
                    rid: "6b65",
                    version: None,
                },
            ),
            (
                "$iothub/twin/PATCH/properties/desired/?$version=3",
                Inbound::DesiredPatch { version: Some(3) },
            ),
            (
                "devices/VxDev1/messages/devicebound/%24.mid=ee06&%24.to=%2Fdevices%2FVxDev1%2Fmessages%2Fdevicebound&%24.ce=utf-8",
                Inbound::C2d {
                    properties: MessageProperties {
                        message_id: Some("ee06".into()),
                        to: Some("/devices/VxDev1/messages/devicebound".into()),
                        content_encoding: Some("utf-8".into()),
                        ..Default::default()
                    },
                },
            ),
            (
                "devices/d/messages/devicebound/",
                Inbound::C2d {
                    properties: MessageProperties::default(),
                },
            ),
            (
                "devices/d/modules/m/inputs/in1/a=b",
                Inbound::ModuleInput {
                    input: "in1",
                    properties: MessageProperties::new().property("a", "b"),
                },
            ),
        ];
        for (topic, expected) in cases {
            assert_eq!(Inbound::parse(topic).unwrap(), expected, "{topic}");
        }
    }

    #[test]
    fn inbound_rejects() {
        assert_eq!(Inbound::parse("foo/bar"), Err(TopicError::Unknown));
        assert_eq!(
            Inbound::parse("$iothub/methods/POST/x"),
            Err(TopicError::Malformed("method request without $rid"))
        );
        assert_eq!(
            Inbound::parse("$iothub/twin/res/abc/?$rid=1"),
            Err(TopicError::Malformed("twin response status"))
        );
        assert_eq!(
            Inbound::parse("$iothub/methods/POST/x/?$version=1"),
            Err(TopicError::Malformed("missing $rid"))
        );
    }

    #[test]
    fn builders_match_the_reference() {
        let p = MessageProperties::new()
            .message_id("m")
            .content_type("application/json");
        assert_eq!(
            telemetry_topic("d", None, &p),
            "devices/d/messages/events/%24.mid=m&%24.ct=application%2Fjson"
        );
        assert_eq!(
            telemetry_topic("d", Some("m"), &MessageProperties::new()),
            "devices/d/modules/m/messages/events/"
        );
        assert_eq!(
            method_response_topic(200, "1"),
            "$iothub/methods/res/200/?$rid=1"
        );
        assert_eq!(twin_get_topic("r"), "$iothub/twin/GET/?$rid=r");
        assert_eq!(
            twin_patch_reported_topic("r"),
            "$iothub/twin/PATCH/properties/reported/?$rid=r"
        );
        assert_eq!(
            twin_response_topic(204, "r", Some(3)),
            "$iothub/twin/res/204/?$rid=r&$version=3"
        );
        assert_eq!(
            desired_patch_topic(4),
            "$iothub/twin/PATCH/properties/desired/?$version=4"
        );
        assert_eq!(
            method_request_topic("reboot", "7"),
            "$iothub/methods/POST/reboot/?$rid=7"
        );
    }

    #[test]
    fn device_topics_are_bound_to_their_identity() {
        assert_eq!(
            DeviceTopic::parse("devices/d/messages/events/", "d", None).unwrap(),
            DeviceTopic::Telemetry {
                properties: MessageProperties::default()
            }
        );
        assert_eq!(
            DeviceTopic::parse("devices/e/messages/events/", "d", None),
            Err(TopicError::WrongIdentity)
        );
        assert_eq!(
            DeviceTopic::parse("devices/d/messages/events/", "d", Some("m")),
            Err(TopicError::WrongIdentity)
        );
        assert!(
            DeviceTopic::parse("devices/d/modules/m/messages/events/a=1", "d", Some("m")).is_ok()
        );
        assert_eq!(
            DeviceTopic::parse("$iothub/methods/res/404/?$rid=2", "d", None).unwrap(),
            DeviceTopic::MethodResponse {
                status: 404,
                rid: "2".into()
            }
        );
        assert_eq!(
            DeviceTopic::parse("devices/d/messages/devicebound/", "d", None),
            Err(TopicError::Unknown)
        );
        assert_eq!(
            DeviceTopic::parse("anything", "d", None),
            Err(TopicError::Unknown)
        );
    }

    #[test]
    fn subscriptions() {
        assert_eq!(
            Subscription::parse(METHODS_FILTER, "d", None),
            Ok(Subscription::Methods)
        );
        assert_eq!(
            Subscription::parse(&c2d_filter("d"), "d", None),
            Ok(Subscription::C2d)
        );
        assert_eq!(
            Subscription::parse("devices/+/messages/devicebound/#", "d", None),
            Ok(Subscription::C2d)
        );
        assert_eq!(
            Subscription::parse(&c2d_filter("e"), "d", None),
            Err(TopicError::WrongIdentity)
        );
        assert_eq!(
            Subscription::parse(&module_inputs_filter("d", "m"), "d", Some("m")),
            Ok(Subscription::ModuleInputs)
        );
        assert_eq!(
            Subscription::parse("#", "d", None),
            Err(TopicError::Unknown)
        );
    }
}
