//! Fewer, larger reads from a socket. rustls reads a socket 4 KiB at a time and a WebSocket
//! reads it in pieces of its own read buffer; every piece taken straight from the kernel is
//! a system call, and on a busy tunnel those calls cost more than the encryption. A
//! [`ReadAhead`] takes up to 64 KiB from the kernel at once and hands it out in whatever
//! pieces the layer above asks for. It holds its buffer only while data waits in it, so an
//! idle connection (a thousand scanners' tunnels) costs nothing extra.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How much is read from the socket at once.
const READ_AHEAD: usize = 64 * 1024;

#[derive(Debug)]
pub struct ReadAhead<S> {
    inner: S,
    /// Read from the socket, not yet handed out.
    buffered: BytesMut,
}

impl<S> ReadAhead<S> {
    pub fn new(inner: S) -> ReadAhead<S> {
        ReadAhead { inner, buffered: BytesMut::new() }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.buffered.is_empty() {
            // A reader that asks for as much as a read-ahead would bring gets it directly.
            if out.remaining() >= READ_AHEAD {
                return Pin::new(&mut this.inner).poll_read(cx, out);
            }
            this.buffered.reserve(READ_AHEAD);
            match tokio_util::io::poll_read_buf(Pin::new(&mut this.inner), cx, &mut this.buffered) {
                Poll::Ready(result) => {
                    result?;
                }
                Poll::Pending => {
                    // Nothing to read: the connection is idle for now, and so is the buffer.
                    this.buffered = BytesMut::new();
                    return Poll::Pending;
                }
            }
        }
        let n = out.remaining().min(this.buffered.len());
        out.put_slice(&this.buffered[..n]);
        this.buffered.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn hands_out_every_byte_in_order_in_small_reads_and_lets_go_of_its_buffer_when_idle() {
        let (mut writer, reader) = tokio::io::duplex(256 * 1024);
        let sent: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        writer.write_all(&sent).await.unwrap();
        drop(writer);
        let mut reader = ReadAhead::new(reader);
        let mut received = vec![];
        let mut piece = [0u8; 4096];
        loop {
            let n = reader.read(&mut piece).await.unwrap();
            if n == 0 {
                break;
            }
            received.extend_from_slice(&piece[..n]);
        }
        assert_eq!(received, sent);

        let (_writer, reader) = tokio::io::duplex(1024);
        let mut reader = ReadAhead::new(reader);
        let idle = tokio::time::timeout(std::time::Duration::from_millis(20), reader.read(&mut piece)).await;
        assert!(idle.is_err(), "nothing to read");
        assert_eq!(reader.buffered.capacity(), 0, "an idle connection holds no buffer");
    }
}
