//! Typed reads of twin properties by dotted path (`twin.reported::<String>("rebootTime")`).
//!
//! The twin sections are plain JSON maps; reading one nested property used to take
//! `twin.properties.reported.properties.get(..)` and a manual walk. These accessors walk the path
//! and deserialize the leaf, so a missing property and a property of the wrong type stay
//! distinguishable (`None` versus `Some(Err(..))`).

use crate::twin::{Twin, TwinCollection};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Follows a `.`-separated path through nested JSON objects.
fn lookup<'a>(map: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut segments = path.split('.');
    let mut current = map.get(segments.next()?)?;
    for segment in segments {
        current = current.as_object()?.get(segment)?;
    }
    Some(current)
}

fn read<T: DeserializeOwned>(
    map: &Map<String, Value>,
    path: &str,
) -> Option<Result<T, serde_json::Error>> {
    lookup(map, path).map(T::deserialize)
}

impl TwinCollection {
    /// The property at a `.`-separated `path` (`"firmware.version"`), deserialized as `T`.
    ///
    /// `None` when any segment is absent (or crosses a non-object); `Some(Err(..))` when the
    /// property exists but is not a `T`.
    ///
    /// ```
    /// use iot_common::TwinCollection;
    /// let section = TwinCollection::new(
    ///     serde_json::json!({"firmware": {"version": "1.2"}}).as_object().unwrap().clone(),
    ///     Some(3),
    /// );
    /// let version: String = section.get_path("firmware.version").unwrap().unwrap();
    /// assert_eq!(version, "1.2");
    /// assert!(section.get_path::<String>("firmware.date").is_none());
    /// ```
    pub fn get_path<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Option<Result<T, serde_json::Error>> {
        read(&self.properties, path)
    }
}

impl Twin {
    /// A reported property by `.`-separated path, deserialized as `T`.
    ///
    /// ```
    /// use iot_common::Twin;
    /// let twin: Twin = serde_json::from_value(serde_json::json!({
    ///     "deviceId": "myDevice",
    ///     "properties": {"reported": {"rebootTime": "2026-12-01T10:00:00Z", "$version": 2}}
    /// })).unwrap();
    /// let when: String = twin.reported("rebootTime").unwrap().unwrap();
    /// assert_eq!(when, "2026-12-01T10:00:00Z");
    /// ```
    pub fn reported<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Option<Result<T, serde_json::Error>> {
        self.properties.reported.get_path(path)
    }

    /// A desired property by `.`-separated path, deserialized as `T`.
    pub fn desired<T: DeserializeOwned>(&self, path: &str) -> Option<Result<T, serde_json::Error>> {
        self.properties.desired.get_path(path)
    }

    /// A tag by `.`-separated path, deserialized as `T`.
    pub fn tag<T: DeserializeOwned>(&self, path: &str) -> Option<Result<T, serde_json::Error>> {
        read(&self.tags, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn twin() -> Twin {
        serde_json::from_value(json!({
            "deviceId": "d",
            "tags": {"location": {"region": "US", "floor": 3}},
            "properties": {
                "desired": {"interval": 30, "$version": 4},
                "reported": {"fw": {"version": "1.0", "ok": true}, "$version": 7}
            }
        }))
        .unwrap()
    }

    #[test]
    fn nested_paths_are_followed() {
        let t = twin();
        assert_eq!(t.reported::<String>("fw.version").unwrap().unwrap(), "1.0");
        assert!(t.reported::<bool>("fw.ok").unwrap().unwrap());
        assert_eq!(t.desired::<u32>("interval").unwrap().unwrap(), 30);
        assert_eq!(t.tag::<u8>("location.floor").unwrap().unwrap(), 3);
    }

    #[test]
    fn absent_and_mistyped_are_told_apart() {
        let t = twin();
        assert!(t.reported::<String>("fw.date").is_none());
        assert!(
            t.reported::<String>("fw.version.major").is_none(),
            "crosses a string"
        );
        assert!(t.reported::<String>("").is_none());
        assert!(t.desired::<String>("interval").unwrap().is_err());
        assert!(
            t.desired::<u64>("$version").is_none(),
            "$version is not a property"
        );
    }
}
