//! Device twins: the device view (`desired`/`reported` with `$version`), the service view
//! (identity fields, `etag`, `tags`, `$metadata`), and the update rules the hub enforces.

use crate::Timestamp;
use serde::de::{DeserializeOwned, Deserializer};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Deepest allowed nesting of objects below a section root.
pub const MAX_DEPTH: usize = 10;
/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Longest string value, in bytes.
pub const MAX_STRING_BYTES: usize = 4096;
/// Largest integer (2^52 − 1).
pub const MAX_INTEGER: i64 = 4_503_599_627_370_495;
/// Smallest integer (−2^52).
pub const MIN_INTEGER: i64 = -4_503_599_627_370_496;

/// A part of the twin with its own rules and size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TwinSection {
    /// `tags` (service-written, 8 KB).
    Tags,
    /// `properties.desired` (service-written, 32 KB).
    Desired,
    /// `properties.reported` (device-written, 32 KB).
    Reported,
}

impl TwinSection {
    /// The size limit of the section, as the hub counts it.
    pub fn size_limit(self) -> usize {
        match self {
            Self::Tags => 8 * 1024,
            Self::Desired | Self::Reported => 32 * 1024,
        }
    }

    /// Most bytes the section may take as serialized JSON, whatever [`document_size`] counts:
    /// eight times [`size_limit`](Self::size_limit). The hub's rule counts control characters,
    /// nulls in arrays and JSON syntax as nothing, so without this bound a section within the
    /// hub's limit could still grow without end.
    pub fn max_json_bytes(self) -> usize {
        self.size_limit() * 8
    }

    /// The section's name in error messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tags => "tags",
            Self::Desired => "properties.desired",
            Self::Reported => "properties.reported",
        }
    }
}

/// Why a twin update was refused. Paths name keys, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TwinError {
    /// The patch is not a JSON object.
    #[error("{0} must be a JSON object")]
    NotAnObject(&'static str),
    /// A key is empty, too long, or contains `.`, `$`, a space or a control character.
    #[error("invalid key `{path}`: {reason}")]
    InvalidKey {
        /// Where the key is.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// More than ten levels of nesting.
    #[error("{0} is nested deeper than 10 levels")]
    TooDeep(String),
    /// `null` inside an array.
    #[error("array at `{0}` contains null")]
    NullInArray(String),
    /// A string longer than 4 KB.
    #[error("string at `{0}` is longer than 4 KB")]
    StringTooLong(String),
    /// An integer outside ±2^52.
    #[error("number at `{0}` is out of range")]
    NumberOutOfRange(String),
    /// The section would exceed its size limit.
    #[error("{section} would be {size} bytes, over the {limit} byte limit")]
    TooLarge {
        /// The section.
        section: &'static str,
        /// Its size after the update.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

fn validate_key(path: &str, key: &str) -> Result<(), TwinError> {
    let reason = if key.is_empty() {
        "empty"
    } else if key.len() > MAX_KEY_BYTES {
        "longer than 1 KB"
    } else if key
        .chars()
        .any(|c| c == '.' || c == '$' || c == ' ' || c.is_control())
    {
        "contains `.`, `$`, a space or a control character"
    } else {
        return Ok(());
    };
    Err(TwinError::InvalidKey {
        path: child_path(path, key),
        reason,
    })
}

fn validate_value(
    path: &str,
    value: &Value,
    depth: usize,
    in_array: bool,
) -> Result<(), TwinError> {
    match value {
        Value::Null if in_array => Err(TwinError::NullInArray(path.to_owned())),
        Value::String(s) if s.len() > MAX_STRING_BYTES => {
            Err(TwinError::StringTooLong(path.to_owned()))
        }
        Value::Number(n) => {
            let ok = match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => (MIN_INTEGER..=MAX_INTEGER).contains(&i),
                (None, Some(_)) => false,
                (None, None) => n.as_f64().is_some_and(f64::is_finite),
            };
            if ok {
                Ok(())
            } else {
                Err(TwinError::NumberOutOfRange(path.to_owned()))
            }
        }
        Value::Array(items) => {
            if depth > MAX_DEPTH {
                return Err(TwinError::TooDeep(path.to_owned()));
            }
            items
                .iter()
                .try_for_each(|v| validate_value(path, v, depth + 1, true))
        }
        Value::Object(map) => {
            if depth > MAX_DEPTH {
                return Err(TwinError::TooDeep(path.to_owned()));
            }
            for (k, v) in map {
                validate_key(path, k)?;
                validate_value(&child_path(path, k), v, depth + 1, in_array)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Checks a patch (or a full replacement) of `section` against the hub's rules: an object,
/// valid keys, at most ten levels, no `null` in arrays, strings ≤ 4 KB, integers within ±2^52.
/// Read-only members `$version` and `$metadata` at the root are allowed and ignored.
///
/// ```
/// use iot_common::twin::{validate_patch, TwinSection, TwinError};
/// use serde_json::json;
/// assert!(validate_patch(TwinSection::Reported, &json!({"rebootTime": "2024-01-01T00:00:00Z"})).is_ok());
/// assert!(matches!(
///     validate_patch(TwinSection::Reported, &json!({"a.b": 1})),
///     Err(TwinError::InvalidKey { .. })
/// ));
/// ```
///
/// # Errors
/// The first [`TwinError`] found.
pub fn validate_patch(section: TwinSection, patch: &Value) -> Result<(), TwinError> {
    let map = patch
        .as_object()
        .ok_or(TwinError::NotAnObject(section.name()))?;
    for (k, v) in map {
        if is_read_only(k) {
            continue;
        }
        validate_key("", k)?;
        validate_value(k, v, 1, false)?;
    }
    Ok(())
}

fn is_read_only(key: &str) -> bool {
    key == "$version" || key == "$metadata"
}

/// The size of a section as the hub counts it: keys plus values, strings by character count
/// without control characters, numbers 8, booleans 4; `$`-prefixed members excluded.
pub fn document_size(map: &Map<String, Value>) -> usize {
    fn value_size(v: &Value) -> usize {
        match v {
            Value::Null => 0,
            Value::Bool(_) => 4,
            Value::Number(_) => 8,
            Value::String(s) => s.chars().filter(|c| !c.is_control()).count(),
            Value::Array(items) => items.iter().map(value_size).sum(),
            Value::Object(m) => document_size(m),
        }
    }
    map.iter()
        .filter(|(k, _)| !k.starts_with('$'))
        .map(|(k, v)| k.len() + value_size(v))
        .sum()
}

/// The length of a section serialized as JSON, counted without building the text.
pub fn json_size(map: &Map<String, Value>) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Writing into a counter cannot fail.
    let _ = serde_json::to_writer(&mut c, map);
    c.0
}

/// Checks that a section is within its size limit, as the hub counts it, and within
/// [`TwinSection::max_json_bytes`] as serialized JSON.
///
/// # Errors
/// [`TwinError::TooLarge`].
pub fn check_size(section: TwinSection, map: &Map<String, Value>) -> Result<(), TwinError> {
    let size = document_size(map);
    if size > section.size_limit() {
        return Err(TwinError::TooLarge {
            section: section.name(),
            size,
            limit: section.size_limit(),
        });
    }
    let bytes = json_size(map);
    if bytes > section.max_json_bytes() {
        return Err(TwinError::TooLarge {
            section: section.name(),
            size: bytes,
            limit: section.max_json_bytes(),
        });
    }
    Ok(())
}

/// JSON merge patch (RFC 7396): `null` removes a member, objects merge recursively, anything
/// else replaces. Root-level `$version`/`$metadata` in the patch are ignored.
pub fn merge_patch(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (k, v) in patch {
        if is_read_only(k) {
            continue;
        }
        merge_member(target, k, v);
    }
}

fn merge_member(target: &mut Map<String, Value>, key: &str, value: &Value) {
    match value {
        Value::Null => {
            target.remove(key);
        }
        Value::Object(patch) => {
            let slot = target
                .entry(key.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            if let Value::Object(inner) = slot {
                for (k, v) in patch {
                    merge_member(inner, k, v);
                }
            }
        }
        other => {
            target.insert(key.to_owned(), other.clone());
        }
    }
}

fn stamp(ts: &str, version: Option<u64>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("$lastUpdated".into(), Value::String(ts.to_owned()));
    if let Some(v) = version {
        m.insert("$lastUpdatedVersion".into(), Value::from(v));
    }
    m
}

/// Updates a section's `$metadata` tree for a merge patch: every touched node and all its
/// ancestors get `$lastUpdated` (and `$lastUpdatedVersion` in `desired`), removed members lose
/// their entries, untouched siblings keep theirs.
pub fn update_metadata(
    metadata: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    timestamp: &str,
    version: Option<u64>,
) {
    for (k, v) in patch {
        if is_read_only(k) {
            continue;
        }
        match v {
            Value::Null => {
                metadata.remove(k);
            }
            Value::Object(inner) => {
                let slot = metadata
                    .entry(k.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                if let Value::Object(m) = slot {
                    update_metadata(m, inner, timestamp, version);
                }
            }
            _ => {
                metadata.insert(k.clone(), Value::Object(stamp(timestamp, version)));
            }
        }
    }
    metadata.extend(stamp(timestamp, version));
}

/// Builds a fresh `$metadata` tree for a whole section (after a replacement).
pub fn fresh_metadata(
    section: &Map<String, Value>,
    timestamp: &str,
    version: Option<u64>,
) -> Map<String, Value> {
    let mut m = Map::new();
    update_metadata(&mut m, section, timestamp, version);
    m
}

/// A twin section: its properties plus the read-only `$version` and `$metadata`.
///
/// On the wire it is one JSON object; `$version` and `$metadata` are pulled into fields.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct TwinCollection {
    /// The properties, without `$version` and `$metadata`.
    pub properties: Map<String, Value>,
    /// `$version`.
    pub version: Option<u64>,
    /// `$metadata` (service view only).
    pub metadata: Option<Map<String, Value>>,
}

impl TwinCollection {
    /// A collection with the given properties and version.
    pub fn new(properties: Map<String, Value>, version: Option<u64>) -> Self {
        Self {
            properties,
            version,
            metadata: None,
        }
    }

    /// A property deserialized as `T`, or `None` when absent.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Option<Result<T, serde_json::Error>> {
        self.properties
            .get(key)
            .map(|v| T::deserialize(v).map_err(serde::de::Error::custom))
    }

    /// `true` when the property exists.
    pub fn contains_key(&self, key: &str) -> bool {
        self.properties.contains_key(key)
    }

    /// The properties with `$version` folded back in (as in a desired notification body).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

impl Serialize for TwinCollection {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let extra = usize::from(self.version.is_some()) + usize::from(self.metadata.is_some());
        let mut map = s.serialize_map(Some(self.properties.len() + extra))?;
        for (k, v) in &self.properties {
            map.serialize_entry(k, v)?;
        }
        if let Some(m) = &self.metadata {
            map.serialize_entry("$metadata", m)?;
        }
        if let Some(v) = self.version {
            map.serialize_entry("$version", &v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for TwinCollection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut properties = Map::<String, Value>::deserialize(d)?;
        let version = properties.remove("$version").and_then(|v| v.as_u64());
        let metadata = match properties.remove("$metadata") {
            Some(Value::Object(m)) => Some(m),
            _ => None,
        };
        Ok(Self {
            properties,
            version,
            metadata,
        })
    }
}

/// The twin as a device sees it (`$iothub/twin/GET`): `desired` and `reported`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TwinProperties {
    /// Desired properties, written by the service.
    #[serde(default)]
    pub desired: TwinCollection,
    /// Reported properties, written by the device.
    #[serde(default)]
    pub reported: TwinCollection,
}

impl TwinProperties {
    /// Builds the device view from its two sections.
    pub fn new(desired: TwinCollection, reported: TwinCollection) -> Self {
        Self { desired, reported }
    }
}

/// `enabled` or `disabled`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DeviceStatus {
    /// The device may connect.
    #[default]
    Enabled,
    /// The device is refused on every device-facing endpoint.
    Disabled,
}

/// `Connected` or `Disconnected`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConnectionState {
    /// No live connection.
    #[default]
    Disconnected,
    /// A live connection.
    Connected,
}

/// Device capabilities.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    /// `true` for IoT Edge devices.
    #[serde(default)]
    pub iot_edge: bool,
}

/// The twin as the service sees it (`GET /twins/{id}`, query results).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Twin {
    /// Device id.
    #[serde(default)]
    pub device_id: String,
    /// Module id, for module twins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_id: Option<String>,
    /// Opaque etag for `If-Match`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// The device identity's etag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_etag: Option<String>,
    /// Enabled or disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<DeviceStatus>,
    /// Why the status was set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// When the status changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_update_time: Option<Timestamp>,
    /// Whether the device is connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_state: Option<ConnectionState>,
    /// Last time the device was active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activity_time: Option<Timestamp>,
    /// Pending cloud-to-device messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_to_device_message_count: Option<u64>,
    /// `sas`, `selfSigned`, `certificateAuthority` or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication_type: Option<String>,
    /// Plug and Play model id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    /// Increases on every change to the twin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Tags (service-only metadata).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub tags: Map<String, Value>,
    /// Desired and reported properties, with `$metadata`.
    #[serde(default)]
    pub properties: TwinProperties,
    /// Capabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn merge_rules() {
        let mut t = obj(json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1, 2], "f": 1}));
        merge_patch(
            &mut t,
            &obj(
                json!({"a": null, "b": {"c": null, "x": 9}, "e": [3], "f": {"g": 1}, "$version": 9, "missing": null}),
            ),
        );
        assert_eq!(
            Value::Object(t),
            json!({"b": {"d": 3, "x": 9}, "e": [3], "f": {"g": 1}})
        );
    }

    #[test]
    fn key_depth_array_and_number_rules() {
        let r = TwinSection::Reported;
        assert!(matches!(
            validate_patch(r, &json!([1])),
            Err(TwinError::NotAnObject(_))
        ));
        for bad in ["a.b", "$x", "a b", "a\u{1}", ""] {
            let mut m = Map::new();
            m.insert(bad.into(), json!(1));
            assert!(
                matches!(
                    validate_patch(r, &Value::Object(m)),
                    Err(TwinError::InvalidKey { .. })
                ),
                "{bad:?}"
            );
        }
        assert_eq!(
            validate_patch(r, &json!({"a": [1, null]})),
            Err(TwinError::NullInArray("a".into()))
        );
        assert!(validate_patch(r, &json!({"a": null})).is_ok());
        assert!(validate_patch(r, &json!({"n": 4_503_599_627_370_495_i64})).is_ok());
        assert_eq!(
            validate_patch(r, &json!({"n": 4_503_599_627_370_496_i64})),
            Err(TwinError::NumberOutOfRange("n".into()))
        );
        assert!(validate_patch(r, &json!({"$version": 3, "$metadata": {}})).is_ok());
        assert_eq!(
            validate_patch(r, &json!({"s": "x".repeat(4097)})),
            Err(TwinError::StringTooLong("s".into()))
        );
    }

    #[test]
    fn ten_levels_pass_eleven_fail() {
        // The docs' valid example: objects `one`..`ten`, a primitive inside `ten`.
        let mut ten = json!({"leaf": 1});
        for k in [
            "ten", "nine", "eight", "seven", "six", "five", "four", "three", "two", "one",
        ] {
            ten = json!({ k: ten });
        }
        assert!(validate_patch(TwinSection::Tags, &ten).is_ok());
        let eleven = json!({ "zero": ten });
        assert!(matches!(
            validate_patch(TwinSection::Tags, &eleven),
            Err(TwinError::TooDeep(_))
        ));
    }

    #[test]
    fn control_characters_count_toward_the_stored_bytes() {
        let mut m = Map::new();
        m.insert("c".into(), Value::String("\u{1}".repeat(100_000)));
        assert_eq!(document_size(&m), 1);
        assert!(matches!(
            check_size(TwinSection::Reported, &m),
            Err(TwinError::TooLarge { .. })
        ));
        let mut nulls = Map::new();
        nulls.insert("n".into(), Value::Array(vec![Value::Null; 100_000]));
        assert!(check_size(TwinSection::Reported, &nulls).is_err());
    }

    #[test]
    fn size_algorithm() {
        let m = obj(json!({"ab": "xyz", "n": 1, "b": true, "o": {"k": "v"}, "$version": 1}));
        assert_eq!(
            document_size(&m),
            (2 + 3) + (1 + 8) + (1 + 4) + (1 + (1 + 1))
        );
        let big = obj(json!({"s": "x".repeat(4000), "t": "x".repeat(4000), "u": "x".repeat(400)}));
        assert!(matches!(
            check_size(TwinSection::Tags, &big),
            Err(TwinError::TooLarge { .. })
        ));
        assert!(check_size(TwinSection::Desired, &big).is_ok());
    }

    #[test]
    fn metadata_follows_the_tree() {
        let mut meta = Map::new();
        update_metadata(
            &mut meta,
            &obj(json!({"a": {"b": 1, "c": 2}, "d": 1})),
            "t1",
            Some(2),
        );
        update_metadata(
            &mut meta,
            &obj(json!({"a": {"b": 5}, "d": null})),
            "t2",
            Some(3),
        );
        let meta = Value::Object(meta);
        assert_eq!(meta["$lastUpdated"], "t2");
        assert_eq!(meta["a"]["$lastUpdated"], "t2");
        assert_eq!(meta["a"]["b"]["$lastUpdatedVersion"], 3);
        assert_eq!(meta["a"]["c"]["$lastUpdated"], "t1");
        assert!(meta.get("d").is_none());
    }

    #[test]
    fn collection_serde() {
        let c: TwinCollection = serde_json::from_value(
            json!({"x": 1, "$version": 4, "$metadata": {"$lastUpdated": "t"}}),
        )
        .unwrap();
        assert_eq!(c.version, Some(4));
        assert_eq!(c.get::<u32>("x").unwrap().unwrap(), 1);
        assert!(c.get::<String>("x").unwrap().is_err());
        assert_eq!(c.to_value()["$version"], 4);
        let device_view: TwinProperties = serde_json::from_str(
            r#"{"desired":{"device_count":20,"$version":3},"reported":{"device_count":0,"$version":5}}"#,
        )
        .unwrap();
        assert_eq!(device_view.desired.version, Some(3));
        assert_eq!(device_view.reported.version, Some(5));
    }
}
