//! One MQTT connection: CONNECT and authentication, then packets in and hub messages out, in a
//! single task that owns the socket.

use crate::client_cert::PeerChain;
use crate::clock::{now_string, unix_now};
use crate::hub::auth::DeviceIdentity;
use crate::hub::{C2dMessage, Hub, Outbound, SessionHandle, TelemetryRecord, sub};
use bytes::{Bytes, BytesMut};
use iot_common::topic::{self, DeviceTopic, Subscription};
use rumqttc::mqttbytes::{Error as CodecError, Protocol};
use rumqttc::{
    ConnAck, ConnectReturnCode, Packet, PubAck, Publish, QoS, SubAck, SubscribeReasonCode, UnsubAck,
};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};

use super::wire::{MAX_INCOMING_PACKET, MAX_OUTGOING_PACKET, farewell, refuse};

/// At most this many subscriptions per connection, as the hub allows.
const MAX_SUBSCRIPTIONS: u32 = 5;
/// Unacknowledged cloud-to-device messages in flight per connection.
const C2D_IN_FLIGHT: usize = 10;

/// Closes a session's outbox when its connection task ends, however it ends.
struct CloseOutbox(Arc<SessionHandle>);

impl Drop for CloseOutbox {
    fn drop(&mut self) {
        self.0.outbox.close();
    }
}

enum Flow {
    Continue,
    Close(&'static str),
    Graceful,
}

struct Connection {
    hub: Arc<Hub>,
    session: Arc<SessionHandle>,
    out: BytesMut,
    next_pkid: u16,
    c2d_in_flight: HashMap<u16, C2dMessage>,
    /// `clean_session=false`: subscriptions outlive the connection (and a restart).
    persistent: bool,
    /// Something in `out` acknowledges a change that must be committed before it is sent:
    /// the store's sequence number to wait for (0: nothing).
    commit_seq: u64,
}

/// Reads the first packet; a CONNECT whose protocol level is not 4 is reported as
/// `InvalidProtocolLevel` from its raw bytes, since a 3.1.1 codec cannot parse an MQTT 5
/// CONNECT (its properties shift every field).
async fn read_connect<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
) -> Result<Packet, Option<CodecError>> {
    loop {
        if let Some(level) = connect_protocol_level(buf)
            && level != 4
        {
            return Err(Some(CodecError::InvalidProtocolLevel(level)));
        }
        match Packet::read(buf, MAX_INCOMING_PACKET) {
            Ok(p) => return Ok(p),
            Err(CodecError::InsufficientBytes(_)) => {}
            Err(e) => return Err(Some(e)),
        }
        match rd.read_buf(buf).await {
            Ok(0) | Err(_) => return Err(None),
            Ok(_) => {}
        }
    }
}

/// The protocol level of a CONNECT at the start of `buf`, read without parsing the rest.
fn connect_protocol_level(buf: &[u8]) -> Option<u8> {
    if buf.first()? >> 4 != 1 {
        return None;
    }
    // Skip the fixed header's remaining-length varint (at most 4 bytes).
    let len_bytes = buf.get(1..5)?.iter().position(|b| b & 0x80 == 0)? + 1;
    let rest = buf.get(1 + len_bytes..)?;
    let name_len = usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?]));
    rest.get(2 + name_len).copied()
}

/// Serves one device connection until it closes. `peer` is the client certificate chain of
/// its TLS handshake (empty when none was presented).
///
/// Not an `async fn`: the stream goes into `split`'s shared half here, so that the future
/// (allocated once per connection, for its whole life) does not keep a second, moved-from
/// slot the size of a TLS stream (1.2 KB).
pub(crate) fn serve<S>(
    hub: Arc<Hub>,
    stream: S,
    peer: PeerChain,
    shutdown: watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (rd, wr) = tokio::io::split(stream);
    serve_halves(hub, rd, wr, peer, shutdown)
}

async fn serve_halves<S>(
    hub: Arc<Hub>,
    mut rd: ReadHalf<S>,
    mut wr: WriteHalf<S>,
    peer: PeerChain,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    // A CONNECT with a SAS token fits; bigger packets grow it.
    let mut inbuf = BytesMut::with_capacity(512);
    let mut out = BytesMut::with_capacity(256);
    let connect = match tokio::time::timeout(
        crate::limits::MQTT_CONNECT_TIMEOUT,
        read_connect(&mut rd, &mut inbuf),
    )
    .await
    {
        Ok(Ok(Packet::Connect(c))) if c.protocol == Protocol::V4 => c,
        // MQTT 5 (or 3.1): answer as a 3.1.1 server does.
        Ok(Ok(Packet::Connect(_))) | Ok(Err(Some(CodecError::InvalidProtocolLevel(_)))) => {
            tracing::info!("connection refused: unsupported MQTT protocol level");
            refuse(&mut wr, ConnectReturnCode::RefusedProtocolVersion).await;
            return;
        }
        _ => return,
    };
    let (username, password) = match &connect.login {
        Some(l) => (Some(l.username.as_str()), Some(l.password.as_str())),
        None => (None, None),
    };
    if hub.faults.refuse_connection() {
        refuse(&mut wr, ConnectReturnCode::ServiceUnavailable).await;
        return;
    }
    // DPS shares the port: its user names are `{scope}/registrations/{id}/api-version=…`.
    if let Some(names) = username.and_then(iot_common::provisioning::topics::parse_username) {
        let (scope, id) = (names.0.to_owned(), names.1.to_owned());
        // Boxed: the provisioning exchange's state (2.5 KB) would otherwise be reserved in
        // every hub connection's future.
        Box::pin(super::dps::serve(
            hub,
            connect,
            (&scope, &id),
            peer,
            rd,
            wr,
            inbuf,
            shutdown,
        ))
        .await;
        return;
    }
    let identity: DeviceIdentity = match hub.authenticate(
        &connect.client_id,
        username,
        password,
        &peer,
    ) {
        Ok(id) => id,
        Err(reason) => {
            tracing::info!(client_id = %connect.client_id, reason = reason.why(), "connection refused");
            refuse(&mut wr, ConnectReturnCode::NotAuthorized).await;
            return;
        }
    };
    let (session, present) = hub.register_session(
        &identity.device_id,
        identity.module_id.as_deref(),
        connect.clean_session,
    );
    // Pushes to this connection fail once it is gone, also if this task panics.
    let _outbox = CloseOutbox(session.clone());
    if let Some(model_id) = &identity.model_id {
        hub.set_model_id(&identity.device_id, identity.module_id.as_deref(), model_id);
    }
    tracing::info!(device_id = %identity.device_id, module_id = ?identity.module_id, "device connected");
    let _ = Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, present))
        .write(&mut out, MAX_OUTGOING_PACKET);
    let mut conn = Connection {
        hub: hub.clone(),
        session: session.clone(),
        persistent: !connect.clean_session,
        commit_seq: 0,
        out,
        next_pkid: 0,
        c2d_in_flight: HashMap::new(),
    };
    if session.subscribed(sub::C2D) {
        conn.pull_c2d();
    }
    let keep_alive = match connect.keep_alive {
        0 => Duration::from_secs(24 * 3600),
        k => Duration::from_millis(u64::from(k) * 1500),
    };
    let grace = hub.options.token_grace;
    let mut expires_in = Duration::from_secs(identity.expires_at.saturating_sub(unix_now()));
    if let Some(lifetime) = hub.faults.connection_lifetime() {
        expires_in = expires_in.min(lifetime.saturating_sub(grace));
    }
    let expiry = sleep_until(
        Instant::now()
            + expires_in
                .saturating_add(grace)
                .min(crate::limits::MAX_TOKEN_LIFETIME),
    );
    tokio::pin!(expiry);
    let idle = sleep_until(Instant::now() + keep_alive);
    tokio::pin!(idle);

    // After a failed or timed-out write nothing more is sent.
    let mut writable = true;
    let reason = 'conn: loop {
        // Packets already buffered (sent in the same write as CONNECT, or several per read)
        // are handled before waiting for more bytes.
        if let Some(flow) = conn.handle_buffered(&mut inbuf) {
            break 'conn flow;
        }
        if !conn.out.is_empty() {
            // A twin 204 or a SUBACK says a change is kept: it goes out once committed.
            let commit = std::mem::take(&mut conn.commit_seq);
            let write = tokio::time::timeout(crate::limits::MQTT_WRITE_TIMEOUT, async {
                hub.wait_durable(commit)
                    .await
                    .map_err(|e| std::io::Error::other(e.message))?;
                wr.write_all(&conn.out).await?;
                wr.flush().await
            });
            tokio::select! {
                r = write => match r {
                    Ok(Ok(())) => conn.out.clear(),
                    Ok(Err(_)) => {
                        writable = false;
                        break 'conn Flow::Close("write failed");
                    }
                    Err(_) => {
                        writable = false;
                        break 'conn Flow::Close("write timed out: the device stopped reading");
                    }
                },
                why = session.close.closed() => break 'conn Flow::Close(why),
                () = &mut expiry => break 'conn Flow::Close("token expired"),
                _ = shutdown.changed() => break 'conn Flow::Close("emulator shutting down"),
            }
        }
        tokio::select! {
            r = rd.read_buf(&mut inbuf) => {
                match r {
                    Ok(0) | Err(_) => break 'conn Flow::Close("connection lost"),
                    Ok(_) => {}
                }
                idle.as_mut().reset(Instant::now() + keep_alive);
            }
            cmd = session.outbox.recv() => match cmd {
                Outbound::Publish { topic, payload } => {
                    conn.write_publish(topic, payload, QoS::AtMostOnce);
                }
                Outbound::C2dAvailable => conn.pull_c2d(),
            },
            why = session.close.closed() => break 'conn Flow::Close(why),
            () = &mut expiry => break 'conn Flow::Close("token expired"),
            () = &mut idle => break 'conn Flow::Close("keep-alive timeout"),
            _ = shutdown.changed() => break 'conn Flow::Close("emulator shutting down"),
        }
    };
    if writable {
        farewell(&mut wr, &conn.out).await;
    }
    let graceful = matches!(reason, Flow::Graceful);
    if let Flow::Close(why) = reason {
        tracing::info!(device_id = %identity.device_id, module_id = ?identity.module_id, why, "device disconnected");
    }
    if !graceful && let Some(will) = &connect.last_will {
        let mut properties =
            iot_common::MessageProperties::new().property("iothub-MessageType", "Will");
        if let Ok(DeviceTopic::Telemetry { properties: p }) = DeviceTopic::parse(
            &will.topic,
            &identity.device_id,
            identity.module_id.as_deref(),
        ) {
            properties.custom.splice(0..0, p.custom);
        }
        hub.record_telemetry(TelemetryRecord::new(
            identity.device_id.clone(),
            identity.module_id.clone(),
            properties,
            will.message.clone(),
            now_string(),
        ));
    }
    let unacked: Vec<C2dMessage> = {
        let mut v: Vec<_> = conn.c2d_in_flight.drain().collect();
        v.sort_by_key(|(pkid, _)| *pkid);
        v.into_iter().map(|(_, m)| m).collect()
    };
    hub.requeue_c2d(&identity.device_id, unacked);
    hub.unregister_session(&session, connect.clean_session);
}

/// The session bit of a subscription kind.
fn sub_bit(kind: Subscription) -> u8 {
    match kind {
        Subscription::Methods => sub::METHODS,
        Subscription::TwinResponses => sub::TWIN_RESPONSES,
        Subscription::DesiredPatches => sub::DESIRED,
        Subscription::C2d => sub::C2D,
        _ => sub::MODULE_INPUTS,
    }
}

impl Connection {
    /// Handles every complete packet in `inbuf`; `Some` when the connection must end.
    fn handle_buffered(&mut self, inbuf: &mut BytesMut) -> Option<Flow> {
        loop {
            match Packet::read(inbuf, MAX_INCOMING_PACKET) {
                Ok(p) => match self.handle(p) {
                    Flow::Continue => {}
                    other => return Some(other),
                },
                Err(CodecError::InsufficientBytes(_)) => return None,
                Err(_) => return Some(Flow::Close("malformed or oversized packet")),
            }
        }
    }

    fn write(&mut self, packet: Packet) {
        let _ = packet.write(&mut self.out, MAX_OUTGOING_PACKET);
    }

    fn pkid(&mut self) -> u16 {
        self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
        self.next_pkid
    }

    fn write_publish(&mut self, topic: String, payload: Bytes, qos: QoS) -> u16 {
        let mut p = Publish::from_bytes(topic, qos, payload);
        if qos != QoS::AtMostOnce {
            p.pkid = self.pkid();
        }
        let pkid = p.pkid;
        self.write(Packet::Publish(p));
        pkid
    }

    fn ids(&self) -> (&str, Option<&str>) {
        (&self.session.device_id, self.session.module_id.as_deref())
    }

    fn pull_c2d(&mut self) {
        if self.session.module_id.is_some() || !self.session.subscribed(sub::C2D) {
            return;
        }
        while self.c2d_in_flight.len() < C2D_IN_FLIGHT {
            let Some(msg) = self.hub.pop_c2d(&self.session.device_id) else {
                return;
            };
            let topic = topic::c2d_topic(&self.session.device_id, &msg.properties);
            let pkid = self.write_publish(topic, msg.body.clone(), QoS::AtLeastOnce);
            self.c2d_in_flight.insert(pkid, msg);
        }
    }

    fn handle(&mut self, packet: Packet) -> Flow {
        match packet {
            Packet::Publish(p) => self.handle_publish(p),
            Packet::PubAck(ack) => {
                if let Some(msg) = self.c2d_in_flight.remove(&ack.pkid) {
                    self.hub.c2d_completed(&self.session.device_id, &msg);
                    self.pull_c2d();
                }
                Flow::Continue
            }
            Packet::Subscribe(s) => {
                let mut codes = Vec::with_capacity(s.filters.len());
                for f in &s.filters {
                    let (d, m) = self.ids();
                    let code = match Subscription::parse(&f.path, d, m) {
                        Ok(kind) => {
                            let bit = sub_bit(kind);
                            let before = self.session.subs.fetch_or(bit, Ordering::AcqRel);
                            if (before | bit).count_ones() > MAX_SUBSCRIPTIONS {
                                SubscribeReasonCode::Failure
                            } else {
                                let qos = if f.qos == QoS::AtMostOnce {
                                    QoS::AtMostOnce
                                } else {
                                    QoS::AtLeastOnce
                                };
                                SubscribeReasonCode::Success(qos)
                            }
                        }
                        // Deliberate choice (the hub's reaction is undocumented): refuse the
                        // filter in SUBACK and keep the connection.
                        Err(_) => SubscribeReasonCode::Failure,
                    };
                    codes.push(code);
                }
                if self.persistent {
                    let saved = self.hub.save_subscriptions(&self.session);
                    self.commit_seq = self.commit_seq.max(saved);
                }
                self.write(Packet::SubAck(SubAck::new(s.pkid, codes)));
                self.hub.sessions.changed.notify_waiters();
                self.pull_c2d();
                Flow::Continue
            }
            Packet::Unsubscribe(u) => {
                for f in &u.topics {
                    let (d, m) = self.ids();
                    if let Ok(kind) = Subscription::parse(f, d, m) {
                        let bit = sub_bit(kind);
                        self.session.subs.fetch_and(!bit, Ordering::AcqRel);
                    }
                }
                if self.persistent {
                    let saved = self.hub.save_subscriptions(&self.session);
                    self.commit_seq = self.commit_seq.max(saved);
                }
                self.write(Packet::UnsubAck(UnsubAck::new(u.pkid)));
                Flow::Continue
            }
            Packet::PingReq => {
                self.write(Packet::PingResp);
                Flow::Continue
            }
            Packet::Disconnect => Flow::Graceful,
            Packet::Connect(_) => Flow::Close("second CONNECT"),
            _ => Flow::Close("unexpected packet"),
        }
    }

    fn handle_publish(&mut self, p: Publish) -> Flow {
        if p.qos == QoS::ExactlyOnce {
            return Flow::Close("QoS 2 publish");
        }
        if self.hub.faults.throttle_publish() {
            return Flow::Close("throttled (fault injection)");
        }
        let (device_id, module_id) = (
            self.session.device_id.clone(),
            self.session.module_id.clone(),
        );
        let parsed = match DeviceTopic::parse(&p.topic, &device_id, module_id.as_deref()) {
            Ok(t) => t,
            Err(e) => {
                tracing::info!(device_id = %device_id, error = %e, "publish to a forbidden topic");
                return Flow::Close("publish to a forbidden topic");
            }
        };
        self.hub.touch(&device_id, module_id.as_deref());
        match parsed {
            DeviceTopic::Telemetry { mut properties } => {
                if p.retain {
                    properties
                        .custom
                        .push(("mqtt-retain".into(), "true".into()));
                }
                // The PUBACK goes out once `--state` holds the event.
                let seq = self.hub.record_telemetry(TelemetryRecord::new(
                    device_id,
                    module_id,
                    properties,
                    p.payload.clone(),
                    now_string(),
                ));
                self.commit_seq = self.commit_seq.max(seq);
            }
            DeviceTopic::MethodResponse { status, rid } => {
                if p.payload.len() > iot_common::method::MAX_PAYLOAD_BYTES {
                    return Flow::Close("method response over 128 KB");
                }
                if !self.hub.faults.drop_method_response() {
                    match self.hub.faults.method_delay() {
                        None => {
                            self.hub.complete_method(
                                &self.session,
                                &rid,
                                (status, p.payload.clone()),
                            );
                        }
                        Some(delay) => {
                            let (hub, session) = (self.hub.clone(), self.session.clone());
                            let payload = p.payload.clone();
                            tokio::spawn(async move {
                                tokio::time::sleep(delay).await;
                                hub.complete_method(&session, &rid, (status, payload));
                            });
                        }
                    }
                }
            }
            DeviceTopic::TwinGet { rid } => {
                let body = self
                    .hub
                    .device_twin(&device_id, module_id.as_deref())
                    .unwrap_or(Value::Null);
                self.twin_reply(200, &rid, None, Bytes::from(body.to_string()));
            }
            DeviceTopic::TwinPatchReported { rid } => {
                let result = serde_json::from_slice::<Value>(&p.payload)
                    .map_err(|_| {
                        crate::error::HubRefusal::bad_request(
                            "The reported patch is not valid JSON.",
                        )
                    })
                    .and_then(|patch| {
                        self.hub
                            .patch_reported(&device_id, module_id.as_deref(), &patch)
                    });
                match result {
                    Ok((version, seq)) => {
                        // Its own change's number: a later change queued meanwhile by another
                        // connection need not be waited for.
                        self.commit_seq = self.commit_seq.max(seq);
                        self.twin_reply(204, &rid, Some(version), Bytes::new());
                    }
                    Err(e) => {
                        let status = if e.code.http_status() == 413 {
                            413
                        } else {
                            400
                        };
                        self.twin_reply(status, &rid, None, error_body(&e));
                    }
                }
            }
            _ => return Flow::Close("unsupported topic"),
        }
        if p.qos == QoS::AtLeastOnce {
            self.write(Packet::PubAck(PubAck::new(p.pkid)));
        }
        Flow::Continue
    }

    fn twin_reply(&mut self, status: u16, rid: &str, version: Option<u64>, body: Bytes) {
        if self.session.subscribed(sub::TWIN_RESPONSES) {
            let (status, body) = fit_twin_reply(status, rid, body);
            self.write_publish(
                topic::twin_response_topic(status, rid, version),
                body,
                QoS::AtMostOnce,
            );
        }
    }
}

/// The hub's error document, as a twin response body.
fn error_body(e: &crate::error::HubRefusal) -> Bytes {
    let body = serde_json::json!({
        "errorCode": e.code.code(),
        "trackingId": uuid::Uuid::new_v4().simple().to_string(),
        "message": e.message,
        "timestampUtc": now_string(),
    });
    Bytes::from(body.to_string())
}

/// A twin answer too large for one outgoing packet becomes a 413 error answer, so that the
/// device is told instead of waiting forever for a packet that cannot be sent.
fn fit_twin_reply(status: u16, rid: &str, body: Bytes) -> (u16, Bytes) {
    // Fixed header, topic length prefix and the topic itself (status, rid, version).
    let overhead = 16 + topic::twin_response_topic(status, rid, Some(u64::MAX)).len();
    if body.len() + overhead <= MAX_OUTGOING_PACKET {
        return (status, body);
    }
    let e = crate::error::HubRefusal::new(
        iot_common::ErrorCode::MessageTooLarge,
        format!(
            "The twin answer is {} bytes, over the {MAX_OUTGOING_PACKET}-byte packet limit.",
            body.len()
        ),
    );
    (413, error_body(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_twin_answer_over_the_packet_limit_becomes_a_413_answer() {
        let (status, body) = fit_twin_reply(200, "1", Bytes::from(vec![b' '; MAX_OUTGOING_PACKET]));
        assert_eq!(status, 413);
        assert!(body.len() < 1024);
        let v: Value = serde_json::from_slice(&body).unwrap_or_default();
        assert_eq!(v["errorCode"], 413001);
        let small = Bytes::from_static(b"{}");
        assert_eq!(fit_twin_reply(200, "1", small.clone()), (200, small));
    }
}
