//! What every request handler is given: the hub, the shutdown signal, and the handlers that
//! serve MQTT and AMQP over a WebSocket's byte stream.

use crate::hub::Hub;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::io::DuplexStream;
use tokio::sync::watch;

/// Serves one MQTT (or AMQP) connection over a byte stream until it ends or shutdown. The
/// bootstrap passes the front ends' handlers in, so that `http/` depends on neither.
pub(crate) type StreamHandler = Arc<
    dyn Fn(
            DuplexStream,
            crate::client_cert::PeerChain,
            watch::Receiver<bool>,
        ) -> Pin<Box<dyn Future<Output = ()> + Send>>
        + Send
        + Sync,
>;

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) hub: Arc<Hub>,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// MQTT over WebSockets (`/$iothub/websocket`, sub-protocol `mqtt`).
    pub(crate) mqtt_over_ws: StreamHandler,
    /// AMQP over WebSockets (the same path, sub-protocol `AMQPWSB10`).
    pub(crate) amqp_over_ws: StreamHandler,
    /// The web console, unless it is turned off.
    pub(crate) console: Option<Arc<super::console::Console>>,
}
