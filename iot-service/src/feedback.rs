//! Cloud-to-device feedback: [`ServiceClient::feedback`] reads the hub's
//! `/messages/serviceBound/feedback` node as a stream of [`FeedbackBatch`]es.

use crate::amqp::Incoming;
use crate::{Error, ErrorKind, Result, ServiceClient};
use fe2o3_amqp::types::messaging::Body;
use fe2o3_amqp::types::primitives::Value;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;

const FEEDBACK_NODE: &str = "/messages/serviceBound/feedback";
/// Batches received but not yet taken from the stream; also the link credit, so at most this
/// many more wait unsettled at the hub's side.
pub(crate) const FEEDBACK_BUFFER: usize = 16;

/// What happened to a message, as the hub reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FeedbackStatus {
    /// The device completed the message.
    Success,
    /// The message expired before the device completed it.
    Expired,
    /// The device abandoned it more often than the hub's maximum delivery count.
    DeliveryCountExceeded,
    /// The device rejected it.
    Rejected,
    /// It was purged from the device's queue.
    Purged,
    /// A status this version does not know, as sent.
    Other(String),
}

impl FeedbackStatus {
    fn parse(s: &str) -> Self {
        match s {
            "Success" => Self::Success,
            "Expired" => Self::Expired,
            "DeliveryCountExceeded" => Self::DeliveryCountExceeded,
            "Rejected" => Self::Rejected,
            "Purged" => Self::Purged,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// One message's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FeedbackRecord {
    /// The [`C2dMessage::message_id`](crate::C2dMessage::message_id) of the message.
    pub original_message_id: String,
    /// The outcome.
    pub status: FeedbackStatus,
    /// The hub's text for it.
    pub description: String,
    /// The device.
    pub device_id: String,
    /// The device identity's generation id (tells a re-created device apart).
    pub device_generation_id: String,
    /// When the outcome happened, as the hub wrote it (ISO 8601 UTC).
    pub enqueued_time_utc: String,
    /// The lock token, when the hub sends one.
    pub lock_token: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireRecord {
    #[serde(default)]
    original_message_id: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    device_generation_id: String,
    #[serde(default)]
    device_id: String,
    #[serde(default)]
    enqueued_time_utc: String,
    #[serde(default)]
    status_code: String,
    #[serde(default)]
    lock_token: Option<String>,
}

impl From<WireRecord> for FeedbackRecord {
    fn from(w: WireRecord) -> Self {
        Self {
            original_message_id: w.original_message_id,
            status: FeedbackStatus::parse(&w.status_code),
            description: w.description,
            device_id: w.device_id,
            device_generation_id: w.device_generation_id,
            enqueued_time_utc: w.enqueued_time_utc,
            lock_token: w.lock_token,
        }
    }
}

/// One batch of feedback records (one AMQP message of the hub). The hub sends it again until
/// it is completed: call [`FeedbackBatch::complete`] once the records are handled
/// (at-least-once), or [`FeedbackBatch::abandon`] to have it sent again. Dropping it without
/// either leaves it unsettled until the stream (and its link) ends, when the hub sends it again.
#[derive(Debug)]
pub struct FeedbackBatch {
    records: Vec<FeedbackRecord>,
    incoming: Incoming,
    timeout: Duration,
}

impl FeedbackBatch {
    /// The records.
    pub fn records(&self) -> &[FeedbackRecord] {
        &self.records
    }

    /// Tells the hub the batch is handled (disposition `accepted`): it is not sent again.
    ///
    /// # Cancel safety
    /// Cancel-safe in effect: if dropped before the settlement is sent, the batch is simply
    /// delivered again later.
    ///
    /// # Errors
    /// [`ErrorKind::Connection`] when the link that received it is gone (the hub sends the
    /// batch again), [`ErrorKind::Timeout`].
    pub async fn complete(self) -> Result<()> {
        self.incoming.settle(true, self.timeout).await
    }

    /// Gives the batch back (disposition `released`): the hub sends it again.
    ///
    /// # Cancel safety
    /// As [`FeedbackBatch::complete`].
    ///
    /// # Errors
    /// As [`FeedbackBatch::complete`].
    pub async fn abandon(self) -> Result<()> {
        self.incoming.settle(false, self.timeout).await
    }
}

/// The stream of feedback batches from [`ServiceClient::feedback`]. At most 16 batches wait
/// in it; while it is full the client takes no more from the hub, which keeps them. After a
/// lost connection the client reconnects and the hub sends unsettled batches again.
#[derive(Debug)]
pub struct FeedbackStream {
    rx: mpsc::Receiver<Incoming>,
    timeout: Duration,
}

impl FeedbackStream {
    /// The next batch. A batch whose body is not the hub's JSON is completed (it could never
    /// be read) and reported as [`ErrorKind::Serialization`].
    ///
    /// # Cancel safety
    /// Cancel-safe: a batch not yet returned stays in the stream.
    pub async fn next(&mut self) -> Option<Result<FeedbackBatch>> {
        std::future::poll_fn(|cx| self.poll(cx)).await
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<FeedbackBatch>>> {
        let Some(incoming) = futures_core::ready!(self.rx.poll_recv(cx)) else {
            return Poll::Ready(None);
        };
        Poll::Ready(Some(self.batch(incoming)))
    }

    fn batch(&self, incoming: Incoming) -> Result<FeedbackBatch> {
        let body: Vec<u8> = match &incoming.message.body {
            Body::Data(sections) => sections.iter().flat_map(|d| d.0.iter().copied()).collect(),
            Body::Value(v) => match &v.0 {
                Value::Binary(b) => b.to_vec(),
                Value::String(s) => s.clone().into_bytes(),
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        match serde_json::from_slice::<Vec<WireRecord>>(&body) {
            Ok(records) => Ok(FeedbackBatch {
                records: records.into_iter().map(FeedbackRecord::from).collect(),
                incoming,
                timeout: self.timeout,
            }),
            Err(e) => {
                let timeout = self.timeout;
                tokio::spawn(async move {
                    let _ = incoming.settle(true, timeout).await;
                });
                Err(Error::new(
                    ErrorKind::Serialization,
                    "a feedback batch was not a JSON array of records",
                )
                .with_source(e))
            }
        }
    }
}

impl futures_core::Stream for FeedbackStream {
    type Item = Result<FeedbackBatch>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll(cx)
    }
}

impl ServiceClient {
    /// A stream of cloud-to-device feedback batches (for messages sent with
    /// [`C2dMessage::feedback`](crate::C2dMessage::feedback)). Each batch must be completed
    /// once handled. Several streams (in this or other processes) share the hub's feedback:
    /// each batch goes to one of them.
    ///
    /// ```no_run
    /// # async fn demo(svc: iot_service::ServiceClient) -> iot_service::Result<()> {
    /// let mut feedback = svc.feedback().await?;
    /// while let Some(batch) = feedback.next().await {
    ///     let batch = batch?;
    ///     for r in batch.records() {
    ///         println!("{} -> {:?}", r.original_message_id, r.status);
    ///     }
    ///     batch.complete().await?;
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    /// Cancel-safe: if dropped before it returns, no stream is made (a receiver may have been
    /// attached; it is detached when the connection task sees nobody reading it).
    ///
    /// # Errors
    /// [`ErrorKind::Timeout`] or [`ErrorKind::Connection`] when the connection task cannot
    /// take the request. A refused token or an unreachable hub is not an error here: the
    /// client keeps reconnecting (with backoff, up to 30 s apart) while the stream exists.
    pub async fn feedback(&self) -> Result<FeedbackStream> {
        let amqp = self.amqp()?;
        let (tx, rx) = mpsc::channel(FEEDBACK_BUFFER);
        amqp.receive(FEEDBACK_NODE, FEEDBACK_BUFFER as u32, tx)
            .await?;
        Ok(FeedbackStream {
            rx,
            timeout: self.operation_timeout(),
        })
    }
}
