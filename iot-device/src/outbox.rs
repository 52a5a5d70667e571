//! Everything the client publishes or subscribes goes through here, one request at a time, so
//! that rumqttc's `Outgoing::Publish(pkid)` / `Outgoing::Subscribe(pkid)` events — which come
//! in request order — can be matched to their waiters, and PUBACK / SUBACK resolve them.

use crate::{Error, ErrorKind, Result};
use bytes::Bytes;
use rumqttc::{AsyncClient, QoS, SubscribeFilter, SubscribeReasonCode};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use tokio::sync::oneshot;

type Waiter<T> = Option<oneshot::Sender<T>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) struct Outbox {
    client: AsyncClient,
    send_lock: tokio::sync::Mutex<()>,
    publishes: Mutex<VecDeque<Waiter<()>>>,
    pubacks: Mutex<HashMap<u16, Waiter<()>>>,
    subscribes: Mutex<VecDeque<Waiter<bool>>>,
    subacks: Mutex<HashMap<u16, Waiter<bool>>>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").finish_non_exhaustive()
    }
}

fn closed(e: rumqttc::ClientError) -> Error {
    Error::new(ErrorKind::Closed, "the client is closed").with_source(e)
}

impl Outbox {
    pub(crate) fn new(client: AsyncClient) -> Self {
        Self {
            client,
            send_lock: tokio::sync::Mutex::new(()),
            publishes: Mutex::default(),
            pubacks: Mutex::default(),
            subscribes: Mutex::default(),
            subacks: Mutex::default(),
        }
    }

    /// Queues a publish. With `ack`, the receiver resolves when the hub acknowledged it
    /// (QoS 1) or when it was written (QoS 0).
    pub(crate) async fn publish(
        &self,
        topic: String,
        qos: QoS,
        payload: Bytes,
        ack: bool,
    ) -> Result<Option<oneshot::Receiver<()>>> {
        let _turn = self.send_lock.lock().await;
        let (tx, rx) = if ack {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        lock(&self.publishes).push_back(tx);
        if let Err(e) = self.client.publish_bytes(topic, qos, false, payload).await {
            lock(&self.publishes).pop_back();
            return Err(closed(e));
        }
        Ok(rx)
    }

    /// Queues a subscription; the receiver resolves with `true` when every filter was granted.
    pub(crate) async fn subscribe(
        &self,
        filters: Vec<SubscribeFilter>,
    ) -> Result<oneshot::Receiver<bool>> {
        let _turn = self.send_lock.lock().await;
        let (tx, rx) = oneshot::channel();
        lock(&self.subscribes).push_back(Some(tx));
        if let Err(e) = self.client.subscribe_many(filters).await {
            lock(&self.subscribes).pop_back();
            return Err(closed(e));
        }
        Ok(rx)
    }

    /// Asks the event loop to send DISCONNECT.
    pub(crate) fn disconnect(&self) {
        let _ = self.client.try_disconnect();
    }

    pub(crate) fn on_outgoing_publish(&self, pkid: u16) {
        // A pkid we already track is a retransmission after a reconnect, not a new request.
        if pkid != 0 && lock(&self.pubacks).contains_key(&pkid) {
            return;
        }
        let Some(waiter) = lock(&self.publishes).pop_front() else {
            return;
        };
        if pkid == 0 {
            if let Some(tx) = waiter {
                let _ = tx.send(());
            }
        } else {
            lock(&self.pubacks).insert(pkid, waiter);
        }
    }

    pub(crate) fn on_puback(&self, pkid: u16) {
        if let Some(Some(tx)) = lock(&self.pubacks).remove(&pkid) {
            let _ = tx.send(());
        }
    }

    pub(crate) fn on_outgoing_subscribe(&self, pkid: u16) {
        if lock(&self.subacks).contains_key(&pkid) {
            return;
        }
        if let Some(waiter) = lock(&self.subscribes).pop_front() {
            lock(&self.subacks).insert(pkid, waiter);
        }
    }

    pub(crate) fn on_suback(&self, pkid: u16, codes: &[SubscribeReasonCode]) {
        if let Some(Some(tx)) = lock(&self.subacks).remove(&pkid) {
            let _ = tx.send(
                codes
                    .iter()
                    .all(|c| !matches!(c, SubscribeReasonCode::Failure)),
            );
        }
    }

    /// The hub kept no session: nothing in flight will be acknowledged. Waiters are dropped,
    /// so their callers see a connection error instead of waiting for the timeout.
    pub(crate) fn on_session_lost(&self) {
        lock(&self.pubacks).clear();
        lock(&self.subacks).clear();
    }
}
