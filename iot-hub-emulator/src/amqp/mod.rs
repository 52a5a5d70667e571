//! The AMQP service plane (port 5671): TLS, then SASL (`MSSBCBS`, `ANONYMOUS`, `PLAIN`) or no
//! SASL at all, CBS put-token on `$cbs`, cloud-to-device sends on `/messages/devicebound` and
//! their feedback on `/messages/serviceBound/feedback`, and the Event Hub-compatible endpoint
//! (partition receivers in `events.rs`, `$management`).
//!
//! The same service is offered over WebSockets on the HTTPS port (`/$iothub/websocket`,
//! sub-protocol `AMQPWSB10`): `http/ws.rs` hands the byte stream to [`serve_stream`].
//!
//! fe2o3-amqp's acceptor does the AMQP framing; TLS is terminated here because its own TLS
//! acceptor expects the AMQP TLS protocol header, which Azure clients never send.

mod c2d;
mod cbs;
mod connection;
mod events;
mod feedback;
mod full_frames;
mod management;
mod prefixed;
mod sasl;
mod severable;

use crate::hub::Hub;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// How long a client has for the TLS handshake and its 8-byte protocol header.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one AMQP connection over an already secured byte stream (a WebSocket's) until it
/// ends or shutdown. `amqp_port` is the AMQP listener's, which the Event Hub-compatible
/// endpoint's redirects name.
pub(crate) async fn serve_stream<S>(
    hub: Arc<Hub>,
    mut stream: S,
    amqp_port: u16,
    mut shutdown: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let mut header = [0u8; 8];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.read_exact(&mut header)).await {
        Ok(Ok(_)) => {}
        _ => return tracing::debug!("amqp over websocket: no protocol header"),
    }
    let cut = {
        let hub = hub.clone();
        async move { hub.drop_amqp.notified().await }
    };
    let stream = full_frames::FullFrames::new(severable::Severable::new(
        prefixed::Prefixed::new(header, stream),
        cut,
    ));
    tokio::select! {
        _ = connection::serve(hub, stream, header, amqp_port) => {}
        _ = shutdown.changed() => {}
    }
}

/// Accepts connections until shutdown; each one gets its own task.
pub(crate) async fn accept_loop(
    hub: Arc<Hub>,
    listener: TcpListener,
    tls: TlsAcceptor,
    mut shutdown: watch::Receiver<bool>,
) {
    // The port the Event Hub-compatible endpoint's redirects name.
    let port = listener.local_addr().map_or(5671, |a| a.port());
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "amqp accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let _ = tcp.set_nodelay(true);
        let hub = hub.clone();
        let tls = tls.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let opened = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
                let mut stream = tls.accept(tcp).await?;
                let mut header = [0u8; 8];
                stream.read_exact(&mut header).await?;
                Ok::<_, std::io::Error>((stream, header))
            });
            let (stream, header) = match opened.await {
                Ok(Ok(x)) => x,
                Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "amqp handshake failed"),
                Err(_) => return tracing::debug!(%peer, "amqp handshake timed out"),
            };
            let cut = {
                let hub = hub.clone();
                async move {
                    hub.drop_amqp.notified().await;
                    tracing::info!(%peer, "fault: AMQP connection dropped");
                }
            };
            let stream = full_frames::FullFrames::new(severable::Severable::new(
                prefixed::Prefixed::new(header, stream),
                cut,
            ));
            tokio::select! {
                _ = connection::serve(hub, stream, header, port) => {}
                _ = shutdown.changed() => {}
            }
        });
    }
}
