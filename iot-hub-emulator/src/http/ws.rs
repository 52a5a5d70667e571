//! MQTT over WebSockets (`/$iothub/websocket`, sub-protocol `mqtt`): the WebSocket's binary
//! frames are bridged into the same connection handler as TCP, with the client certificate
//! chain of the HTTPS connection (so X.509 devices work over WebSockets too). AMQP over
//! WebSockets (sub-protocol `AMQPWSB10`, the service SDKs' `AmqpWs`) is bridged the same way
//! into the AMQP front end.

use super::state::AppState;
use crate::client_cert::PeerChain;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::{Extension, Router};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The MQTT over WebSockets route.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/$iothub/websocket", axum::routing::get(upgrade))
        // uamqp (the Python service SDK's AmqpOverWebsocket) asks for this path.
        .route("/$servicebus/websocket", axum::routing::get(upgrade))
        .route("/$servicebus/websocket/", axum::routing::get(upgrade))
}

async fn upgrade(
    State(s): State<AppState>,
    peer: Option<Extension<PeerChain>>,
    ws: WebSocketUpgrade,
) -> Response {
    let peer = peer.map_or_else(|| PeerChain::from(Vec::new()), |Extension(p)| p);
    ws.protocols(["mqtt", AMQP_PROTOCOL])
        .on_upgrade(move |socket| bridge(s, peer, socket))
}

/// The sub-protocol of AMQP over WebSockets, as IoT Hub names it.
const AMQP_PROTOCOL: &str = "AMQPWSB10";

async fn bridge(state: AppState, peer: PeerChain, socket: WebSocket) {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let amqp = socket
        .protocol()
        .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(AMQP_PROTOCOL.as_bytes()));
    let handler = if amqp {
        &state.amqp_over_ws
    } else {
        &state.mqtt_over_ws
    };
    let served = tokio::spawn(handler(theirs, peer, state.shutdown.clone()));
    let (mut ws_tx, mut ws_rx) = socket.split();
    let (mut rd, mut wr) = tokio::io::split(ours);
    let inbound = async {
        while let Some(Ok(msg)) = ws_rx.next().await {
            let data = match msg {
                Message::Binary(b) => b,
                Message::Close(_) => break,
                _ => continue,
            };
            if wr.write_all(&data).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    };
    let outbound = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let frame = Message::Binary(bytes::Bytes::copy_from_slice(&buf[..n]));
                    if ws_tx.send(frame).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = ws_tx.close().await;
    };
    tokio::select! {
        () = inbound => {}
        () = outbound => {}
    }
    let _ = served.await;
}
