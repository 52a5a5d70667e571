//! What every request handler is given: the hub, the shutdown signal, and the handler that
//! serves MQTT over a WebSocket's byte stream.

use crate::hub::Hub;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::io::DuplexStream;
use tokio::sync::watch;

/// Serves one MQTT connection over a byte stream until it ends or shutdown. The bootstrap
/// passes the MQTT front end's handler in, so that `http/` does not depend on `mqtt/`.
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
    /// MQTT over WebSockets (`/$iothub/websocket`).
    pub(crate) mqtt_over_ws: StreamHandler,
    /// The web console, unless it is turned off.
    pub(crate) console: Option<Arc<super::console::Console>>,
}
