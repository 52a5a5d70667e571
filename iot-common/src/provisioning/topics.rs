//! DPS MQTT topic names, the CONNECT user name and the SAS resource, both directions.
//!
//! Requests go to `$dps/registrations/PUT/iotdps-register/?$rid={rid}` and
//! `$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={id}`; answers
//! come back on `$dps/registrations/res/{status}/?$rid={rid}[&retry-after={seconds}]`.

use crate::{encoding, topic::TopicError};

/// The filter a device subscribes to before it registers.
pub const RESPONSE_FILTER: &str = "$dps/registrations/res/#";

const REGISTER: &str = "$dps/registrations/PUT/iotdps-register/?";
const POLL: &str = "$dps/registrations/GET/iotdps-get-operationstatus/?";
const RESPONSE: &str = "$dps/registrations/res/";

/// The topic of a registration request.
pub fn register_topic(rid: &str) -> String {
    format!("{REGISTER}$rid={rid}")
}

/// The topic of an operation-status poll.
pub fn poll_topic(rid: &str, operation_id: &str) -> String {
    format!(
        "{POLL}$rid={rid}&operationId={}",
        encoding::encode(operation_id)
    )
}

/// The topic of DPS's answer. `retry_after` is in seconds.
pub fn response_topic(status: u16, rid: &str, retry_after: Option<u64>) -> String {
    match retry_after {
        Some(seconds) => format!("{RESPONSE}{status}/?$rid={rid}&retry-after={seconds}"),
        None => format!("{RESPONSE}{status}/?$rid={rid}"),
    }
}

/// A parsed answer topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseTopic {
    /// The HTTP-style status of the answer.
    pub status: u16,
    /// The request id the answer belongs to.
    pub rid: String,
    /// How long DPS asks the device to wait before its next request, in seconds.
    pub retry_after: Option<u64>,
}

/// A parsed request topic (what the emulator's DPS receives).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestTopic {
    /// A registration request.
    Register {
        /// The request id to answer with.
        rid: String,
    },
    /// A poll for an operation's status.
    Poll {
        /// The request id to answer with.
        rid: String,
        /// The operation being polled.
        operation_id: String,
    },
}

fn query_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

/// Parses an answer topic.
///
/// # Errors
/// [`TopicError::Unknown`] for a topic outside `$dps/registrations/res/`, and
/// [`TopicError::Malformed`] when the status or `$rid` is missing or malformed.
pub fn parse_response_topic(topic: &str) -> Result<ResponseTopic, TopicError> {
    let rest = topic.strip_prefix(RESPONSE).ok_or(TopicError::Unknown)?;
    let (status, query) = rest
        .split_once("/?")
        .ok_or(TopicError::Malformed("no query after the status"))?;
    let status = status
        .parse::<u16>()
        .map_err(|_| TopicError::Malformed("status is not a number"))?;
    let mut rid = None;
    let mut retry_after = None;
    for (key, value) in query_pairs(query) {
        match key {
            "$rid" => rid = Some(value.to_owned()),
            "retry-after" => {
                retry_after = Some(
                    value
                        .parse::<u64>()
                        .map_err(|_| TopicError::Malformed("retry-after is not a number"))?,
                )
            }
            _ => {}
        }
    }
    Ok(ResponseTopic {
        status,
        rid: rid.ok_or(TopicError::Malformed("no $rid"))?,
        retry_after,
    })
}

/// Parses a request topic.
///
/// # Errors
/// [`TopicError::Unknown`] for a topic that is neither a registration nor a poll, and
/// [`TopicError::Malformed`] when `$rid` or `operationId` is missing.
pub fn parse_request_topic(topic: &str) -> Result<RequestTopic, TopicError> {
    let (query, is_poll) = if let Some(q) = topic.strip_prefix(REGISTER) {
        (q, false)
    } else if let Some(q) = topic.strip_prefix(POLL) {
        (q, true)
    } else {
        return Err(TopicError::Unknown);
    };
    let mut rid = None;
    let mut operation_id = None;
    for (key, value) in query_pairs(query) {
        match key {
            "$rid" => rid = Some(value.to_owned()),
            "operationId" => {
                operation_id = Some(
                    encoding::decode(value)
                        .map_err(|_| TopicError::Malformed("operationId is not UTF-8"))?
                        .into_owned(),
                )
            }
            _ => {}
        }
    }
    let rid = rid
        .filter(|r| !r.is_empty())
        .ok_or(TopicError::Malformed("no $rid"))?;
    if is_poll {
        let operation_id = operation_id.ok_or(TopicError::Malformed("no operationId"))?;
        Ok(RequestTopic::Poll { rid, operation_id })
    } else {
        Ok(RequestTopic::Register { rid })
    }
}

/// The SAS resource a registration signs: `{id_scope}/registrations/{registration_id}`.
pub fn sas_resource(id_scope: &str, registration_id: &str) -> String {
    format!("{id_scope}/registrations/{registration_id}")
}

/// The MQTT CONNECT user name:
/// `{id_scope}/registrations/{registration_id}/api-version=2019-03-31&ClientVersion={version}`
/// (no `?` before `api-version`, as both official SDKs send it).
pub fn username(id_scope: &str, registration_id: &str, client_version: &str) -> String {
    format!(
        "{id_scope}/registrations/{registration_id}/api-version={}&ClientVersion={}",
        super::API_VERSION,
        encoding::encode(client_version)
    )
}

/// The ID scope and registration id of a DPS CONNECT user name, or `None` when the user name
/// has another shape (a hub device's `{host}/{device}/?api-version=...`).
pub fn parse_username(username: &str) -> Option<(&str, &str)> {
    let (scope, rest) = username.split_once("/registrations/")?;
    let (registration_id, tail) = rest.split_once('/')?;
    // A hub device named `registrations` has `{host}/registrations/?api-version=...`: the
    // `api-version=` right after the registration id is what only DPS user names have.
    if scope.is_empty()
        || scope.contains('/')
        || registration_id.is_empty()
        || !tail.starts_with("api-version=")
    {
        return None;
    }
    Some((scope, registration_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_topics_round_trip() {
        let t = register_topic("7");
        assert_eq!(t, "$dps/registrations/PUT/iotdps-register/?$rid=7");
        assert_eq!(
            parse_request_topic(&t),
            Ok(RequestTopic::Register { rid: "7".into() })
        );
        let t = poll_topic("8", "4.abc.def-1");
        assert_eq!(
            t,
            "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=8&operationId=4.abc.def-1"
        );
        assert_eq!(
            parse_request_topic(&t),
            Ok(RequestTopic::Poll {
                rid: "8".into(),
                operation_id: "4.abc.def-1".into()
            })
        );
    }

    #[test]
    fn a_poll_without_an_operation_id_or_a_request_without_rid_is_malformed() {
        assert!(matches!(
            parse_request_topic("$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1"),
            Err(TopicError::Malformed(_))
        ));
        assert!(matches!(
            parse_request_topic("$dps/registrations/PUT/iotdps-register/?"),
            Err(TopicError::Malformed(_))
        ));
        assert_eq!(
            parse_request_topic("devices/d/messages/events/"),
            Err(TopicError::Unknown)
        );
    }

    #[test]
    fn response_topics_round_trip_with_and_without_retry_after() {
        let t = response_topic(202, "5", Some(3));
        assert_eq!(t, "$dps/registrations/res/202/?$rid=5&retry-after=3");
        assert_eq!(
            parse_response_topic(&t),
            Ok(ResponseTopic {
                status: 202,
                rid: "5".into(),
                retry_after: Some(3)
            })
        );
        assert_eq!(
            parse_response_topic(&response_topic(200, "6", None))
                .unwrap()
                .retry_after,
            None
        );
        assert!(parse_response_topic("$dps/registrations/res/abc/?$rid=1").is_err());
        assert!(parse_response_topic("$dps/registrations/res/200/?$rid=1&retry-after=x").is_err());
    }

    #[test]
    fn user_names_of_both_sdks_parse() {
        let ours = username("0ne00000A1B", "dev-sym-1", "iot-device/0.1 (linux)");
        assert!(ours.starts_with("0ne00000A1B/registrations/dev-sym-1/api-version=2019-03-31&ClientVersion=iot-device%2F0.1%20%28linux%29"));
        assert_eq!(parse_username(&ours), Some(("0ne00000A1B", "dev-sym-1")));
        let node = "0ne00000A1B/registrations/dev-sym-node/api-version=2019-03-31&ClientVersion=azure-iot-provisioning-device%2F1.9.1";
        assert_eq!(parse_username(node), Some(("0ne00000A1B", "dev-sym-node")));
        for hub in [
            "myhub.azure-devices.net/dev1/?api-version=2021-04-12",
            "myhub.azure-devices.net/registrations/?api-version=2021-04-12",
            "myhub.azure-devices.net/registrations/m1/?api-version=2021-04-12",
        ] {
            assert_eq!(parse_username(hub), None, "{hub}");
        }
    }
}
