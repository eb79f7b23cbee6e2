//! The relay between a TCP connection and a channel: bytes copied both ways with no
//! framing, each way's end passed on as a half-close, counted as they go.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use carrier_mux::{Channel, CloseReason};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Each way's copy buffer: large enough that a fast link is not held up by system calls.
const COPY_BUFFER_BYTES: usize = 256 * 1024;

/// A connection's byte counts, from this node's view of the friend.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    /// Bytes that came from the friend (written to the TCP connection).
    pub(crate) from_friend: AtomicU64,
    /// Bytes that went to the friend (read from the TCP connection).
    pub(crate) to_friend: AtomicU64,
}

impl Counts {
    pub(crate) fn get(&self) -> (u64, u64) {
        (
            self.from_friend.load(Ordering::Relaxed),
            self.to_friend.load(Ordering::Relaxed),
        )
    }
}

/// A TCP connection that counts what passes.
struct Counted<'a> {
    tcp: TcpStream,
    counts: &'a Counts,
}

impl AsyncRead for Counted<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.tcp).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        this.counts.to_friend.fetch_add(n as u64, Ordering::Relaxed);
        polled
    }
}

impl AsyncWrite for Counted<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.tcp).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = polled {
            this.counts
                .from_friend
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// Copies between `tcp` and `channel` until both ways ended (each way's end passed on as a
/// half-close), then closes the channel: normally, or with [`CloseReason::Error`] (and the
/// TCP connection dropped) when either failed.
pub(crate) async fn relay(tcp: TcpStream, mut channel: Channel, counts: &Counts) -> io::Result<()> {
    let mut tcp = Counted { tcp, counts };
    let copied = tokio::io::copy_bidirectional_with_sizes(
        &mut tcp,
        &mut channel,
        COPY_BUFFER_BYTES,
        COPY_BUFFER_BYTES,
    )
    .await;
    let reason = match copied {
        Ok(_) => CloseReason::Normal,
        Err(_) => CloseReason::Error,
    };
    // Closed here already only if something else closed it; nothing to add then.
    let _ = channel.close(reason).await;
    copied.map(|_| ())
}
