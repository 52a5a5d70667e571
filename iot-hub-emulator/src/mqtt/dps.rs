//! A Device Provisioning Service connection: CONNECT with a `{scope}/registrations/{id}/…`
//! user name, then registration requests and polls, each answered on
//! `$dps/registrations/res/{status}/?$rid=…`.

use super::wire::{MAX_INCOMING_PACKET, MAX_OUTGOING_PACKET, farewell, refuse};
use crate::client_cert::PeerChain;
use crate::clock::unix_now;
use crate::dps::{Attestor, DpsError};
use crate::hub::Hub;
use bytes::{Bytes, BytesMut};
use iot_common::provisioning::{
    RegistrationOperation, RegistrationRequest, RegistrationStatus,
    topics::{self, RequestTopic},
};
use rumqttc::mqttbytes::Error as CodecError;
use rumqttc::{
    ConnAck, Connect, ConnectReturnCode, Packet, PubAck, Publish, QoS, SubAck, SubscribeReasonCode,
    UnsubAck,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};

/// A registration takes seconds; a connection that stays longer is closed.
const MAX_CONNECTION: Duration = Duration::from_secs(600);

enum Next {
    Continue,
    Close(&'static str),
}

/// Serves a DPS connection whose CONNECT named `scope` and `registration_id`; `peer` is the
/// client certificate chain of its TLS handshake, used when there is no SAS password.
#[allow(clippy::too_many_arguments)] // the pieces of one accepted connection
pub(crate) async fn serve<R, W>(
    hub: Arc<Hub>,
    connect: Connect,
    (scope, registration_id): (&str, &str),
    peer: PeerChain,
    mut rd: R,
    mut wr: W,
    mut inbuf: BytesMut,
    mut shutdown: watch::Receiver<bool>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let password = connect.login.as_ref().map(|l| l.password.as_str());
    let attestor = if scope != hub.dps.id_scope() {
        Err("unknown ID scope".to_owned())
    } else if connect.client_id != registration_id {
        Err("the client id is not the registration id".to_owned())
    } else {
        match password {
            Some(p) if !p.is_empty() => hub
                .dps
                .authorize_sas(registration_id, p, unix_now())
                .map_err(|_| "the token does not match an enrollment".to_owned()),
            // X.509 attestation: the certificate of the TLS handshake.
            _ => hub
                .dps
                .authorize_x509(registration_id, &peer, unix_now())
                .map_err(|e| e.message),
        }
    };
    let attestor = match attestor {
        Ok(a) => a,
        Err(reason) => {
            tracing::info!(
                scope,
                registration_id,
                reason,
                "provisioning connection refused"
            );
            refuse(&mut wr, ConnectReturnCode::NotAuthorized).await;
            return;
        }
    };
    tracing::info!(registration_id, "provisioning connection");
    let mut out = BytesMut::with_capacity(512);
    let _ = Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false))
        .write(&mut out, MAX_OUTGOING_PACKET);
    let keep_alive = match connect.keep_alive {
        0 => MAX_CONNECTION,
        k => Duration::from_millis(u64::from(k) * 1500),
    };
    let end = sleep_until(Instant::now() + MAX_CONNECTION);
    tokio::pin!(end);
    let idle = sleep_until(Instant::now() + keep_alive);
    tokio::pin!(idle);
    let why = 'conn: loop {
        loop {
            let packet = match Packet::read(&mut inbuf, MAX_INCOMING_PACKET) {
                Ok(p) => p,
                Err(CodecError::InsufficientBytes(_)) => break,
                Err(_) => break 'conn "malformed or oversized packet",
            };
            match handle(&hub, &attestor, registration_id, packet, &mut out).await {
                Next::Continue => {}
                Next::Close(why) => break 'conn why,
            }
        }
        if !out.is_empty() {
            let write = tokio::time::timeout(crate::limits::MQTT_WRITE_TIMEOUT, async {
                wr.write_all(&out).await?;
                wr.flush().await
            });
            match write.await {
                Ok(Ok(())) => out.clear(),
                _ => return,
            }
        }
        tokio::select! {
            r = rd.read_buf(&mut inbuf) => match r {
                Ok(0) | Err(_) => break 'conn "connection lost",
                Ok(_) => idle.as_mut().reset(Instant::now() + keep_alive),
            },
            () = &mut idle => break 'conn "keep-alive timeout",
            () = &mut end => break 'conn "provisioning connection open too long",
            _ = shutdown.changed() => break 'conn "emulator shutting down",
        }
    };
    tracing::info!(registration_id, why, "provisioning connection closed");
    farewell(&mut wr, &out).await;
}

fn write(out: &mut BytesMut, packet: Packet) {
    let _ = packet.write(out, MAX_OUTGOING_PACKET);
}

async fn handle(
    hub: &Arc<Hub>,
    attestor: &Attestor,
    registration_id: &str,
    packet: Packet,
    out: &mut BytesMut,
) -> Next {
    match packet {
        Packet::Subscribe(s) => {
            let codes = s
                .filters
                .iter()
                .map(|f| {
                    if f.path == topics::RESPONSE_FILTER {
                        SubscribeReasonCode::Success(QoS::AtLeastOnce)
                    } else {
                        SubscribeReasonCode::Failure
                    }
                })
                .collect();
            write(out, Packet::SubAck(SubAck::new(s.pkid, codes)));
        }
        Packet::Unsubscribe(u) => write(out, Packet::UnsubAck(UnsubAck::new(u.pkid))),
        Packet::PingReq => write(out, Packet::PingResp),
        Packet::Disconnect => return Next::Close("disconnected by the device"),
        Packet::Publish(p) => {
            if p.qos == QoS::AtLeastOnce {
                write(out, Packet::PubAck(PubAck::new(p.pkid)));
            }
            let Ok(request) = topics::parse_request_topic(&p.topic) else {
                return Next::Close("publish outside the provisioning topics");
            };
            let (rid, status, retry_after, body) =
                answer(hub, attestor, registration_id, request, &p.payload).await;
            let topic = topics::response_topic(status, &rid, retry_after);
            write(
                out,
                Packet::Publish(Publish::from_bytes(topic, QoS::AtMostOnce, body)),
            );
        }
        _ => return Next::Close("unexpected packet"),
    }
    Next::Continue
}

fn json(v: &impl serde::Serialize) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

/// The answer to one request: its `$rid`, status, `retry-after` and body.
async fn answer(
    hub: &Arc<Hub>,
    attestor: &Attestor,
    registration_id: &str,
    request: RequestTopic,
    payload: &[u8],
) -> (String, u16, Option<u64>, Bytes) {
    let refused = |rid: String, e: DpsError| (rid, e.status, None, json(&e.body()));
    match request {
        RequestTopic::Register { rid } => {
            let request: RegistrationRequest = match serde_json::from_slice(payload) {
                Ok(r) => r,
                Err(_) => {
                    return refused(
                        rid,
                        DpsError::bad_request("The body is not a registration request."),
                    );
                }
            };
            // The registration's own writes: DPS's rows and the device it created or updated.
            let (registered, seq) = crate::hub::Receipt::sync(|| {
                let r = hub.dps.register(attestor, &request, hub.as_ref());
                hub.mark_dirty();
                r
            });
            match registered {
                Ok(op) => {
                    // "assigning" promises the device exists: it is committed first.
                    if let Err(e) = hub.wait_durable(seq).await {
                        return refused(rid, DpsError::new(500, 500000, e.message));
                    }
                    operation_answer(rid, op, Some(hub.dps.retry_after()))
                }
                Err(e) => refused(rid, e),
            }
        }
        RequestTopic::Poll { rid, operation_id } => {
            match hub.dps.operation(registration_id, &operation_id) {
                Ok(op) => operation_answer(rid, op, None),
                Err(e) => refused(rid, e),
            }
        }
    }
}

fn operation_answer(
    rid: String,
    op: RegistrationOperation,
    retry_after: Option<u64>,
) -> (String, u16, Option<u64>, Bytes) {
    match op.status {
        RegistrationStatus::Assigning => (rid, 202, retry_after, json(&op)),
        _ => (rid, 200, None, json(&op)),
    }
}
