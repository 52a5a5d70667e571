//! One twin's stored state and the hub's update rules for it (versions, etags, `$metadata`).

use base64::Engine as _;
use iot_common::twin::{self, TwinSection};
use iot_common::{TwinCollection, TwinError, TwinProperties};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The mutable part of a device or module twin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TwinState {
    pub(crate) tags: Map<String, Value>,
    pub(crate) desired: Map<String, Value>,
    desired_meta: Map<String, Value>,
    pub(crate) desired_version: u64,
    pub(crate) reported: Map<String, Value>,
    reported_meta: Map<String, Value>,
    pub(crate) reported_version: u64,
    etag_seq: u64,
    version: u64,
    /// The Plug and Play model id the device (or module) last announced in its CONNECT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) model_id: Option<String>,
}

/// What a service-side update changed, so the hub can notify the device.
pub(crate) enum DesiredChange {
    None,
    /// A PATCH: the notification body is the patch.
    Patch(Map<String, Value>),
    /// A PUT: the notification body is the whole new desired section.
    Full,
}

impl TwinState {
    pub(crate) fn new(now: &str) -> Self {
        Self {
            tags: Map::new(),
            desired: Map::new(),
            desired_meta: twin::fresh_metadata(&Map::new(), now, Some(1)),
            desired_version: 1,
            reported: Map::new(),
            reported_meta: twin::fresh_metadata(&Map::new(), now, None),
            reported_version: 1,
            etag_seq: 1,
            version: 2,
            model_id: None,
        }
    }

    pub(crate) fn etag(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.etag_seq.to_be_bytes())
    }

    /// The device's view: `{"desired":{…,"$version"},"reported":{…,"$version"}}`.
    pub(crate) fn device_view(&self) -> TwinProperties {
        TwinProperties::new(
            TwinCollection::new(self.desired.clone(), Some(self.desired_version)),
            TwinCollection::new(self.reported.clone(), Some(self.reported_version)),
        )
    }

    /// The desired section with `$version`, as a notification body after a full replacement.
    pub(crate) fn desired_notification(&self, patch: Option<&Map<String, Value>>) -> Value {
        let mut body = patch.cloned().unwrap_or_else(|| self.desired.clone());
        body.insert("$version".into(), Value::from(self.desired_version));
        Value::Object(body)
    }

    /// Writes the twin-owned fields of a service twin (etag, version, tags, properties with
    /// `$metadata` and `$version`) into its JSON document.
    pub(crate) fn write_into(&self, doc: &mut Map<String, Value>) {
        let section = |props: &Map<String, Value>, meta: &Map<String, Value>, version: u64| {
            let mut m = props.clone();
            m.insert("$metadata".into(), Value::Object(meta.clone()));
            m.insert("$version".into(), Value::from(version));
            Value::Object(m)
        };
        doc.insert("etag".into(), Value::String(self.etag()));
        doc.insert("version".into(), Value::from(self.version));
        if !self.tags.is_empty() {
            doc.insert("tags".into(), Value::Object(self.tags.clone()));
        }
        let mut properties = Map::new();
        properties.insert(
            "desired".into(),
            section(&self.desired, &self.desired_meta, self.desired_version),
        );
        properties.insert(
            "reported".into(),
            section(&self.reported, &self.reported_meta, self.reported_version),
        );
        doc.insert("properties".into(), Value::Object(properties));
    }

    /// A device's reported patch. Returns the new reported `$version`.
    pub(crate) fn patch_reported(&mut self, patch: &Value, now: &str) -> Result<u64, TwinError> {
        twin::validate_patch(TwinSection::Reported, patch)?;
        let patch = patch.as_object().cloned().unwrap_or_default();
        let mut next = self.reported.clone();
        twin::merge_patch(&mut next, &patch);
        twin::check_size(TwinSection::Reported, &next)?;
        self.reported = next;
        twin::update_metadata(&mut self.reported_meta, &patch, now, None);
        self.reported_version += 1;
        self.version += 1;
        Ok(self.reported_version)
    }

    /// A service PATCH (`replace = false`) or PUT (`replace = true`) of tags and desired.
    /// Read-only members of the body are ignored.
    pub(crate) fn service_update(
        &mut self,
        body: &Value,
        replace: bool,
        now: &str,
    ) -> Result<DesiredChange, TwinError> {
        let body = body.as_object().ok_or(TwinError::NotAnObject("twin"))?;
        let tags = body.get("tags").filter(|v| !v.is_null());
        let desired = body
            .get("properties")
            .and_then(|p| p.get("desired"))
            .filter(|v| !v.is_null());
        if let Some(t) = tags {
            twin::validate_patch(TwinSection::Tags, t)?;
        }
        if let Some(d) = desired {
            twin::validate_patch(TwinSection::Desired, d)?;
        }
        let strip = |v: Option<&Value>| {
            let mut m = v.and_then(Value::as_object).cloned().unwrap_or_default();
            m.remove("$version");
            m.remove("$metadata");
            m
        };
        let (tags_patch, desired_patch) = (strip(tags), strip(desired));
        let (mut new_tags, mut new_desired) = if replace {
            (Map::new(), Map::new())
        } else {
            (self.tags.clone(), self.desired.clone())
        };
        if replace {
            new_tags = tags_patch.clone();
            twin::merge_patch(&mut new_desired, &desired_patch);
        } else {
            twin::merge_patch(&mut new_tags, &tags_patch);
            twin::merge_patch(&mut new_desired, &desired_patch);
        }
        twin::check_size(TwinSection::Tags, &new_tags)?;
        twin::check_size(TwinSection::Desired, &new_desired)?;
        let tags_changed = replace || tags.is_some();
        let desired_changed = replace || desired.is_some();
        if !tags_changed && !desired_changed {
            return Ok(DesiredChange::None);
        }
        self.tags = new_tags;
        self.etag_seq += 1;
        self.version += 1;
        if !desired_changed {
            return Ok(DesiredChange::None);
        }
        self.desired = new_desired;
        self.desired_version += 1;
        if replace {
            self.desired_meta =
                twin::fresh_metadata(&self.desired, now, Some(self.desired_version));
            Ok(DesiredChange::Full)
        } else {
            twin::update_metadata(
                &mut self.desired_meta,
                &desired_patch,
                now,
                Some(self.desired_version),
            );
            Ok(DesiredChange::Patch(desired_patch))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn versions_and_etags_follow_the_reference_arithmetic() {
        let mut t = TwinState::new("t0");
        assert_eq!((t.etag(), t.version), ("AAAAAAAAAAE=".to_owned(), 2));
        assert_eq!(t.patch_reported(&json!({"a": 1}), "t1").unwrap(), 2);
        assert_eq!(t.etag(), "AAAAAAAAAAE=", "reported changes keep the etag");
        let change = t
            .service_update(
                &json!({"properties": {"desired": {"x": 1}}, "etag": "ignored"}),
                false,
                "t2",
            )
            .unwrap();
        assert!(matches!(change, DesiredChange::Patch(_)));
        assert_eq!(
            (t.desired_version, t.etag(), t.version),
            (2, "AAAAAAAAAAI=".to_owned(), 4)
        );
        assert!(matches!(
            t.service_update(&json!({"tags": {"floor": 3}}), false, "t3")
                .unwrap(),
            DesiredChange::None
        ));
        assert_eq!(t.desired_version, 2);
        t.service_update(
            &json!({"tags": {"b": 1}, "properties": {"desired": {"y": 2}}}),
            true,
            "t4",
        )
        .unwrap();
        assert_eq!(Value::Object(t.tags.clone()), json!({"b": 1}));
        assert_eq!(Value::Object(t.desired.clone()), json!({"y": 2}));
        assert_eq!(t.desired_notification(None), json!({"y": 2, "$version": 3}));
    }

    #[test]
    fn invalid_patches_change_nothing() {
        let mut t = TwinState::new("t0");
        assert!(t.patch_reported(&json!({"a.b": 1}), "t1").is_err());
        assert!(t.patch_reported(&json!({"s": "x".repeat(4000), "t": "x".repeat(4000), "u": "x".repeat(4000), "v": "x".repeat(4000), "w": "x".repeat(4000), "x": "x".repeat(4000), "y": "x".repeat(4000), "z": "x".repeat(4000), "zz": "x".repeat(1000)}), "t1").is_err());
        assert_eq!(t.reported_version, 1);
        assert!(t.reported.is_empty());
    }
}
