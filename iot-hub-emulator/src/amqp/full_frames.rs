//! A write-side adapter that sends every AMQP performative with all its fields.
//!
//! AMQP lets an encoder leave out a list's trailing null fields, and fe2o3-amqp does. The
//! pure-Python AMQP stack of azure-eventhub (`_pyamqp`) reads performative fields by index
//! (`frame[9]` of an open, `frame[7]` of a begin, `frame[13]` of an attach, and a transfer's
//! payload at index `count`), so it fails on such frames with "list index out of range". The
//! .NET AMQP stack behind Azure writes every field, so clients never meet a short frame there.
//! This adapter rewrites each outgoing AMQP frame (type 0) whose performative list is short by
//! appending nulls; protocol headers, SASL frames and empty frames pass unchanged.

use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes waiting for the inner stream beyond which writes wait (back-pressure): a little more
/// than the largest frame the emulator sends (64 KB `max-frame-size`).
const MAX_PENDING: usize = 128 * 1024;

/// The field count of each performative, by descriptor code (AMQP 1.0 §2.7).
fn full_count(code: u8) -> Option<usize> {
    Some(match code {
        0x10 => 10,       // open
        0x11 => 8,        // begin
        0x12 => 14,       // attach
        0x13 => 11,       // flow
        0x14 => 11,       // transfer
        0x15 => 6,        // disposition
        0x16 => 3,        // detach
        0x17 | 0x18 => 1, // end, close
        _ => return None,
    })
}

/// `inner` with full performatives on its write side.
pub(crate) struct FullFrames<S> {
    inner: S,
    /// Bytes written to us that do not yet form a whole header or frame.
    input: Vec<u8>,
    /// Rewritten bytes not yet taken by `inner`.
    output: Vec<u8>,
}

impl<S> FullFrames<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self {
            inner,
            input: Vec::new(),
            output: Vec::new(),
        }
    }

    /// Moves every complete header and frame from `input` to `output`, rewritten.
    fn process(&mut self) {
        let mut at = 0;
        loop {
            let rest = &self.input[at..];
            if rest.len() >= 4 && &rest[..4] == b"AMQP" {
                if rest.len() < 8 {
                    break;
                }
                self.output.extend_from_slice(&rest[..8]);
                at += 8;
                continue;
            }
            if rest.len() < 8 {
                break;
            }
            let size = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            if size < 8 || rest.len() < size {
                if size < 8 {
                    // Not a frame this adapter understands: pass everything through as is.
                    self.output.extend_from_slice(rest);
                    at = self.input.len();
                }
                break;
            }
            let frame = &rest[..size];
            match pad_frame(frame) {
                Some(padded) => self.output.extend_from_slice(&padded),
                None => self.output.extend_from_slice(frame),
            }
            at += size;
        }
        self.input.drain(..at);
    }
}

/// The frame with its performative's missing trailing fields as nulls, or `None` when it
/// needs no change (or is not an AMQP performative this adapter knows).
fn pad_frame(frame: &[u8]) -> Option<Vec<u8>> {
    let doff = usize::from(frame[4]) * 4;
    if frame[5] != 0 || doff < 8 || frame.len() <= doff {
        return None;
    }
    let header = &frame[..doff];
    let body = &frame[doff..];
    // Described by a small ulong code: 0x00 0x53 code.
    if body.len() < 4 || body[0] != 0x00 || body[1] != 0x53 {
        return None;
    }
    let full = full_count(body[2])?;
    let (count, elements, after) = match body[3] {
        0x45 => (0, &body[4..4], 4),
        0xc0 => {
            let size = usize::from(*body.get(4)?);
            let count = usize::from(*body.get(5)?);
            let end = 5 + size;
            (count, body.get(6..end)?, end)
        }
        0xd0 => {
            let size = u32::from_be_bytes(body.get(4..8)?.try_into().ok()?) as usize;
            let count = u32::from_be_bytes(body.get(8..12)?.try_into().ok()?) as usize;
            let end = 8 + size;
            (count, body.get(12..end)?, end)
        }
        _ => return None,
    };
    if count >= full {
        return None;
    }
    let payload = &body[after..];
    let mut list = elements.to_vec();
    list.resize(elements.len() + (full - count), 0x40);
    let mut out = Vec::with_capacity(frame.len() + 16 + full);
    out.extend_from_slice(header);
    out.extend_from_slice(&body[..3]);
    if list.len() < 255 {
        out.push(0xc0);
        out.push((list.len() + 1) as u8);
        out.push(full as u8);
    } else {
        out.push(0xd0);
        out.extend_from_slice(&((list.len() + 4) as u32).to_be_bytes());
        out.extend_from_slice(&(full as u32).to_be_bytes());
    }
    out.extend_from_slice(&list);
    out.extend_from_slice(payload);
    let size = out.len() as u32;
    out[..4].copy_from_slice(&size.to_be_bytes());
    Some(out)
}

impl<S> std::fmt::Debug for FullFrames<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FullFrames")
            .field("input", &self.input.len())
            .field("output", &self.output.len())
            .finish()
    }
}

impl<S: AsyncWrite + Unpin> FullFrames<S> {
    /// Writes `output` to `inner` until it is empty or `inner` is not ready.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while !self.output.is_empty() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.output) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => {
                    self.output.drain(..n);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FullFrames<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FullFrames<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if let Poll::Ready(Err(e)) = this.drain(cx) {
            return Poll::Ready(Err(e));
        }
        if this.output.len() + this.input.len() >= MAX_PENDING {
            return Poll::Pending;
        }
        this.input.extend_from_slice(buf);
        this.process();
        if let Poll::Ready(Err(e)) = this.drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        match this.drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        match this.drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_shutdown(cx),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(code: u8, list: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0, 0, 0, 0, 2, 0, 0, 1, 0x00, 0x53, code];
        f.extend_from_slice(list);
        f.extend_from_slice(payload);
        let n = f.len() as u32;
        f[..4].copy_from_slice(&n.to_be_bytes());
        f
    }

    #[test]
    fn short_performatives_get_their_trailing_nulls() {
        // begin with 4 fields (remote-channel null, next-outgoing-id 0, windows 0 and 0).
        let short = frame(0x11, &[0xc0, 5, 4, 0x40, 0x43, 0x43, 0x43], b"");
        let padded = pad_frame(&short).unwrap_or_default();
        assert_eq!(
            padded,
            frame(
                0x11,
                &[0xc0, 9, 8, 0x40, 0x43, 0x43, 0x43, 0x40, 0x40, 0x40, 0x40],
                b""
            )
        );
        // A transfer keeps its payload after the padded list; list0 becomes eleven nulls.
        let t = frame(0x14, &[0x45], b"payload");
        let padded = pad_frame(&t).unwrap_or_default();
        let mut list = vec![0xc0, 12, 11];
        list.extend_from_slice(&[0x40; 11]);
        assert_eq!(padded, frame(0x14, &list, b"payload"));
        // Full lists and SASL frames are left alone.
        let full = frame(0x17, &[0xc0, 2, 1, 0x40], b"");
        assert!(pad_frame(&full).is_none());
        let mut sasl = short.clone();
        sasl[5] = 1;
        assert!(pad_frame(&sasl).is_none());
    }

    #[tokio::test]
    async fn frames_split_across_writes_come_out_whole_and_padded() {
        use tokio::io::AsyncWriteExt;
        let mut out = FullFrames::new(Vec::new());
        let mut bytes = b"AMQP\x00\x01\x00\x00".to_vec();
        bytes.extend(frame(0x18, &[0x45], b""));
        bytes.extend([0, 0, 0, 8, 2, 0, 0, 0]); // empty frame (heartbeat)
        for chunk in bytes.chunks(3) {
            out.write_all(chunk).await.unwrap_or_default();
        }
        out.flush().await.unwrap_or_default();
        let mut want = b"AMQP\x00\x01\x00\x00".to_vec();
        want.extend(frame(0x18, &[0xc0, 2, 1, 0x40], b""));
        want.extend([0, 0, 0, 8, 2, 0, 0, 0]);
        assert_eq!(out.inner, want);
    }
}
