//! The device session as a pure state machine: no tokio, no sockets, time passed in.
//!
//! Events go in (`on_connack`, `on_publish`, `on_puback`, `on_connection_lost`, a timer, and
//! the application's `submit_*`/`cancel`); packets to send come out of
//! [`DeviceSession::poll_transmit`] and everything else out of [`DeviceSession::poll_action`].
//! The pump in `driver.rs` only moves these between rumqttc and the session.
//!
//! # Correlation without packet ids from rumqttc
//!
//! rumqttc 0.25 does not tell the caller which packet id a request got. Every operation here
//! has its own [`OpId`], and the pump is the only writer to rumqttc's request channel, so the
//! `Outgoing::Publish(pkid)` / `Outgoing::Subscribe(pkid)` events come in exactly the order the
//! session handed the requests over. The session keeps that order in a FIFO of `OpId`s that
//! only rumqttc's events pop: a cancelled call removes its operation (its `OpId` stays in the
//! FIFO and, when its packet id arrives, maps to nothing), so cancellation can never shift
//! which acknowledgement resolves which call. After a connection loss the pump empties
//! rumqttc's replay queue and the session requeues every unacknowledged operation itself, so
//! requests rumqttc would drop on a new session cannot desynchronise the FIFO either.

mod desired;

#[cfg(test)]
mod tests;

use crate::status::{CloseReason, ConnectionStatus, DisconnectReason};
use crate::twin::DesiredUpdate;
use crate::{C2dMessage, DeviceClientOptions};
use bytes::Bytes;
use desired::{Desired, DesiredNeed};
use iot_common::topic::{self, Inbound};
use iot_common::{Backoff, MethodRequest};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Subscription bits.
pub(crate) mod sub {
    pub(crate) const TWIN: u8 = 1;
    pub(crate) const METHODS: u8 = 2;
    pub(crate) const DESIRED: u8 = 4;
    pub(crate) const MESSAGES: u8 = 8;
}

/// What the session does when the offline telemetry queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum QueueFullPolicy {
    /// Refuse the new message with [`ErrorKind::QueueFull`](crate::ErrorKind::QueueFull).
    #[default]
    Reject,
    /// Drop the oldest queued message (its caller gets `QueueFull`) and take the new one;
    /// [`ClientStats::telemetry_dropped`](crate::ClientStats::telemetry_dropped) counts them.
    DropOldest,
}

/// Identifies one operation of the application (or of the session itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct OpId(pub(crate) u64);

/// How an operation ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// PUBACK (telemetry, method responses).
    Acked,
    /// SUBACK; `false` when a filter was refused.
    Subscribed(bool),
    /// A twin response: status, `$version`, body.
    Twin(u16, Option<u64>, Bytes),
    /// Dropped from a full queue to make room (drop-oldest policy).
    Dropped,
    /// The client stopped.
    Closed,
}

/// A packet for the pump to hand to rumqttc.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Transmit {
    /// A QoS 1 publish.
    Publish { topic: String, payload: Bytes },
    /// A subscription to these filters, all QoS 1.
    Subscribe { filters: Vec<String> },
    /// PUBACK for an incoming publish (manual acknowledgement).
    Ack { pkid: u16 },
}

/// Something for the pump to do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    /// Resolve an operation's waiter.
    Complete(OpId, Outcome),
    /// A new connection status.
    Status(ConnectionStatus),
    /// Wait this long, then connect again.
    Reconnect(Duration),
    /// Sign a fresh token and reconnect with it now.
    RenewToken,
    /// Run the method handlers on this request.
    Method(MethodRequest),
    /// A desired update or C2D message is ready for the application.
    Wake,
    /// Stop for good.
    Close(CloseReason),
}

/// Why a connection (attempt) failed, as far as the session cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Loss {
    /// Network, keep-alive, CONNACK 3, …: retry with backoff.
    Transient,
    /// CONNACK 4/5: the credentials were refused.
    Refused,
    /// CONNACK 1/2: retrying cannot help.
    Permanent,
    /// The hub's certificate was refused: retrying cannot help until the trust changes.
    Certificate,
}

/// Error of [`DeviceSession::submit_telemetry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueFull;

#[derive(Debug)]
enum Kind {
    Telemetry,
    /// A twin request: completes on the response with this `$rid`, not on PUBACK.
    Twin {
        internal: bool,
    },
    MethodResponse,
    Subscribe(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Queued,
    /// Handed to rumqttc; its packet id is not known yet.
    Handed,
    /// Sent with this packet id, waiting for PUBACK / SUBACK.
    Inflight(u16),
    /// PUBACKed twin request waiting for its response.
    AwaitingResponse,
}

#[derive(Debug)]
struct Op {
    kind: Kind,
    transmit: Transmit,
    state: State,
    bytes: usize,
}

/// Bounds and policies of a session.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) backoff: Backoff,
    pub(crate) max_reconnect_attempts: Option<u32>,
    pub(crate) retry_initial_connect: bool,
    pub(crate) queue_messages: usize,
    pub(crate) queue_bytes: usize,
    pub(crate) queue_policy: QueueFullPolicy,
    pub(crate) desired_capacity: usize,
    pub(crate) c2d_capacity: usize,
    pub(crate) renewable: bool,
    /// How long a resynchronising twin GET may go unanswered before it is sent again.
    pub(crate) resync_timeout: Duration,
}

impl Limits {
    pub(crate) fn from_options(o: &DeviceClientOptions, renewable: bool) -> Self {
        Self {
            backoff: o.backoff,
            max_reconnect_attempts: o.max_reconnect_attempts,
            retry_initial_connect: o.retry_initial_connect,
            queue_messages: o.telemetry_queue_messages,
            queue_bytes: o.telemetry_queue_bytes,
            queue_policy: o.queue_full_policy,
            desired_capacity: o.desired_capacity,
            c2d_capacity: o.c2d_capacity,
            renewable,
            resync_timeout: o.operation_timeout,
        }
    }
}

/// The device's MQTT session with the hub; see the module docs.
#[derive(Debug)]
pub(crate) struct DeviceSession {
    limits: Limits,
    device_id: String,
    module_id: Option<String>,
    next_op: u64,
    ops: BTreeMap<OpId, Op>,
    /// Send order; ids of cancelled operations are skipped lazily.
    queue: VecDeque<OpId>,
    queued_telemetry: usize,
    queued_bytes: usize,
    /// Requests handed to rumqttc whose `Outgoing` event has not come yet, in order.
    handed_pub: VecDeque<OpId>,
    handed_sub: VecDeque<OpId>,
    by_pkid: HashMap<u16, OpId>,
    by_rid: HashMap<u64, OpId>,
    acks: VecDeque<u16>,
    actions: VecDeque<Action>,
    wanted: u8,
    /// Subscriptions asked for on this connection (or kept by the hub's session).
    subscribed: u8,
    connected: bool,
    connected_once: bool,
    closed: bool,
    attempt: u32,
    resigned_after_refusal: bool,
    renew_at: Option<Instant>,
    /// The outstanding resync GET and when it was first seen outstanding (stamped by the next
    /// `handle_timeout`, since most events carry no time).
    resync_pending: Option<(OpId, Option<Instant>)>,
    desired: Desired,
    /// C2D messages with their packet id and the connection they came on (a packet id
    /// means nothing on a later connection).
    c2d: VecDeque<(u16, u64, C2dMessage)>,
    /// Counts CONNACKs.
    epoch: u64,
    dropped: u64,
}

impl DeviceSession {
    pub(crate) fn new(limits: Limits, device_id: String, module_id: Option<String>) -> Self {
        let desired = Desired::new(limits.desired_capacity);
        Self {
            limits,
            device_id,
            module_id,
            next_op: 1,
            ops: BTreeMap::new(),
            queue: VecDeque::new(),
            queued_telemetry: 0,
            queued_bytes: 0,
            handed_pub: VecDeque::new(),
            handed_sub: VecDeque::new(),
            by_pkid: HashMap::new(),
            by_rid: HashMap::new(),
            acks: VecDeque::new(),
            actions: VecDeque::new(),
            wanted: sub::TWIN,
            subscribed: 0,
            connected: false,
            connected_once: false,
            closed: false,
            attempt: 0,
            resigned_after_refusal: false,
            renew_at: None,
            resync_pending: None,
            desired,
            c2d: VecDeque::new(),
            epoch: 0,
            dropped: 0,
        }
    }

    /// Whether the session stopped for good.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    /// Telemetry messages dropped by the drop-oldest policy so far.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Telemetry messages and bytes waiting to be sent.
    pub(crate) fn queued(&self) -> (usize, usize) {
        (self.queued_telemetry, self.queued_bytes)
    }

    /// Operations not yet completed (queued, sent or waiting for an answer).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn pending_ops(&self) -> usize {
        self.ops.len()
    }

    /// Desired updates waiting for the application and patches held for a resync.
    pub(crate) fn desired_backlog(&self) -> (usize, usize) {
        (self.desired.queued(), self.desired.held())
    }

    fn add(&mut self, kind: Kind, transmit: Transmit, bytes: usize) -> OpId {
        let id = OpId(self.next_op);
        self.next_op += 1;
        self.ops.insert(
            id,
            Op {
                kind,
                transmit,
                state: State::Queued,
                bytes,
            },
        );
        self.queue.push_back(id);
        id
    }

    /// Queues a telemetry message, subject to the offline-queue bounds.
    pub(crate) fn submit_telemetry(
        &mut self,
        topic: String,
        payload: Bytes,
    ) -> Result<OpId, QueueFull> {
        let bytes = payload.len() + topic.len();
        while self.queued_telemetry >= self.limits.queue_messages
            || (self.queued_telemetry > 0 && self.queued_bytes + bytes > self.limits.queue_bytes)
        {
            match self.limits.queue_policy {
                QueueFullPolicy::Reject => return Err(QueueFull),
                QueueFullPolicy::DropOldest => {
                    let oldest = self.queue.iter().copied().find(|id| {
                        self.ops.get(id).is_some_and(|o| {
                            matches!(o.kind, Kind::Telemetry) && o.state == State::Queued
                        })
                    });
                    let Some(oldest) = oldest else {
                        return Err(QueueFull);
                    };
                    self.remove(oldest);
                    self.dropped += 1;
                    self.actions
                        .push_back(Action::Complete(oldest, Outcome::Dropped));
                }
            }
        }
        if bytes > self.limits.queue_bytes {
            return Err(QueueFull);
        }
        self.queued_telemetry += 1;
        self.queued_bytes += bytes;
        Ok(self.add(Kind::Telemetry, Transmit::Publish { topic, payload }, bytes))
    }

    /// Queues a twin request (`patch: None` is a GET); it completes with the hub's response.
    pub(crate) fn submit_twin(&mut self, patch: Option<Bytes>) -> OpId {
        self.twin(patch, false)
    }

    fn twin(&mut self, patch: Option<Bytes>, internal: bool) -> OpId {
        let rid = self.next_op;
        let (topic, payload) = match patch {
            Some(p) => (topic::twin_patch_reported_topic(&rid.to_string()), p),
            None => (
                topic::twin_get_topic(&rid.to_string()),
                Bytes::from_static(b" "),
            ),
        };
        let id = self.add(
            Kind::Twin { internal },
            Transmit::Publish { topic, payload },
            0,
        );
        self.by_rid.insert(rid, id);
        id
    }

    /// Queues a method response.
    pub(crate) fn submit_method_response(
        &mut self,
        rid: &str,
        status: i32,
        payload: Bytes,
    ) -> OpId {
        let topic = topic::method_response_topic(status, rid);
        self.add(
            Kind::MethodResponse,
            Transmit::Publish { topic, payload },
            0,
        )
    }

    /// Wants the subscriptions of `bits`; `Some` when a SUBSCRIBE is needed (it completes on
    /// the SUBACK), `None` when they are already wanted.
    pub(crate) fn want(&mut self, bits: u8) -> Option<OpId> {
        let new = bits & !self.wanted;
        if new == 0 {
            return None;
        }
        self.wanted |= new;
        if new & sub::DESIRED != 0 {
            self.desired.activate();
        }
        let id = self.subscribe(new);
        if new & sub::DESIRED != 0 {
            self.resync();
        }
        Some(id)
    }

    /// Wants no longer (a subscription that failed).
    pub(crate) fn unwant(&mut self, bits: u8) {
        self.wanted &= !bits;
    }

    fn subscribe(&mut self, bits: u8) -> OpId {
        let filters = self.filters(bits);
        self.subscribed |= bits;
        self.add(Kind::Subscribe(bits), Transmit::Subscribe { filters }, 0)
    }

    fn resync(&mut self) {
        self.desired.resync_started();
        self.resync_get();
    }

    /// Sends the twin GET that resynchronises the desired state (one at a time).
    fn resync_get(&mut self) {
        if let Some((old, _)) = self.resync_pending.take() {
            self.cancel(old);
        }
        let id = self.twin(None, true);
        self.resync_pending = Some((id, None));
    }

    fn filters(&self, bits: u8) -> Vec<String> {
        let mut f = Vec::new();
        if bits & sub::TWIN != 0 {
            f.push(topic::TWIN_RESPONSE_FILTER.to_owned());
        }
        if bits & sub::METHODS != 0 {
            f.push(topic::METHODS_FILTER.to_owned());
        }
        if bits & sub::DESIRED != 0 {
            f.push(topic::TWIN_DESIRED_FILTER.to_owned());
        }
        if bits & sub::MESSAGES != 0 {
            f.push(match &self.module_id {
                Some(m) => topic::module_inputs_filter(&self.device_id, m),
                None => topic::c2d_filter(&self.device_id),
            });
        }
        f
    }

    fn remove(&mut self, id: OpId) -> Option<Op> {
        let op = self.ops.remove(&id)?;
        if matches!(op.kind, Kind::Telemetry) && op.state == State::Queued {
            self.queued_telemetry -= 1;
            self.queued_bytes -= op.bytes;
        }
        if let State::Inflight(pkid) = op.state {
            self.by_pkid.remove(&pkid);
        }
        Some(op)
    }

    /// The caller gave up (timeout, or its future was dropped): forget exactly this operation.
    /// A queued message is never sent; a sent one's acknowledgement resolves nobody.
    pub(crate) fn cancel(&mut self, id: OpId) {
        if let Some(op) = self.remove(id)
            && matches!(op.kind, Kind::Twin { .. })
        {
            self.by_rid.retain(|_, v| *v != id);
        }
    }

    /// The next packet to hand to rumqttc, if any may go now. Call [`Self::handed`] after
    /// rumqttc took it (or nothing, if it could not: it stays first in line).
    pub(crate) fn poll_transmit(&mut self) -> Option<Transmit> {
        if let Some(&pkid) = self.acks.front() {
            return Some(Transmit::Ack { pkid });
        }
        if !self.connected {
            return None;
        }
        while let Some(&id) = self.queue.front() {
            match self.ops.get(&id) {
                Some(op) if op.state == State::Queued => return Some(op.transmit.clone()),
                _ => {
                    self.queue.pop_front();
                }
            }
        }
        None
    }

    /// rumqttc accepted the packet [`Self::poll_transmit`] returned.
    pub(crate) fn handed(&mut self) {
        if self.acks.pop_front().is_some() {
            return;
        }
        let Some(id) = self.queue.pop_front() else {
            return;
        };
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        op.state = State::Handed;
        if matches!(op.kind, Kind::Telemetry) {
            self.queued_telemetry -= 1;
            self.queued_bytes -= op.bytes;
        }
        match op.kind {
            Kind::Subscribe(_) => self.handed_sub.push_back(id),
            _ => self.handed_pub.push_back(id),
        }
    }

    /// rumqttc wrote a PUBLISH with this packet id (the oldest handed publish).
    pub(crate) fn on_outgoing_publish(&mut self, pkid: u16) {
        let Some(id) = self.handed_pub.pop_front() else {
            return;
        };
        if let Some(op) = self.ops.get_mut(&id) {
            op.state = State::Inflight(pkid);
            self.by_pkid.insert(pkid, id);
        }
    }

    /// rumqttc wrote a SUBSCRIBE with this packet id.
    pub(crate) fn on_outgoing_subscribe(&mut self, pkid: u16) {
        let Some(id) = self.handed_sub.pop_front() else {
            return;
        };
        if let Some(op) = self.ops.get_mut(&id) {
            op.state = State::Inflight(pkid);
            self.by_pkid.insert(pkid, id);
        }
    }

    pub(crate) fn on_puback(&mut self, pkid: u16) {
        let Some(id) = self.by_pkid.remove(&pkid) else {
            return;
        };
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        if matches!(op.kind, Kind::Twin { .. }) {
            op.state = State::AwaitingResponse;
            return;
        }
        self.ops.remove(&id);
        self.actions.push_back(Action::Complete(id, Outcome::Acked));
    }

    pub(crate) fn on_suback(&mut self, pkid: u16, granted: bool) {
        let Some(id) = self.by_pkid.remove(&pkid) else {
            return;
        };
        if let Some(op) = self.ops.remove(&id) {
            if let (Kind::Subscribe(bits), false) = (&op.kind, granted) {
                self.subscribed &= !bits;
            }
            self.actions
                .push_back(Action::Complete(id, Outcome::Subscribed(granted)));
        }
    }

    /// A PUBLISH from the hub. `pkid` is its packet id (QoS 1), to acknowledge.
    pub(crate) fn on_publish(&mut self, topic: &str, payload: Bytes, pkid: u16) {
        let parsed = Inbound::parse(topic);
        let c2d = matches!(
            parsed,
            Ok(Inbound::C2d { .. } | Inbound::ModuleInput { .. })
        );
        // C2D is acknowledged only when the application takes it, so the hub keeps (and
        // redelivers) what this client could not hold.
        if !c2d && pkid != 0 {
            self.acks.push_back(pkid);
        }
        match parsed {
            Ok(Inbound::MethodRequest { name, rid }) => {
                let request = MethodRequest::new(name, rid, payload.to_vec());
                self.actions.push_back(Action::Method(request));
            }
            Ok(Inbound::TwinResponse {
                status,
                rid,
                version,
            }) => {
                let Some(id) = rid.parse::<u64>().ok().and_then(|r| self.by_rid.remove(&r)) else {
                    return;
                };
                let Some(op) = self.remove(id) else {
                    return;
                };
                if let Kind::Twin { internal: true } = op.kind {
                    self.on_resync_answer(status, &payload);
                } else {
                    self.actions.push_back(Action::Complete(
                        id,
                        Outcome::Twin(status, version, payload),
                    ));
                }
            }
            Ok(Inbound::DesiredPatch { version }) => {
                let Ok(body) = serde_json::from_slice::<Map<String, Value>>(&payload) else {
                    return;
                };
                let Some(v) = version.or_else(|| body.get("$version").and_then(Value::as_u64))
                else {
                    return;
                };
                self.on_desired_patch(v, body);
            }
            Ok(Inbound::C2d { properties }) => self.on_c2d(pkid, payload, properties, None),
            Ok(Inbound::ModuleInput { input, properties }) => {
                let input = Some(input.to_owned());
                self.on_c2d(pkid, payload, properties, input)
            }
            _ => {}
        }
    }

    fn on_c2d(
        &mut self,
        pkid: u16,
        body: Bytes,
        properties: iot_common::MessageProperties,
        input: Option<String>,
    ) {
        if self.c2d.len() >= self.limits.c2d_capacity {
            // Not acknowledged: the hub redelivers it on a later connection.
            return;
        }
        self.c2d.push_back((
            pkid,
            self.epoch,
            C2dMessage {
                body,
                properties,
                input,
            },
        ));
        self.actions.push_back(Action::Wake);
    }

    /// The application takes the next C2D message; only now is it acknowledged.
    pub(crate) fn take_c2d(&mut self) -> Option<C2dMessage> {
        let (pkid, epoch, m) = self.c2d.pop_front()?;
        if pkid != 0 && self.connected && epoch == self.epoch {
            self.acks.push_back(pkid);
        }
        Some(m)
    }

    /// C2D messages waiting for the application.
    pub(crate) fn c2d_backlog(&self) -> usize {
        self.c2d.len()
    }

    fn on_desired_patch(&mut self, version: u64, body: Map<String, Value>) {
        if self.wanted & sub::DESIRED == 0 {
            return;
        }
        if self.desired.on_patch(version, body) == DesiredNeed::Resync {
            self.resync_get();
        }
        self.actions.push_back(Action::Wake);
    }

    fn on_resync_answer(&mut self, status: u16, payload: &[u8]) {
        self.resync_pending = None;
        if status != 200 {
            // Asked again after the resync timeout; patches are held until then.
            self.resync_get();
            return;
        }
        let Ok(twin) = serde_json::from_slice::<iot_common::TwinProperties>(payload) else {
            return;
        };
        let version = twin.desired.version.unwrap_or(0);
        if self.desired.on_full(version, twin.desired.properties) == DesiredNeed::Resync {
            self.resync_get();
        }
        self.actions.push_back(Action::Wake);
    }

    /// The application takes the next desired update.
    pub(crate) fn take_desired(&mut self) -> Option<DesiredUpdate> {
        self.desired.take()
    }

    /// CONNACK accepted.
    pub(crate) fn on_connack(&mut self, session_present: bool, now: Instant) {
        let _ = now;
        self.epoch += 1;
        self.connected = true;
        self.connected_once = true;
        self.attempt = 0;
        self.resigned_after_refusal = false;
        self.actions
            .push_back(Action::Status(ConnectionStatus::Connected));
        if !session_present {
            // The hub forgot the subscriptions: ask again, before anything queued meanwhile.
            self.subscribed = 0;
            let id = self.subscribe(self.wanted);
            self.queue.retain(|q| *q != id);
            self.queue.push_front(id);
        }
        if self.wanted & sub::DESIRED != 0 && self.desired.is_active() {
            self.resync();
        }
    }

    /// The connection (or an attempt) failed; `jitter` is a random number in `[0, 1]`.
    pub(crate) fn on_connection_lost(&mut self, loss: Loss, jitter: f64) {
        self.requeue();
        if self.closed {
            return;
        }
        match loss {
            Loss::Permanent => return self.close(CloseReason::Unauthorized),
            Loss::Certificate => return self.close(CloseReason::Certificate),
            Loss::Transient | Loss::Refused => {}
        }
        if !self.connected_once && (loss == Loss::Refused || !self.limits.retry_initial_connect) {
            return self.close(if loss == Loss::Refused {
                CloseReason::Unauthorized
            } else {
                CloseReason::RetriesExhausted
            });
        }
        if loss == Loss::Refused {
            // One fresh token, in case the old one expired; a second refusal is final.
            if self.resigned_after_refusal || !self.limits.renewable {
                return self.close(CloseReason::Unauthorized);
            }
            self.resigned_after_refusal = true;
        }
        if self
            .limits
            .max_reconnect_attempts
            .is_some_and(|max| self.attempt >= max)
        {
            return self.close(CloseReason::RetriesExhausted);
        }
        let reason = if loss == Loss::Refused {
            DisconnectReason::Refused
        } else {
            DisconnectReason::ConnectionLost
        };
        self.actions
            .push_back(Action::Status(ConnectionStatus::Disconnected {
                reason,
                attempt: self.attempt,
            }));
        let delay = self.limits.backoff.delay(self.attempt, jitter);
        self.attempt = self.attempt.saturating_add(1);
        self.actions.push_back(Action::Reconnect(delay));
    }

    /// The connection is gone: whatever rumqttc held is forgotten (the pump empties its
    /// replay queue) and every unanswered operation is queued again here.
    fn requeue(&mut self) {
        self.connected = false;
        self.acks.clear();
        self.handed_pub.clear();
        self.handed_sub.clear();
        self.by_pkid.clear();
        // Everything not answered goes out again, in its original order, on the next
        // connection (at least once: the hub may already have some of it).
        let mut again: Vec<OpId> = Vec::new();
        let mut internal_twins = Vec::new();
        for (id, op) in &mut self.ops {
            if op.state == State::Queued {
                continue;
            }
            match op.kind {
                Kind::Twin { internal: true } => internal_twins.push(*id),
                Kind::Telemetry => {
                    self.queued_telemetry += 1;
                    self.queued_bytes += op.bytes;
                    op.state = State::Queued;
                    again.push(*id);
                }
                _ => {
                    op.state = State::Queued;
                    again.push(*id);
                }
            }
        }
        // The reconnect resyncs the desired state anyway.
        for id in internal_twins {
            self.cancel(id);
        }
        self.resync_pending = None;
        let rest: Vec<OpId> = self.queue.drain(..).collect();
        again.extend(rest);
        again.sort();
        again.dedup();
        self.queue = again.into();
    }

    /// The application closes the client.
    pub(crate) fn close(&mut self, reason: CloseReason) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.connected = false;
        for id in std::mem::take(&mut self.ops).into_keys() {
            self.actions
                .push_back(Action::Complete(id, Outcome::Closed));
        }
        self.queue.clear();
        self.queued_telemetry = 0;
        self.queued_bytes = 0;
        self.by_rid.clear();
        self.by_pkid.clear();
        self.c2d.clear();
        self.actions
            .push_back(Action::Status(ConnectionStatus::Closed { reason }));
        self.actions.push_back(Action::Close(reason));
    }

    /// A token was signed at `now`, valid for `ttl`; `keep_alive` bounds how late the pump
    /// notices a due renewal (it checks between events).
    pub(crate) fn on_token(&mut self, now: Instant, ttl: Duration, keep_alive: Duration) {
        let lead = keep_alive * 2 + Duration::from_secs(1);
        self.renew_at = Some(now + iot_common::sas::renew_after(ttl, lead));
    }

    /// When the session next needs [`Self::handle_timeout`] (the pump instead checks after
    /// every event, which keep-alive pings bound).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let resync = self.resync_deadline();
        let renew = self.renew_at.filter(|_| self.connected);
        match (resync, renew) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(crate) fn resync_deadline(&self) -> Option<Instant> {
        let (_, since) = self.resync_pending?;
        since.map(|t| t + self.limits.resync_timeout)
    }

    /// Time passed, for the resync GET only: a GET (or its answer) that got lost is sent
    /// again, so desired updates cannot stall. Needs nothing from the connection.
    pub(crate) fn handle_resync_timeout(&mut self, now: Instant) {
        if !self.connected {
            return;
        }
        match &mut self.resync_pending {
            Some((_, since @ None)) => *since = Some(now),
            Some((_, Some(t))) if now >= *t + self.limits.resync_timeout => self.resync_get(),
            _ => {}
        }
    }

    /// Time passed.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.handle_resync_timeout(now);
        if self.connected && self.renew_at.is_some_and(|at| now >= at) {
            self.renew_at = None;
            self.requeue();
            self.actions
                .push_back(Action::Status(ConnectionStatus::Disconnected {
                    reason: DisconnectReason::TokenRenewal,
                    attempt: 0,
                }));
            self.actions.push_back(Action::RenewToken);
        }
    }

    /// The next thing for the pump to do.
    pub(crate) fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }
}
