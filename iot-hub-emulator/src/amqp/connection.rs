//! One AMQP connection: its sessions, and which links each session may open.

use super::sasl::CbsSasl;
use super::{c2d, cbs, events, feedback, management};
use crate::hub::Hub;
use fe2o3_amqp::acceptor::{
    ConnectionAcceptor, LinkAcceptor, LinkEndpoint, ListenerSessionHandle, SessionAcceptor,
    SupportedReceiverSettleModes, SupportedSenderSettleModes,
};
use fe2o3_amqp::link::Sender;
use fe2o3_amqp::types::definitions::{self, AmqpError, ErrorCondition, Fields};
use fe2o3_amqp::types::definitions::{ReceiverSettleMode, Role, SenderSettleMode};
use fe2o3_amqp::types::messaging::{Source, Target, TargetArchetype};
use fe2o3_amqp::types::performatives::Attach;
use fe2o3_amqp::types::primitives::{Symbol, Value};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Mutex, Notify};
use tokio::task::JoinSet;

/// Largest message accepted on a link. A C2D body may be 64 KB; the rest is headroom for
/// properties, so the size check that answers `rejected` happens in [`c2d`], not here.
const MAX_MESSAGE_SIZE: u64 = 256 * 1024;

/// Where the service reads cloud-to-device feedback.
const FEEDBACK_NODE: &str = "/messages/serviceBound/feedback";

/// Sessions per connection (channels 0..=15) and links per session (handles 0..=63): IoT Hub
/// clients use one session with a handful of links.
const CHANNEL_MAX: u16 = 15;
const HANDLE_MAX: u32 = 63;
/// A connection with no frame for this long is closed; clients send empty frames at half of it
/// (IoT Hub's own value).
const IDLE_TIMEOUT_MS: u32 = 240_000;

/// What the links of one connection share.
pub(super) struct ConnState {
    pub(super) hub: Arc<Hub>,
    /// Set by a valid CBS put-token; the links other than `$cbs` need it.
    pub(super) authorized: AtomicBool,
    /// The link the client receives CBS answers on (source `$cbs`), once attached.
    pub(super) cbs_reply: Mutex<Option<Sender>>,
    pub(super) cbs_reply_attached: Notify,
    /// The link the client receives `$management` answers on.
    pub(super) management_reply: management::ReplyLink,
    /// The listener's port, named in redirects to the Event Hub-compatible endpoint.
    pub(super) amqp_port: u16,
}

/// Serves one connection until the client closes it or the stream fails. `header` is the
/// protocol header already read from `stream` (it is replayed by the caller's stream).
pub(super) async fn serve<S>(hub: Arc<Hub>, stream: S, header: [u8; 8], amqp_port: u16)
where
    S: AsyncRead + AsyncWrite + std::fmt::Debug + Send + Unpin + 'static,
{
    let container = format!("iot-hub-emulator-{}", hub.host_name());
    // `AMQP 3 1 0 0` asks for SASL (uamqp); `AMQP 0 1 0 0` is straight AMQP (rhea).
    let opened = if header[4] == 3 {
        ConnectionAcceptor::builder()
            .container_id(container)
            .max_frame_size(65536)
            .channel_max(CHANNEL_MAX)
            .idle_time_out(IDLE_TIMEOUT_MS)
            .properties(open_properties())
            .sasl_acceptor(CbsSasl)
            .build()
            .accept(stream)
            .await
    } else {
        ConnectionAcceptor::builder()
            .container_id(container)
            .max_frame_size(65536)
            .channel_max(CHANNEL_MAX)
            .idle_time_out(IDLE_TIMEOUT_MS)
            .properties(open_properties())
            .build()
            .accept(stream)
            .await
    };
    let mut conn = match opened {
        Ok(c) => c,
        Err(e) => return tracing::debug!(error = %e, "amqp open failed"),
    };
    let state = Arc::new(ConnState {
        hub,
        authorized: AtomicBool::new(false),
        cbs_reply: Mutex::new(None),
        cbs_reply_attached: Notify::new(),
        management_reply: management::ReplyLink::default(),
        amqp_port,
    });
    // Dropping the set (the connection ended, or shutdown) aborts the sessions' tasks.
    let mut sessions = JoinSet::new();
    let session_acceptor = SessionAcceptor::builder().handle_max(HANDLE_MAX).build();
    while let Some(incoming) = conn.next_incoming_session().await {
        match session_acceptor
            .accept_incoming_session(incoming, &mut conn)
            .await
        {
            Ok(session) => {
                sessions.spawn(serve_session(state.clone(), session));
            }
            Err(e) => {
                tracing::debug!(error = %e, "amqp begin failed");
                break;
            }
        }
    }
    let _ = conn.close().await;
}

/// Accepts the session's links one by one; each link gets its own task.
async fn serve_session(state: Arc<ConnState>, mut session: ListenerSessionHandle) {
    // Dispositions are sent settled (rcv-settle-mode first), as IoT Hub does: uamqp asks for
    // `second` but never settles its side, so a `second` receiver would leave its send pending.
    let acceptor = LinkAcceptor::builder()
        .max_message_size(MAX_MESSAGE_SIZE)
        .supported_receiver_settle_modes(SupportedReceiverSettleModes::First)
        .fallback_receiver_settle_mode(ReceiverSettleMode::First)
        .build();
    // Event Hub links and `$management` answers send pre-settled: their clients never settle.
    let settled = LinkAcceptor::builder()
        .max_message_size(MAX_MESSAGE_SIZE)
        .supported_sender_settle_modes(SupportedSenderSettleModes::Settled)
        .fallback_sender_settle_mode(SenderSettleMode::Settled)
        .build();
    let mut links = JoinSet::new();
    while let Some(attach) = session.next_incoming_attach().await {
        let role = attach.role.clone();
        let address = match role {
            Role::Sender => target_address(&attach),
            Role::Receiver => source_address(&attach),
        };
        let node = node_path(address.as_deref().unwrap_or("")).to_owned();
        let partition = match role {
            Role::Receiver => events::partition_request(&state, &node, &attach),
            Role::Sender => None,
        };
        let acceptor = if partition.is_some() || (role == Role::Receiver && node == "$management") {
            &settled
        } else {
            &acceptor
        };
        let link = match acceptor.accept_incoming_attach(attach, &mut session).await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %e, "amqp attach refused");
                continue;
            }
        };
        let authorized = state.authorized.load(Ordering::Acquire);
        match (link, node.as_str()) {
            (LinkEndpoint::Receiver(r), "$cbs") => {
                links.spawn(cbs::serve_requests(state.clone(), r));
            }
            (LinkEndpoint::Sender(s), "$cbs") => {
                *state.cbs_reply.lock().await = Some(s);
                state.cbs_reply_attached.notify_waiters();
            }
            (LinkEndpoint::Receiver(r), "/messages/devicebound") if authorized => {
                links.spawn(c2d::serve_sends(state.clone(), r));
            }
            (LinkEndpoint::Receiver(r), "$management") => {
                links.spawn(management::serve_requests(state.clone(), r));
            }
            (LinkEndpoint::Sender(s), "$management") => state.management_reply.set(s).await,
            (LinkEndpoint::Sender(s), node) if authorized && events::is_hub_events(node) => {
                let _ = s.close_with_error(events::redirect(&state, node)).await;
            }
            (LinkEndpoint::Sender(s), _) if authorized && partition.is_some() => match partition {
                Some(Ok(request)) => {
                    links.spawn(events::serve_partition(state.clone(), s, request));
                }
                Some(Err(e)) => {
                    let _ = s.close_with_error(e).await;
                }
                None => {}
            },
            // The hub matches this address case-insensitively (the docs write `servicebound`,
            // the Node SDK `serviceBound`).
            (LinkEndpoint::Sender(s), node)
                if authorized && node.eq_ignore_ascii_case(FEEDBACK_NODE) =>
            {
                links.spawn(feedback::serve_feedback(state.clone(), s));
            }
            (link, node) => {
                let e = if authorized {
                    not_found(node)
                } else {
                    unauthorized()
                };
                // Detached with the error: the client's attach (or first send) fails with it.
                let _ = match link {
                    LinkEndpoint::Receiver(r) => r.close_with_error(e).await,
                    LinkEndpoint::Sender(s) => s.close_with_error(e).await,
                };
            }
        }
    }
    // The session ended: its links' tasks end with it.
    drop(links);
    let _ = session.end().await;
}

/// The open frame's `properties`. Besides naming the server, a non-null last field makes the
/// frame carry all ten fields: azure-eventhub's pyamqp reads `properties` by index and fails
/// ("list index out of range") on an open whose trailing null fields were left out, which
/// AMQP allows and fe2o3-amqp does.
fn open_properties() -> Fields {
    let mut p = Fields::new();
    p.insert(
        Symbol::from("product"),
        Value::String("iot-hub-emulator".into()),
    );
    p
}

fn unauthorized() -> definitions::Error {
    definitions::Error::new(
        ErrorCondition::AmqpError(AmqpError::UnauthorizedAccess),
        Some("Put a valid token on $cbs first.".to_owned()),
        None,
    )
}

fn not_found(node: &str) -> definitions::Error {
    definitions::Error::new(
        ErrorCondition::AmqpError(AmqpError::NotFound),
        Some(format!("The emulator has no AMQP node {node}.")),
        None,
    )
}

fn target_address(attach: &Attach) -> Option<String> {
    match attach.target.as_deref()? {
        TargetArchetype::Target(Target { address, .. }) => address.clone(),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

fn source_address(attach: &Attach) -> Option<String> {
    let Source { address, .. } = attach.source.as_deref()?;
    address.clone()
}

/// The node part of a link address: `amqps://{host}/messages/devicebound` and
/// `/messages/devicebound` are the same node.
fn node_path(address: &str) -> &str {
    match address.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("", |i| &rest[i..]),
        None => address,
    }
}

#[cfg(test)]
mod tests {
    use super::node_path;

    #[test]
    fn node_path_drops_scheme_and_host() {
        assert_eq!(
            node_path("amqps://h.azure-devices.net/messages/devicebound"),
            "/messages/devicebound"
        );
        assert_eq!(node_path("/messages/devicebound"), "/messages/devicebound");
        assert_eq!(node_path("$cbs"), "$cbs");
        assert_eq!(node_path("amqps://h"), "");
    }
}
