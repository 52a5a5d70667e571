//! The Event Hub-compatible endpoint's receiver links:
//! `{entity}/ConsumerGroups/{group}/Partitions/{n}`, started where the selector filter says,
//! owner level from the `com.microsoft:epoch` link property, then live tailing of the partition.
//!
//! Events go out pre-settled (the link's sender settle mode is `settled`): azure-eventhub
//! never settles what it receives, and an unsettled delivery would be held for ever.

use super::connection::ConnState;
use crate::hub::event_log::{HubEvent, PARTITIONS, Start};
use crate::hub::event_receivers::ClaimRefused;
use crate::limits::EVENT_READ_BATCH;
use fe2o3_amqp::link::Sender;
use fe2o3_amqp::link::delivery::Sendable;
use fe2o3_amqp::types::definitions::{self, AmqpError, ErrorCondition, LinkError};
use fe2o3_amqp::types::messaging::{
    ApplicationProperties, Data, Message, MessageAnnotations, MessageId, Properties,
};
use fe2o3_amqp::types::performatives::Attach;
use fe2o3_amqp::types::primitives::{Binary, Symbol, Timestamp, Value};
use iot_common::MessageProperties;
use std::sync::Arc;

/// The selector filter's key (and descriptor) in the source's filter set.
const SELECTOR: &str = "apache.org:selector-filter:string";
/// The owner level (epoch) link property.
const EPOCH: &str = "com.microsoft:epoch";

/// What a receiver asked for: its partition, consumer group, start and owner level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PartitionRequest {
    pub(super) group: String,
    pub(super) partition: u32,
    pub(super) start: Start,
    pub(super) epoch: Option<i64>,
}

/// `Some` when `node` is a partition address: the request, or the error to detach with.
pub(super) fn partition_request(
    state: &ConnState,
    node: &str,
    attach: &Attach,
) -> Option<Result<PartitionRequest, definitions::Error>> {
    let (entity, group, partition) = parse_address(node)?;
    Some(check(state, entity, group, partition, attach))
}

fn check(
    state: &ConnState,
    entity: &str,
    group: &str,
    partition: &str,
    attach: &Attach,
) -> Result<PartitionRequest, definitions::Error> {
    let hub = &state.hub;
    if !entity.eq_ignore_ascii_case(hub.event_hub_name()) {
        return Err(not_found(format!(
            "The messaging entity '{entity}' could not be found; this hub's Event \
             Hub-compatible name is '{}'.",
            hub.event_hub_name()
        )));
    }
    if !hub.has_consumer_group(group) {
        return Err(not_found(format!(
            "The consumer group '{group}' does not exist (declare it with --consumer-group)."
        )));
    }
    let partition = partition
        .parse::<u32>()
        .ok()
        .filter(|p| *p < PARTITIONS)
        .ok_or_else(|| {
            not_found(format!(
                "Partition '{partition}' does not exist; the partitions are 0 to {}.",
                PARTITIONS - 1
            ))
        })?;
    let start = match selector(attach) {
        None => Start::Beginning,
        Some(expr) => parse_selector(&expr).map_err(|why| {
            error(
                ErrorCondition::AmqpError(AmqpError::InvalidField),
                format!("The selector filter '{expr}' is not supported: {why}."),
            )
        })?,
    };
    let epoch = attach
        .properties
        .as_ref()
        .and_then(|p| p.get(&Symbol::from(EPOCH)))
        .and_then(|v| match v {
            Value::Long(n) => Some(*n),
            Value::Int(n) => Some(i64::from(*n)),
            Value::Uint(n) => Some(i64::from(*n)),
            Value::Ulong(n) => i64::try_from(*n).ok(),
            _ => None,
        });
    Ok(PartitionRequest {
        group: group.to_owned(),
        partition,
        start,
        epoch,
    })
}

/// `true` for the hub's own events address, `/messages/events[/…]`, which IoT Hub answers
/// with a redirect to its Event Hub-compatible endpoint.
pub(super) fn is_hub_events(node: &str) -> bool {
    let lower = node.to_ascii_lowercase();
    lower == "/messages/events" || lower.starts_with("/messages/events/")
}

/// The `amqp:link:redirect` IoT Hub detaches `/messages/events[/rest]` with: its info names
/// the endpoint's `hostname`, `network-host`, `port` and `address`
/// (`amqps://{host}:{port}/{entity}/[rest]`), whose last segment readers take as the entity.
pub(super) fn redirect(state: &ConnState, node: &str) -> definitions::Error {
    let hub = &state.hub;
    let host = hub.host_name().to_owned();
    let rest = node.get("/messages/events".len()..).unwrap_or("");
    let rest = if rest.is_empty() { "/" } else { rest };
    let address = format!(
        "amqps://{host}:{}/{}{rest}",
        state.amqp_port,
        hub.event_hub_name()
    );
    let mut info = fe2o3_amqp::types::definitions::Fields::new();
    info.insert(Symbol::from("hostname"), Value::String(host.clone()));
    info.insert(Symbol::from("network-host"), Value::String(host));
    info.insert(Symbol::from("port"), Value::Int(i32::from(state.amqp_port)));
    info.insert(Symbol::from("address"), Value::String(address));
    definitions::Error::new(
        ErrorCondition::LinkError(LinkError::Redirect),
        Some("Read telemetry from the Event Hub-compatible endpoint.".to_owned()),
        Some(info),
    )
}

/// `/{entity}/ConsumerGroups/{group}/Partitions/{n}` (the path words in any case).
fn parse_address(node: &str) -> Option<(&str, &str, &str)> {
    let mut parts = node.trim_start_matches('/').split('/');
    let (entity, cg, group, p, partition) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    (parts.next().is_none()
        && cg.eq_ignore_ascii_case("ConsumerGroups")
        && p.eq_ignore_ascii_case("Partitions"))
    .then_some((entity, group, partition))
}

/// The selector expression of the attach's source, if any.
fn selector(attach: &Attach) -> Option<String> {
    let filter = attach.source.as_ref()?.filter.as_ref()?;
    let value = filter.get(&Symbol::from(SELECTOR))?;
    let inner = match value {
        Value::Described(d) => &d.value,
        v => v,
    };
    match inner {
        Value::String(s) => Some(s.clone()),
        Value::Symbol(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// The selectors Event Hubs clients send: `amqp.annotation.{x-opt-offset |
/// x-opt-sequence-number | x-opt-enqueued-time} {> | >=} '{value}'`, with `'-1'` (the
/// beginning) and `'@latest'` (the end) for offsets.
pub(crate) fn parse_selector(expr: &str) -> Result<Start, &'static str> {
    let expr = expr.trim();
    let (field, rest) = expr
        .split_once(char::is_whitespace)
        .ok_or("expected 'field > value'")?;
    let rest = rest.trim_start();
    let (inclusive, value) = if let Some(v) = rest.strip_prefix(">=") {
        (true, v)
    } else if let Some(v) = rest.strip_prefix('>') {
        (false, v)
    } else {
        return Err("only > and >= are supported");
    };
    let value = value
        .trim()
        .strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .ok_or("the value must be quoted")?;
    let field = field
        .strip_prefix("amqp.annotation.")
        .ok_or("the field must be an amqp.annotation")?;
    match field {
        "x-opt-offset" => match value {
            "-1" => Ok(Start::Beginning),
            "@latest" => Ok(Start::Latest),
            v => v
                .parse::<u64>()
                .map(|offset| Start::Offset { offset, inclusive })
                .map_err(|_| "an offset is a non-negative integer, '-1' or '@latest'"),
        },
        "x-opt-sequence-number" => value
            .parse::<i64>()
            .map(|seq| Start::Sequence { seq, inclusive })
            .map_err(|_| "a sequence number is an integer"),
        "x-opt-enqueued-time" => value
            .parse::<i64>()
            .map(|ms| Start::Enqueued { ms, inclusive })
            .map_err(|_| "an enqueued time is milliseconds since the Unix epoch"),
        _ => Err("the field must be x-opt-offset, x-opt-sequence-number or x-opt-enqueued-time"),
    }
}

/// Sends the partition's events from the requested start, then each new one as it is
/// appended, as far as the client's credit allows, until the client detaches, the connection
/// ends, or a higher epoch takes the partition.
pub(super) async fn serve_partition(
    state: Arc<ConnState>,
    mut link: Sender,
    request: PartitionRequest,
) {
    let hub = state.hub.clone();
    let PartitionRequest {
        group,
        partition,
        start,
        epoch,
    } = request;
    let mut claim = match hub.event_receivers.claim(&group, partition, epoch) {
        Ok(c) => c,
        Err(refused) => {
            let e = match refused {
                ClaimRefused::Epoch(why) => {
                    error(ErrorCondition::LinkError(LinkError::Stolen), why)
                }
                ClaimRefused::Quota(why) => error(
                    ErrorCondition::AmqpError(AmqpError::ResourceLimitExceeded),
                    why,
                ),
            };
            let _ = link.close_with_error(e).await;
            return;
        }
    };
    let mut appended = hub.events.subscribe(partition);
    let mut next = hub.events.resolve(partition, start);
    loop {
        appended.borrow_and_update();
        let batch = hub.events.read(partition, next, EVENT_READ_BATCH);
        if batch.is_empty() {
            tokio::select! {
                r = appended.changed() => if r.is_err() { return },
                why = claim.kicked() => return stolen(link, why).await,
                _ = link.on_detach() => return,
            }
            continue;
        }
        for event in batch {
            next = event.sequence_number + 1;
            let sendable = Sendable::builder()
                .message(event_message(&event))
                .settled(true)
                .build();
            // `send` waits for credit: a slow client holds this link's batch only.
            tokio::select! {
                r = link.send(sendable) => if let Err(e) = r {
                    return tracing::debug!(error = %e, "event link ended");
                },
                why = claim.kicked() => return stolen(link, why).await,
            }
        }
    }
}

async fn stolen(link: Sender, why: String) {
    let _ = link
        .close_with_error(error(ErrorCondition::LinkError(LinkError::Stolen), why))
        .await;
}

/// The AMQP message of an event, as IoT Hub writes it (reference §4.3).
pub(super) fn event_message(e: &HubEvent) -> Message<Data> {
    let props = MessageProperties::decode(&e.properties).unwrap_or_default();
    let enqueued = Value::Timestamp(Timestamp::from_milliseconds(e.enqueued_ms));
    let mut annotations = MessageAnnotations::builder()
        .insert(
            Symbol::from("iothub-connection-device-id"),
            Value::String(e.device_id.clone()),
        )
        .insert(
            Symbol::from("iothub-connection-auth-method"),
            Value::String(e.auth_method.clone()),
        )
        .insert(
            Symbol::from("iothub-connection-auth-generation-id"),
            Value::String(e.generation_id.clone()),
        )
        .insert(Symbol::from("iothub-enqueuedtime"), enqueued.clone())
        .insert(
            Symbol::from("iothub-message-source"),
            Value::String("Telemetry".into()),
        )
        .insert(
            Symbol::from("x-opt-sequence-number"),
            Value::Long(e.sequence_number),
        )
        .insert(
            Symbol::from("x-opt-offset"),
            Value::String(e.offset.to_string()),
        )
        .insert(Symbol::from("x-opt-enqueued-time"), enqueued)
        .build();
    if let Some(m) = &e.module_id {
        annotations.0.insert(
            Symbol::from("iothub-connection-module-id").into(),
            Value::String(m.clone()),
        );
    }
    let properties = Properties {
        message_id: props.message_id.clone().map(MessageId::String),
        correlation_id: props.correlation_id.clone().map(MessageId::String),
        user_id: props.user_id.clone().map(|u| Binary::from(u.into_bytes())),
        content_type: props.content_type.clone().map(Symbol::from),
        content_encoding: props.content_encoding.clone().map(Symbol::from),
        to: props.to.clone(),
        absolute_expiry_time: props
            .expiry_time
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| Timestamp::from_milliseconds(t.timestamp_millis())),
        ..Default::default()
    };
    let mut app = ApplicationProperties::builder();
    for (k, v) in &props.custom {
        app = app.insert(k.clone(), v.clone());
    }
    Message::builder()
        .message_annotations(annotations)
        .properties(properties)
        .application_properties(app.build())
        .data(Binary::from(e.body.to_vec()))
        .build()
}

fn not_found(description: String) -> definitions::Error {
    error(ErrorCondition::AmqpError(AmqpError::NotFound), description)
}

fn error(condition: ErrorCondition, description: String) -> definitions::Error {
    definitions::Error::new(condition, Some(description), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_of_azure_eventhub() {
        let p = |s| parse_selector(s);
        assert_eq!(
            p("amqp.annotation.x-opt-offset > '-1'"),
            Ok(Start::Beginning)
        );
        assert_eq!(
            p("amqp.annotation.x-opt-offset > '@latest'"),
            Ok(Start::Latest)
        );
        assert_eq!(
            p("amqp.annotation.x-opt-offset >= '512'"),
            Ok(Start::Offset {
                offset: 512,
                inclusive: true
            })
        );
        assert_eq!(
            p("amqp.annotation.x-opt-sequence-number > '7'"),
            Ok(Start::Sequence {
                seq: 7,
                inclusive: false
            })
        );
        assert_eq!(
            p("amqp.annotation.x-opt-enqueued-time > '1767225600000'"),
            Ok(Start::Enqueued {
                ms: 1_767_225_600_000,
                inclusive: false
            })
        );
        assert!(p("amqp.annotation.x-opt-offset < '1'").is_err());
        assert!(p("amqp.annotation.x-opt-offset > 1").is_err());
        assert!(p("amqp.annotation.x-other > '1'").is_err());
        assert!(p("").is_err());
    }

    #[test]
    fn partition_addresses() {
        assert_eq!(
            parse_address("/myhub/ConsumerGroups/$Default/Partitions/3"),
            Some(("myhub", "$Default", "3"))
        );
        assert_eq!(
            parse_address("/myhub/consumergroups/cg/partitions/0"),
            Some(("myhub", "cg", "0"))
        );
        assert_eq!(parse_address("/myhub/ConsumerGroups/$Default"), None);
        assert_eq!(parse_address("/messages/devicebound"), None);
    }
}
