//! What both kinds of MQTT connection (a hub device's, a DPS registration's) share: packet
//! size limits, and how a connection is refused and closed.

use bytes::BytesMut;
use rumqttc::{ConnAck, ConnectReturnCode, Packet};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Largest packet accepted from a device: a 256 KB message plus its topic and header.
pub(crate) const MAX_INCOMING_PACKET: usize = 256 * 1024 + 8 * 1024;
/// Largest packet sent to a device.
pub(crate) const MAX_OUTGOING_PACKET: usize = 1024 * 1024;

/// Writes the last bytes to a closing connection, giving up after a short while.
pub(super) async fn farewell<W: AsyncWrite + Unpin>(wr: &mut W, bytes: &[u8]) {
    let _ = tokio::time::timeout(crate::limits::MQTT_FAREWELL_TIMEOUT, async {
        if !bytes.is_empty() {
            wr.write_all(bytes).await?;
        }
        wr.shutdown().await
    })
    .await;
}

/// Answers CONNECT with a refusal and closes.
pub(super) async fn refuse<W: AsyncWrite + Unpin>(wr: &mut W, code: ConnectReturnCode) {
    let mut out = BytesMut::with_capacity(8);
    let _ = Packet::ConnAck(ConnAck::new(code, false)).write(&mut out, MAX_OUTGOING_PACKET);
    farewell(wr, &out).await;
}
