//! Hub operations of the Event Hub-compatible endpoint: telemetry goes into the event log
//! with the connection's identity; its front end (`amqp/events.rs`) reads it back.

use super::Hub;
use super::event_log::{HubEvent, partition_of};
use crate::locks::lock;

impl Hub {
    /// The Event Hub-compatible name (the `EntityPath`): the hub name, i.e. the first label
    /// of the host name, as on Azure (`myhub` for `myhub.azure-devices.net`).
    pub(crate) fn event_hub_name(&self) -> &str {
        let host = self.host_name();
        host.split('.').next().unwrap_or(host)
    }

    /// Whether `name` is `$Default` or a declared consumer group (case-insensitive, as Event
    /// Hubs compares them).
    pub(crate) fn has_consumer_group(&self, name: &str) -> bool {
        name.eq_ignore_ascii_case("$Default")
            || self
                .options
                .consumer_groups
                .iter()
                .any(|g| g.eq_ignore_ascii_case(name))
    }

    /// Appends a telemetry message to its device's partition; returns the `--state` sequence
    /// number to wait for before acknowledging it (0 without `--state`).
    pub(crate) fn append_event(
        &self,
        device_id: &str,
        module_id: Option<&str>,
        properties: &iot_common::MessageProperties,
        body: bytes::Bytes,
    ) -> u64 {
        let (kind, generation_id) = {
            let reg = lock(&self.registry);
            let rec = reg.devices.get(device_id);
            match (rec, module_id) {
                (Some(r), None) => (
                    r.device.authentication.kind.clone(),
                    r.device.generation_id.clone(),
                ),
                (Some(r), Some(m)) => r.modules.get(m).map_or_else(Default::default, |m| {
                    (
                        m.module.authentication.kind.clone(),
                        m.module.generation_id.clone(),
                    )
                }),
                (None, _) => Default::default(),
            }
        };
        let event = HubEvent {
            sequence_number: 0,
            offset: 0,
            enqueued_ms: chrono::Utc::now().timestamp_millis(),
            device_id: device_id.to_owned(),
            module_id: module_id.map(str::to_owned),
            auth_method: auth_method(&kind, module_id.is_some()),
            generation_id: generation_id.unwrap_or_default(),
            properties: properties.encode(),
            body,
        };
        let durable = self.persistence.is_durable();
        self.events
            .append(partition_of(device_id), event, |writes| {
                if durable {
                    self.persistence.enqueue(writes)
                } else {
                    0
                }
            })
    }
}

/// `iothub-connection-auth-method` as the hub writes it.
fn auth_method(kind: &str, module: bool) -> String {
    let kind = match kind {
        "selfSigned" => "x509Certificate",
        "certificateAuthority" => "x509CA",
        _ => "sas",
    };
    let scope = if module { "module" } else { "device" };
    format!(
        r#"{{"scope":"{scope}","type":"{kind}","issuer":"iothub","acceptingIpFilterRule":null}}"#
    )
}
