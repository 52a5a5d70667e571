//! `iothub twin …`: show, merge-patch and replace twins, with etags.

use crate::cli::{TwinCommand, TwinWriteArgs};
use crate::error::CliError;
use crate::hub::Hub;
use crate::input;
use crate::output::Output;
use iot_service::{IfMatch, Twin, TwinPatch};
use serde_json::{Map, Value};

/// Runs one `twin` subcommand.
///
/// # Cancel safety
/// `show` is safe to drop; a dropped update or replace may or may not have been applied (pass
/// `--etag` to make a retry safe). Bounded by the client's timeout.
pub async fn run(hub: &Hub, out: &Output, cmd: TwinCommand) -> Result<(), CliError> {
    let twin = match cmd {
        TwinCommand::Show { device_id } => hub.client.get_twin(&device_id).await?,
        TwinCommand::Update(a) => {
            let (patch, if_match) = parse(&a)?;
            hub.client
                .update_twin(&a.device_id, &patch, if_match)
                .await?
        }
        TwinCommand::Replace(a) => {
            let (patch, if_match) = parse(&a)?;
            hub.client
                .replace_twin(&a.device_id, &patch, if_match)
                .await?
        }
    };
    show(out, &twin)
}

fn show(out: &Output, twin: &Twin) -> Result<(), CliError> {
    let v = serde_json::to_value(twin)
        .map_err(|e| CliError::Unexpected(format!("cannot show the twin: {e}")))?;
    if out.is_json() {
        out.object(&v);
        return Ok(());
    }
    // The table keeps the fields people look for, in that order, and leaves the per-property
    // `$metadata` to --json.
    let pick = |p: &str| v.pointer(p).cloned().unwrap_or(Value::Null);
    let section = |p: &str| {
        let mut s = pick(p);
        if let Value::Object(m) = &mut s {
            m.remove("$metadata");
        }
        s
    };
    out.fields(&[
        ("deviceId", pick("/deviceId")),
        ("etag", pick("/etag")),
        ("version", pick("/version")),
        ("status", pick("/status")),
        ("connectionState", pick("/connectionState")),
        ("lastActivityTime", pick("/lastActivityTime")),
        ("tags", pick("/tags")),
        ("desired", section("/properties/desired")),
        ("reported", section("/properties/reported")),
    ]);
    Ok(())
}

fn parse(a: &TwinWriteArgs) -> Result<(TwinPatch, IfMatch), CliError> {
    let patch = patch_from_json(input::json(&a.document)?)?;
    let if_match = a.etag.clone().map_or(IfMatch::Any, IfMatch::Etag);
    Ok((patch, if_match))
}

/// `{"tags":{…},"properties":{"desired":{…}}}` as a patch; anything else is refused, so a
/// typo never turns into a silently ignored field.
fn patch_from_json(v: Value) -> Result<TwinPatch, CliError> {
    let shape = "expected {\"tags\":{…},\"properties\":{\"desired\":{…}}}";
    let Value::Object(mut top) = v else {
        return Err(CliError::Usage(format!(
            "the twin JSON is not an object; {shape}"
        )));
    };
    let mut patch = TwinPatch::new();
    if let Some(tags) = top.remove("tags") {
        patch = patch.tags(object(tags, "tags", shape)?);
    }
    if let Some(props) = top.remove("properties") {
        let mut props = object(props, "properties", shape)?;
        if let Some(desired) = props.remove("desired") {
            patch = patch.desired_properties(object(desired, "properties.desired", shape)?);
        }
        if let Some(k) = props.keys().next() {
            return Err(CliError::Usage(format!(
                "properties.{k} cannot be written by the service; {shape}"
            )));
        }
    }
    if let Some(k) = top.keys().next() {
        return Err(CliError::Usage(format!("unexpected field {k}; {shape}")));
    }
    Ok(patch)
}

fn object(v: Value, name: &str, shape: &str) -> Result<Map<String, Value>, CliError> {
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(CliError::Usage(format!("{name} is not an object; {shape}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patches() {
        let p = patch_from_json(json!({"tags":{"a":1},"properties":{"desired":{"b":2}}}));
        assert_eq!(
            p.ok().map(|p| p.to_value()),
            Some(json!({"tags":{"a":1},"properties":{"desired":{"b":2}}}))
        );
        assert!(patch_from_json(json!({"tag":{}})).is_err());
        assert!(patch_from_json(json!({"properties":{"reported":{}}})).is_err());
        assert!(patch_from_json(json!([1])).is_err());
    }
}
