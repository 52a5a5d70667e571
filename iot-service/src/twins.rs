//! Device and module twins.

use crate::client::{Call, Retry, ServiceClient};
use crate::{Error, ErrorKind, Result};
use iot_common::Twin;
use iot_common::twin::{self as rules, TwinSection};
use reqwest::Method;
use serde_json::{Map, Value};

/// The `If-Match` condition of an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    /// Unconditional (`If-Match: "*"`).
    Any,
    /// Only if the current etag is this one (412 otherwise).
    Etag(String),
}

impl IfMatch {
    pub(crate) fn header(&self) -> String {
        match self {
            Self::Any => "\"*\"".to_owned(),
            Self::Etag(e) => format!("\"{}\"", e.trim_matches('"')),
        }
    }

    pub(crate) fn retry(&self) -> Retry {
        match self {
            Self::Any => Retry::ConnectOnly,
            Self::Etag(_) => Retry::Idempotent,
        }
    }
}

/// Changes to a twin's tags and desired properties.
///
/// ```
/// use iot_service::TwinPatch;
/// let patch = TwinPatch::new()
///     .tag("location", serde_json::json!({"region": "US"}))
///     .desired("telemetryInterval", serde_json::json!(30));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TwinPatch {
    tags: Option<Map<String, Value>>,
    desired: Option<Map<String, Value>>,
}

impl TwinPatch {
    /// An empty patch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a tag (`null` deletes it in a PATCH).
    pub fn tag(mut self, key: impl Into<String>, value: Value) -> Self {
        self.tags
            .get_or_insert_with(Map::new)
            .insert(key.into(), value);
        self
    }

    /// Sets a desired property (`null` deletes it in a PATCH).
    pub fn desired(mut self, key: impl Into<String>, value: Value) -> Self {
        self.desired
            .get_or_insert_with(Map::new)
            .insert(key.into(), value);
        self
    }

    /// Replaces the whole tags object of the patch.
    pub fn tags(mut self, tags: Map<String, Value>) -> Self {
        self.tags = Some(tags);
        self
    }

    /// Replaces the whole desired object of the patch.
    pub fn desired_properties(mut self, desired: Map<String, Value>) -> Self {
        self.desired = Some(desired);
        self
    }

    /// The JSON body: `{"tags":…, "properties":{"desired":…}}`.
    pub fn to_value(&self) -> Value {
        let mut body = Map::new();
        if let Some(t) = &self.tags {
            body.insert("tags".into(), Value::Object(t.clone()));
        }
        if let Some(d) = &self.desired {
            body.insert("properties".into(), serde_json::json!({ "desired": d }));
        }
        Value::Object(body)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let invalid = |e: rules::TwinError| Error::new(ErrorKind::InvalidInput, e.to_string());
        if let Some(t) = &self.tags {
            let v = Value::Object(t.clone());
            rules::validate_patch(TwinSection::Tags, &v).map_err(invalid)?;
            rules::check_size(TwinSection::Tags, t).map_err(invalid)?;
        }
        if let Some(d) = &self.desired {
            let v = Value::Object(d.clone());
            rules::validate_patch(TwinSection::Desired, &v).map_err(invalid)?;
            rules::check_size(TwinSection::Desired, d).map_err(invalid)?;
        }
        Ok(())
    }
}

impl ServiceClient {
    /// The device's twin (service view: tags, desired and reported with `$metadata`).
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] for an unknown device.
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping the future abandons the request; nothing changes on the hub.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn example(service: iot_service::ServiceClient) -> Result<(), iot_service::Error> {
    /// let twin = service.get_twin("myDevice").await?;
    /// let reboot_time: Option<String> = twin.reported("rebootTime").transpose()?;
    /// println!("last reboot: {reboot_time:?}");
    /// # Ok(()) }
    /// ```
    pub async fn get_twin(&self, device_id: &str) -> Result<Twin> {
        self.send(Call::new(Method::GET, vec!["twins", device_id]))
            .await?
            .json()
    }

    /// A module's twin.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] for an unknown device or module.
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping the future abandons the request; nothing changes on the hub.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn example(service: iot_service::ServiceClient) -> Result<(), iot_service::Error> {
    /// let twin = service.get_module_twin("myDevice", "thermostat").await?;
    /// println!("{:?}", twin.properties.desired);
    /// # Ok(()) }
    /// ```
    pub async fn get_module_twin(&self, device_id: &str, module_id: &str) -> Result<Twin> {
        self.send(Call::new(
            Method::GET,
            vec!["twins", device_id, "modules", module_id],
        ))
        .await?
        .json()
    }

    /// Merges `patch` into the twin (JSON merge patch; `null` deletes). Desired changes are
    /// pushed to the device.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a patch that breaks the hub's rules (before sending);
    /// [`ErrorKind::PreconditionFailed`] when the etag is stale; [`ErrorKind::NotFound`].
    ///
    /// # Cancel safety
    /// Dropping the future abandons the request; if it was already sent the hub may still
    /// apply it, exactly as after a timeout. A patch is a merge, so sending it again is safe.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn example(service: iot_service::ServiceClient) -> Result<(), iot_service::Error> {
    /// use iot_service::{IfMatch, TwinPatch};
    /// let patch = TwinPatch::new()
    ///     .tag("location", serde_json::json!({ "region": "US" }))
    ///     .desired("telemetryInterval", serde_json::json!(30));
    /// let twin = service.update_twin("myDevice", &patch, IfMatch::Any).await?;
    /// println!("desired is now version {:?}", twin.properties.desired.version);
    /// # Ok(()) }
    /// ```
    pub async fn update_twin(
        &self,
        device_id: &str,
        patch: &TwinPatch,
        if_match: IfMatch,
    ) -> Result<Twin> {
        self.write_twin(Method::PATCH, vec!["twins", device_id], patch, if_match)
            .await
    }

    /// Replaces the twin's tags and desired properties with `twin`'s.
    ///
    /// # Errors
    /// As [`ServiceClient::update_twin`].
    ///
    /// # Cancel safety
    /// Dropping the future abandons the request; if it was already sent the hub may still
    /// apply it, exactly as after a timeout. Replacing again with the same content is safe.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn example(service: iot_service::ServiceClient) -> Result<(), iot_service::Error> {
    /// use iot_service::{IfMatch, TwinPatch};
    /// let twin = service.get_twin("myDevice").await?;
    /// let whole = TwinPatch::new().desired("telemetryInterval", serde_json::json!(60));
    /// let etag = twin.etag.clone().unwrap_or_default();
    /// service.replace_twin("myDevice", &whole, IfMatch::Etag(etag)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn replace_twin(
        &self,
        device_id: &str,
        twin: &TwinPatch,
        if_match: IfMatch,
    ) -> Result<Twin> {
        self.write_twin(Method::PUT, vec!["twins", device_id], twin, if_match)
            .await
    }

    /// Merges `patch` into a module twin.
    ///
    /// # Errors
    /// As [`ServiceClient::update_twin`].
    ///
    /// # Cancel safety
    /// Dropping the future abandons the request; if it was already sent the hub may still
    /// apply it, exactly as after a timeout. A patch is a merge, so sending it again is safe.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn example(service: iot_service::ServiceClient) -> Result<(), iot_service::Error> {
    /// use iot_service::{IfMatch, TwinPatch};
    /// let patch = TwinPatch::new().desired("setpoint", serde_json::json!(21.5));
    /// service.update_module_twin("myDevice", "thermostat", &patch, IfMatch::Any).await?;
    /// # Ok(()) }
    /// ```
    pub async fn update_module_twin(
        &self,
        device_id: &str,
        module_id: &str,
        patch: &TwinPatch,
        if_match: IfMatch,
    ) -> Result<Twin> {
        self.write_twin(
            Method::PATCH,
            vec!["twins", device_id, "modules", module_id],
            patch,
            if_match,
        )
        .await
    }

    /// Replaces a module twin's tags and desired properties.
    ///
    /// # Errors
    /// As [`ServiceClient::update_twin`].
    ///
    /// # Cancel safety
    /// Dropping the future abandons the request; if it was already sent the hub may still
    /// apply it, exactly as after a timeout. Replacing again with the same content is safe.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn example(service: iot_service::ServiceClient) -> Result<(), iot_service::Error> {
    /// use iot_service::{IfMatch, TwinPatch};
    /// let whole = TwinPatch::new().desired("setpoint", serde_json::json!(21.5));
    /// service.replace_module_twin("myDevice", "thermostat", &whole, IfMatch::Any).await?;
    /// # Ok(()) }
    /// ```
    pub async fn replace_module_twin(
        &self,
        device_id: &str,
        module_id: &str,
        twin: &TwinPatch,
        if_match: IfMatch,
    ) -> Result<Twin> {
        self.write_twin(
            Method::PUT,
            vec!["twins", device_id, "modules", module_id],
            twin,
            if_match,
        )
        .await
    }

    async fn write_twin(
        &self,
        method: Method,
        path: Vec<&str>,
        patch: &TwinPatch,
        if_match: IfMatch,
    ) -> Result<Twin> {
        patch.validate()?;
        let call = Call::new(method, path)
            .json(&patch.to_value())?
            .header("If-Match", if_match.header())
            .retry(if_match.retry());
        self.send(call).await?.json()
    }
}
