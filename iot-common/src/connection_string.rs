//! Device and service connection strings: `Key=Value` segments separated by `;`.

use crate::Secret;
use base64::Engine as _;
use std::fmt;
use std::str::FromStr;

/// Why a connection string was refused. The message names the field, never its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionStringError {
    /// A required field is absent or empty.
    #[error("connection string is missing `{0}`")]
    Missing(&'static str),
    /// A field is present but its value is not acceptable.
    #[error("connection string field `{field}` is invalid: {reason}")]
    Invalid {
        /// The field name.
        field: &'static str,
        /// What is wrong with it (never the value itself).
        reason: &'static str,
    },
    /// A field appears twice.
    #[error("connection string field `{0}` appears more than once")]
    Duplicate(&'static str),
    /// A segment has no `=`.
    #[error("connection string segment {0} is not of the form Key=Value")]
    Malformed(usize),
    /// Fields that cannot be used together.
    #[error("connection string fields `{0}` and `{1}` cannot be used together")]
    Conflict(&'static str, &'static str),
}

const HOST_NAME: &str = "HostName";
const DEVICE_ID: &str = "DeviceId";
const MODULE_ID: &str = "ModuleId";
const KEY: &str = "SharedAccessKey";
const KEY_NAME: &str = "SharedAccessKeyName";
const SIGNATURE: &str = "SharedAccessSignature";
const GATEWAY: &str = "GatewayHostName";
const X509: &str = "x509";
const ENDPOINT: &str = "Endpoint";
const ENTITY_PATH: &str = "EntityPath";

const KNOWN: [&str; 10] = [
    HOST_NAME,
    DEVICE_ID,
    MODULE_ID,
    KEY,
    KEY_NAME,
    SIGNATURE,
    GATEWAY,
    X509,
    ENDPOINT,
    ENTITY_PATH,
];

/// The recognised fields of a connection string; unknown keys are ignored (as the C# and Node
/// SDKs do), keys match case-insensitively, a trailing `;` is tolerated.
#[derive(Default)]
struct Fields {
    values: [Option<String>; KNOWN.len()],
}

impl Fields {
    fn parse(s: &str) -> Result<Self, ConnectionStringError> {
        let mut fields = Self::default();
        for (index, segment) in s.trim().split(';').enumerate() {
            if segment.trim().is_empty() {
                continue;
            }
            let (key, value) = segment
                .split_once('=')
                .ok_or(ConnectionStringError::Malformed(index + 1))?;
            let key = key.trim();
            let Some(slot) = KNOWN.iter().position(|k| k.eq_ignore_ascii_case(key)) else {
                continue;
            };
            if fields.values[slot].is_some() {
                return Err(ConnectionStringError::Duplicate(KNOWN[slot]));
            }
            fields.values[slot] = Some(value.trim().to_owned());
        }
        Ok(fields)
    }

    fn take(&mut self, name: &'static str) -> Option<String> {
        let slot = KNOWN.iter().position(|k| *k == name)?;
        self.values[slot].take().filter(|v| !v.is_empty())
    }

    fn required(&mut self, name: &'static str) -> Result<String, ConnectionStringError> {
        self.take(name).ok_or(ConnectionStringError::Missing(name))
    }
}

/// Checks that a shared access key is non-empty standard base64.
pub fn validate_key(field: &'static str, key: &str) -> Result<(), ConnectionStringError> {
    match base64::engine::general_purpose::STANDARD.decode(key) {
        Ok(bytes) if !bytes.is_empty() => Ok(()),
        _ => Err(ConnectionStringError::Invalid {
            field,
            reason: "not a base64 key",
        }),
    }
}

/// Checks a device or module id against the hub's rules: 1 to 128 ASCII characters, letters,
/// digits and `- . + % _ # * ? ! ( ) , = @ $ ' :`.
pub fn validate_id(field: &'static str, id: &str) -> Result<(), ConnectionStringError> {
    const EXTRA: &[u8] = b"-.+%_#*?!(),=@$':";
    if id.is_empty() || id.len() > 128 {
        return Err(ConnectionStringError::Invalid {
            field,
            reason: "must be 1 to 128 characters",
        });
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || EXTRA.contains(&b))
    {
        return Err(ConnectionStringError::Invalid {
            field,
            reason: "contains a character the hub does not allow",
        });
    }
    Ok(())
}

fn validate_host(field: &'static str, host: &str) -> Result<(), ConnectionStringError> {
    let ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ConnectionStringError::Invalid {
            field,
            reason: "not a host name",
        })
    }
}

/// How a device authenticates.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeviceCredential {
    /// A symmetric key: the client signs its own SAS tokens and renews them.
    SharedAccessKey {
        /// The base64 key.
        key: Secret,
        /// A hub policy name (`SharedAccessKeyName`) when the key is a policy key with
        /// DeviceConnect rather than the device's own key.
        key_name: Option<String>,
    },
    /// A ready-made SAS token; it cannot be renewed by the client.
    SharedAccessSignature(Secret),
    /// A TLS client certificate (`x509=true`); no secret in the string.
    X509,
}

impl fmt::Debug for DeviceCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SharedAccessKey { key_name, .. } => f
                .debug_struct("SharedAccessKey")
                .field("key_name", key_name)
                .finish_non_exhaustive(),
            Self::SharedAccessSignature(_) => f.write_str("SharedAccessSignature(..)"),
            Self::X509 => f.write_str("X509"),
        }
    }
}

/// A device (or module) connection string:
/// `HostName=…;DeviceId=…[;ModuleId=…];SharedAccessKey=…[;GatewayHostName=…]`.
///
/// ```
/// use iot_common::DeviceConnectionString;
/// let cs: DeviceConnectionString =
///     "HostName=myhub.azure-devices.net;DeviceId=dev1;SharedAccessKey=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
///         .parse()?;
/// assert_eq!(cs.device_id, "dev1");
/// assert!(!format!("{cs:?}").contains("AAEC"));
/// # Ok::<(), iot_common::ConnectionStringError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeviceConnectionString {
    /// The hub's host name (`HostName`), possibly with a `:port`.
    pub host_name: String,
    /// The device id.
    pub device_id: String,
    /// The module id, for a module identity.
    pub module_id: Option<String>,
    /// The host to open the socket to, when it differs from the hub (`GatewayHostName`).
    pub gateway_host_name: Option<String>,
    /// How the device authenticates.
    pub credential: DeviceCredential,
}

impl DeviceConnectionString {
    /// A connection string for a device authenticated with a symmetric key.
    pub fn with_key(
        host_name: impl Into<String>,
        device_id: impl Into<String>,
        key: Secret,
    ) -> Self {
        Self {
            host_name: host_name.into(),
            device_id: device_id.into(),
            module_id: None,
            gateway_host_name: None,
            credential: DeviceCredential::SharedAccessKey {
                key,
                key_name: None,
            },
        }
    }

    /// Sets the module id, making this a module identity.
    pub fn module(mut self, module_id: impl Into<String>) -> Self {
        self.module_id = Some(module_id.into());
        self
    }

    /// Sets the gateway host name (the host, and optionally `:port`, to dial).
    pub fn gateway(mut self, gateway: impl Into<String>) -> Self {
        self.gateway_host_name = Some(gateway.into());
        self
    }

    /// The host (and optional port) that the socket is opened to.
    pub fn endpoint_host(&self) -> &str {
        self.gateway_host_name.as_deref().unwrap_or(&self.host_name)
    }
}

impl FromStr for DeviceConnectionString {
    type Err = ConnectionStringError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut f = Fields::parse(s)?;
        let host_name = f.required(HOST_NAME)?;
        validate_host(HOST_NAME, &host_name)?;
        let device_id = f.required(DEVICE_ID)?;
        validate_id(DEVICE_ID, &device_id)?;
        let module_id = f.take(MODULE_ID);
        if let Some(m) = &module_id {
            validate_id(MODULE_ID, m)?;
        }
        let gateway_host_name = f.take(GATEWAY);
        if let Some(g) = &gateway_host_name {
            validate_host(GATEWAY, g)?;
        }
        let key = f.take(KEY);
        let key_name = f.take(KEY_NAME);
        let signature = f.take(SIGNATURE);
        let x509 = f.take(X509);
        let credential = match (key, signature, x509) {
            (Some(key), None, None) => {
                validate_key(KEY, &key)?;
                DeviceCredential::SharedAccessKey {
                    key: Secret::new(key),
                    key_name,
                }
            }
            (None, Some(sig), None) => {
                crate::SasToken::parse(&sig).map_err(|_| ConnectionStringError::Invalid {
                    field: SIGNATURE,
                    reason: "not a SharedAccessSignature token",
                })?;
                DeviceCredential::SharedAccessSignature(Secret::new(sig))
            }
            (None, None, Some(x)) => {
                if !x.eq_ignore_ascii_case("true") {
                    return Err(ConnectionStringError::Invalid {
                        field: X509,
                        reason: "must be `true`",
                    });
                }
                DeviceCredential::X509
            }
            (None, None, None) => return Err(ConnectionStringError::Missing(KEY)),
            (Some(_), Some(_), _) => return Err(ConnectionStringError::Conflict(KEY, SIGNATURE)),
            (Some(_), None, Some(_)) => return Err(ConnectionStringError::Conflict(KEY, X509)),
            (None, Some(_), Some(_)) => {
                return Err(ConnectionStringError::Conflict(SIGNATURE, X509));
            }
        };
        Ok(Self {
            host_name,
            device_id,
            module_id,
            gateway_host_name,
            credential,
        })
    }
}

/// Writes the connection string back, key included: it round-trips through `FromStr`.
/// Treat the output as a secret; use `Debug` for logs.
impl fmt::Display for DeviceConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{HOST_NAME}={};{DEVICE_ID}={}",
            self.host_name, self.device_id
        )?;
        if let Some(m) = &self.module_id {
            write!(f, ";{MODULE_ID}={m}")?;
        }
        match &self.credential {
            DeviceCredential::SharedAccessKey { key, key_name } => {
                if let Some(n) = key_name {
                    write!(f, ";{KEY_NAME}={n}")?;
                }
                write!(f, ";{KEY}={}", key.expose())?;
            }
            DeviceCredential::SharedAccessSignature(sig) => {
                write!(f, ";{SIGNATURE}={}", sig.expose())?;
            }
            DeviceCredential::X509 => write!(f, ";{X509}=true")?,
        }
        if let Some(g) = &self.gateway_host_name {
            write!(f, ";{GATEWAY}={g}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for DeviceConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceConnectionString")
            .field("host_name", &self.host_name)
            .field("device_id", &self.device_id)
            .field("module_id", &self.module_id)
            .field("gateway_host_name", &self.gateway_host_name)
            .field("credential", &self.credential)
            .finish()
    }
}

/// A service connection string:
/// `HostName=…;SharedAccessKeyName=…;SharedAccessKey=…`.
///
/// ```
/// use iot_common::ServiceConnectionString;
/// let cs: ServiceConnectionString =
///     "HostName=localhost:8443;SharedAccessKeyName=iothubowner;SharedAccessKey=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
///         .parse()?;
/// assert_eq!(cs.key_name, "iothubowner");
/// assert_eq!(cs.to_string().parse::<ServiceConnectionString>()?, cs);
/// # Ok::<(), iot_common::ConnectionStringError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceConnectionString {
    /// The hub's host name, possibly with a `:port` (the emulator's HTTPS port).
    pub host_name: String,
    /// The shared access policy name, e.g. `iothubowner`.
    pub key_name: String,
    /// The policy's key.
    pub key: Secret,
}

impl ServiceConnectionString {
    /// Builds a service connection string from its parts.
    pub fn new(host_name: impl Into<String>, key_name: impl Into<String>, key: Secret) -> Self {
        Self {
            host_name: host_name.into(),
            key_name: key_name.into(),
            key,
        }
    }
}

impl FromStr for ServiceConnectionString {
    type Err = ConnectionStringError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut f = Fields::parse(s)?;
        let host_name = f.required(HOST_NAME)?;
        validate_host(HOST_NAME, &host_name)?;
        let key_name = f.required(KEY_NAME)?;
        if !key_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-@.".contains(&b))
        {
            return Err(ConnectionStringError::Invalid {
                field: KEY_NAME,
                reason: "not a policy name",
            });
        }
        let key = f.required(KEY)?;
        validate_key(KEY, &key)?;
        Ok(Self {
            host_name,
            key_name,
            key: Secret::new(key),
        })
    }
}

/// Writes the connection string back, key included (round-trips through `FromStr`).
/// Treat the output as a secret; use `Debug` for logs.
impl fmt::Display for ServiceConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{HOST_NAME}={};{KEY_NAME}={};{KEY}={}",
            self.host_name,
            self.key_name,
            self.key.expose()
        )
    }
}

impl fmt::Debug for ServiceConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceConnectionString")
            .field("host_name", &self.host_name)
            .field("key_name", &self.key_name)
            .finish_non_exhaustive()
    }
}

/// An Event Hubs connection string, as the portal gives for an IoT hub's built-in
/// Event Hub-compatible endpoint:
/// `Endpoint=sb://{namespace host}[:port]/;SharedAccessKeyName=…;SharedAccessKey=…;EntityPath=…`.
///
/// ```
/// use iot_common::EventHubConnectionString;
/// let cs: EventHubConnectionString =
///     "Endpoint=sb://localhost:5672/;SharedAccessKeyName=service;SharedAccessKey=c2VjcmV0;EntityPath=myhub"
///         .parse()?;
/// assert_eq!((cs.host.as_str(), cs.port, cs.entity_path.as_str()), ("localhost", Some(5672), "myhub"));
/// assert!(!format!("{cs:?}").contains("c2VjcmV0"));
/// # Ok::<(), iot_common::ConnectionStringError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventHubConnectionString {
    /// The namespace's host name, without scheme or port.
    pub host: String,
    /// A port given in `Endpoint` (the emulator's AMQP port); `None` means 5671.
    pub port: Option<u16>,
    /// The shared access policy name.
    pub key_name: String,
    /// The policy's key.
    pub key: Secret,
    /// The event hub's name (for an IoT hub's built-in endpoint, usually the hub name).
    pub entity_path: String,
}

impl EventHubConnectionString {
    /// Builds one from its parts.
    pub fn new(
        host: impl Into<String>,
        port: Option<u16>,
        key_name: impl Into<String>,
        key: Secret,
        entity_path: impl Into<String>,
    ) -> Self {
        Self {
            host: host.into(),
            port,
            key_name: key_name.into(),
            key,
            entity_path: entity_path.into(),
        }
    }

    /// `sb://{host}/{entity}`: the audience of CBS tokens for the entity.
    pub fn audience(&self) -> String {
        format!("sb://{}/{}", self.host, self.entity_path)
    }
}

impl FromStr for EventHubConnectionString {
    type Err = ConnectionStringError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut f = Fields::parse(s)?;
        let endpoint = f.required(ENDPOINT)?;
        let authority = endpoint
            .split_once("://")
            .map_or(endpoint.as_str(), |(_, rest)| rest)
            .trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            return Err(ConnectionStringError::Invalid {
                field: ENDPOINT,
                reason: "not sb://host[:port]/",
            });
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (
                h,
                Some(
                    p.parse::<u16>()
                        .map_err(|_| ConnectionStringError::Invalid {
                            field: ENDPOINT,
                            reason: "the port is not a number",
                        })?,
                ),
            ),
            None => (authority, None),
        };
        validate_host(ENDPOINT, host)?;
        let key_name = f.required(KEY_NAME)?;
        let key = f.required(KEY)?;
        let entity_path = f.required(ENTITY_PATH)?;
        if entity_path.contains(['/', ';']) {
            return Err(ConnectionStringError::Invalid {
                field: ENTITY_PATH,
                reason: "not an event hub name",
            });
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            key_name,
            key: Secret::new(key),
            entity_path,
        })
    }
}

/// Writes the connection string back, key included. Treat the output as a secret.
impl fmt::Display for EventHubConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{ENDPOINT}=sb://{}", self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write!(
            f,
            "/;{KEY_NAME}={};{KEY}={};{ENTITY_PATH}={}",
            self.key_name,
            self.key.expose(),
            self.entity_path
        )
    }
}

impl fmt::Debug for EventHubConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventHubConnectionString")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("key_name", &self.key_name)
            .field("entity_path", &self.entity_path)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn device_string_round_trips() {
        let s = format!(
            "HostName=h.example;DeviceId=d1;ModuleId=m1;SharedAccessKey={KEY_B64};GatewayHostName=localhost:18883"
        );
        let cs: DeviceConnectionString = s.parse().unwrap();
        assert_eq!(cs.module_id.as_deref(), Some("m1"));
        assert_eq!(cs.endpoint_host(), "localhost:18883");
        assert_eq!(cs.to_string(), s);
        assert_eq!(
            cs.to_string().parse::<DeviceConnectionString>().unwrap(),
            cs
        );
    }

    #[test]
    fn keys_are_case_insensitive_and_trailing_semicolon_is_tolerated() {
        let cs: DeviceConnectionString =
            format!("hostname=h;deviceid=d;sharedaccesskey={KEY_B64};")
                .parse()
                .unwrap();
        assert_eq!(cs.host_name, "h");
    }

    #[test]
    fn errors_name_the_field_and_never_the_key() {
        let cases: &[(&str, ConnectionStringError)] = &[
            (
                "DeviceId=d;SharedAccessKey=abc=",
                ConnectionStringError::Missing("HostName"),
            ),
            (
                "HostName=h;SharedAccessKey=abc=",
                ConnectionStringError::Missing("DeviceId"),
            ),
            (
                "HostName=h;DeviceId=d",
                ConnectionStringError::Missing("SharedAccessKey"),
            ),
            (
                "HostName=h;DeviceId=d;SharedAccessKey=not*base64!",
                ConnectionStringError::Invalid {
                    field: "SharedAccessKey",
                    reason: "not a base64 key",
                },
            ),
            (
                "HostName=h;HostName=g;DeviceId=d",
                ConnectionStringError::Duplicate("HostName"),
            ),
            (
                "HostName=h;garbage;DeviceId=d",
                ConnectionStringError::Malformed(2),
            ),
            (
                "HostName=h;DeviceId=d;SharedAccessKey=abc=;x509=true",
                ConnectionStringError::Conflict("SharedAccessKey", "x509"),
            ),
        ];
        for (input, expected) in cases {
            let err = input.parse::<DeviceConnectionString>().unwrap_err();
            assert_eq!(&err, expected, "{input}");
            assert!(!err.to_string().contains("not*base64"), "{err}");
        }
    }

    #[test]
    fn debug_never_shows_the_key() {
        let cs: DeviceConnectionString = format!("HostName=h;DeviceId=d;SharedAccessKey={KEY_B64}")
            .parse()
            .unwrap();
        let sc: ServiceConnectionString =
            format!("HostName=h;SharedAccessKeyName=iothubowner;SharedAccessKey={KEY_B64}")
                .parse()
                .unwrap();
        for out in [
            format!("{cs:?}"),
            format!("{cs:#?}"),
            format!("{sc:?}"),
            format!("{sc:#?}"),
        ] {
            assert!(!out.contains(KEY_B64), "{out}");
            assert!(!out.contains("AAECAw"), "{out}");
        }
    }

    #[test]
    fn sas_and_x509_forms() {
        let tok = "SharedAccessSignature sr=h%2Fdevices%2Fd&sig=abc%3D&se=1700000000";
        let cs: DeviceConnectionString =
            format!("HostName=h;DeviceId=d;SharedAccessSignature={tok}")
                .parse()
                .unwrap();
        assert!(matches!(
            cs.credential,
            DeviceCredential::SharedAccessSignature(_)
        ));
        assert!(!format!("{cs:?}").contains("abc%3D"));
        let cs: DeviceConnectionString = "HostName=h;DeviceId=d;x509=true".parse().unwrap();
        assert_eq!(cs.credential, DeviceCredential::X509);
    }

    #[test]
    fn service_string_requires_policy() {
        let err = format!("HostName=h;SharedAccessKey={KEY_B64}")
            .parse::<ServiceConnectionString>()
            .unwrap_err();
        assert_eq!(err, ConnectionStringError::Missing("SharedAccessKeyName"));
    }
}
