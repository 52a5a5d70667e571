//! The MQTT CONNECT fields IoT Hub expects: client id, username and api-version.

use crate::encoding;

/// The api-version this workspace speaks (MQTT username and REST query).
pub const API_VERSION: &str = "2021-04-12";

/// The MQTT client id: `{device}` or `{device}/{module}`.
pub fn client_id(device_id: &str, module_id: Option<&str>) -> String {
    match module_id {
        Some(m) => format!("{device_id}/{m}"),
        None => device_id.to_owned(),
    }
}

/// The MQTT username:
/// `{host}/{clientId}/?api-version={v}&DeviceClientType={type}[&model-id={dtmi}]`.
///
/// ```
/// assert_eq!(
///     iot_common::mqtt::username("h", "d", None, "2021-04-12", "iot-rs/0.1", None),
///     "h/d/?api-version=2021-04-12&DeviceClientType=iot-rs%2F0.1"
/// );
/// ```
pub fn username(
    host: &str,
    device_id: &str,
    module_id: Option<&str>,
    api_version: &str,
    client_type: &str,
    model_id: Option<&str>,
) -> String {
    let mut u = format!(
        "{host}/{}/?api-version={}&DeviceClientType={}",
        client_id(device_id, module_id),
        encoding::encode(api_version),
        encoding::encode(client_type)
    );
    if let Some(m) = model_id {
        u.push_str("&model-id=");
        u.push_str(&encoding::encode(m));
    }
    u
}

/// What the hub reads from a CONNECT username.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UsernameInfo {
    /// The host name at the start of the username.
    pub host: String,
    /// `api-version`, when given.
    pub api_version: Option<String>,
    /// `DeviceClientType`, decoded.
    pub client_type: Option<String>,
    /// `model-id`, decoded.
    pub model_id: Option<String>,
}

/// Parses a CONNECT username against the CONNECT client id. Tolerates the old forms without
/// `?` and without any query.
///
/// # Errors
/// Returns `None` when the username does not start with `{host}/{client_id}`.
pub fn parse_username(username: &str, client_id: &str) -> Option<UsernameInfo> {
    let (host, rest) = username.split_once('/')?;
    let rest = rest.strip_prefix(client_id)?;
    let query = match rest {
        "" | "/" => "",
        r => r.strip_prefix('/')?,
    };
    let mut info = UsernameInfo {
        host: host.to_owned(),
        ..Default::default()
    };
    for pair in query.strip_prefix('?').unwrap_or(query).split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = encoding::decode(v).ok().map(|v| v.into_owned());
        match k {
            "api-version" => info.api_version = v,
            "DeviceClientType" => info.client_type = v,
            "model-id" => info.model_id = v,
            _ => {}
        }
    }
    (!host.is_empty()).then_some(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_python_sdk_username() {
        let u = "localhost/myDevice/?api-version=2019-10-01&DeviceClientType=azure-iot-device-iothub-py%2F2.14.0%283.11.7%3BLinux%20%231%20SMP%20PREEMPT_DYNAMIC%20%400%3Bx86_64%29";
        let info = parse_username(u, "myDevice").unwrap();
        assert_eq!(info.host, "localhost");
        assert_eq!(info.api_version.as_deref(), Some("2019-10-01"));
        assert!(
            info.client_type
                .unwrap()
                .starts_with("azure-iot-device-iothub-py/2.14.0(")
        );
    }

    #[test]
    fn old_forms_and_modules() {
        let info = parse_username("h/d/api-version=2016-11-14", "d").unwrap();
        assert_eq!(info.api_version.as_deref(), Some("2016-11-14"));
        assert!(parse_username("h/d", "d").is_some());
        assert!(parse_username("h/d/m/?api-version=1", "d/m").is_some());
        assert!(parse_username("h/other/?api-version=1", "d").is_none());
        assert!(parse_username("h/dd/?api-version=1", "d").is_none());
    }

    #[test]
    fn round_trip() {
        let u = username(
            "h.example",
            "d",
            Some("m"),
            API_VERSION,
            "x/1 (y; z)",
            Some("dtmi:a;1"),
        );
        let info = parse_username(&u, &client_id("d", Some("m"))).unwrap();
        assert_eq!(info.client_type.as_deref(), Some("x/1 (y; z)"));
        assert_eq!(info.model_id.as_deref(), Some("dtmi:a;1"));
    }
}
