//! The `/messages/serviceBound/feedback` node: waiting feedback records go out in batches, one
//! AMQP message each (a JSON array, the hub's format), sent unsettled. An accepted batch is
//! forgotten; released or modified, or a link that ends first, sends it again later; rejected
//! drops it (the receiver says it cannot use it, as a dead letter).

use super::connection::ConnState;
use crate::hub::Hub;
use crate::hub::feedback_store::Batch;
use fe2o3_amqp::link::Sender;
use fe2o3_amqp::link::delivery::Sendable;
use fe2o3_amqp::types::messaging::{Message, MessageAnnotations, MessageId, Outcome, Properties};
use fe2o3_amqp::types::primitives::{Binary, Symbol, Timestamp, Value};
use std::sync::Arc;

/// The content type of a feedback batch.
pub(super) const CONTENT_TYPE: &str = "application/vnd.microsoft.iothub.feedback.json";

/// Puts a batch back if the send is abandoned (the link or the connection ended).
struct InFlight {
    hub: Arc<Hub>,
    batch: Option<Batch>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(b) = self.batch.take() {
            self.hub.feedback_returned(b);
        }
    }
}

/// Sends batches until the link or the connection ends.
pub(super) async fn serve_feedback(state: Arc<ConnState>, mut link: Sender) {
    let hub = state.hub.clone();
    let mut available = hub.feedback.subscribe();
    loop {
        available.borrow_and_update();
        let Some(batch) = hub.take_feedback() else {
            if available.changed().await.is_err() {
                return;
            }
            continue;
        };
        let mut in_flight = InFlight {
            hub: hub.clone(),
            batch: Some(batch),
        };
        let message = batch_message(&hub, in_flight.batch.as_deref().unwrap_or_default());
        let sendable = Sendable::builder().message(message).settled(false).build();
        match link.send(sendable).await {
            Ok(Outcome::Accepted(_) | Outcome::Rejected(_)) => {
                if let Some(b) = in_flight.batch.take() {
                    let seq = hub.feedback_accepted(&b);
                    if let Err(e) = hub.wait_durable(seq).await {
                        tracing::warn!(error = %e.message, "feedback settlement not stored yet");
                    }
                }
            }
            Ok(_) => drop(in_flight),
            Err(e) => {
                drop(in_flight);
                return tracing::debug!(error = %e, "feedback link ended");
            }
        }
    }
}

fn batch_message(
    hub: &Hub,
    batch: &[(u64, crate::hub::feedback_store::FeedbackRecord)],
) -> Message<fe2o3_amqp::types::messaging::Data> {
    let records: Vec<_> = batch.iter().map(|(_, r)| r).collect();
    let body = serde_json::to_vec(&records).unwrap_or_default();
    Message::builder()
        .properties(Properties {
            message_id: Some(MessageId::String(uuid::Uuid::new_v4().to_string())),
            user_id: Some(Binary::from(hub.host_name().as_bytes().to_vec())),
            content_type: Some(Symbol::from(CONTENT_TYPE)),
            ..Default::default()
        })
        .message_annotations(
            MessageAnnotations::builder()
                .insert(
                    "iothub-enqueuedtime",
                    Value::Timestamp(Timestamp::from_milliseconds(hub.clock.now_ms())),
                )
                .build(),
        )
        .data(Binary::from(body))
        .build()
}
