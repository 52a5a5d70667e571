//! A stream that fails once a signal fires: the "drop every AMQP connection" fault. fe2o3's
//! acceptor runs the connection in a task of its own that owns the stream, so dropping the
//! handle would not cut it; failing its I/O does, as a network failure would.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// `inner` until `cut` completes; then every read and write fails.
pub(crate) struct Severable<S> {
    inner: S,
    cut: Pin<Box<dyn Future<Output = ()> + Send>>,
    severed: bool,
}

impl<S: AsyncWrite + Unpin> Severable<S> {
    pub(crate) fn new(inner: S, cut: impl Future<Output = ()> + Send + 'static) -> Self {
        Self {
            inner,
            cut: Box::pin(cut),
            severed: false,
        }
    }

    fn check(&mut self, cx: &mut Context<'_>) -> std::io::Result<()> {
        if !self.severed && self.cut.as_mut().poll(cx).is_ready() {
            self.severed = true;
            // The peer must see the connection end: send TLS close and FIN now (the engine
            // that owns this stream may keep it a while after its I/O failed).
            let _ = Pin::new(&mut self.inner).poll_shutdown(cx);
        }
        if self.severed {
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection dropped (fault injection)",
            ))
        } else {
            Ok(())
        }
    }
}

impl<S> std::fmt::Debug for Severable<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Severable")
            .field("severed", &self.severed)
            .finish()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Severable<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Severable<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
