//! [`Channel`]: one full-duplex byte stream of a mux, on a QUIC stream of its own, with its
//! credit, its pend, its close reason.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use carrier_stream::msg::friend::quinn::{RecvStream, SendStream, VarInt};
use carrier_stream::LinkShare;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::credit::RecvCredit;
use crate::error::{CloseReason, MuxError};
use crate::event::ChannelId;
use crate::state::{lock, ChannelShared, MuxLife};
use crate::wire::Control;

/// The QUIC code a channel's stream is reset or stopped with when it closes on a timeout or
/// an error (plus the close code); never renumbered.
const RESET_CODE_BASE: u32 = 0x4d00;

/// One channel of a [`Mux`](crate::Mux): a full-duplex byte stream, tokio's [`AsyncRead`]
/// and [`AsyncWrite`].
///
/// - [`shutdown`](tokio::io::AsyncWriteExt::shutdown) ends this side's writing while reading
///   goes on (half-close); the friend reads to its end.
/// - Writes wait while the friend pended the channel, and beyond the credit the friend's
///   reader granted: a slow or paused reader holds at most one credit of unread data.
/// - Once the friend closed the channel, writes fail and reads go on to the end of what it
///   sent; once the multiplexed stream or the link is lost, both fail with the reason.
///
/// Dropping a channel closes it with [`CloseReason::Normal`].
#[derive(Debug)]
pub struct Channel {
    id: ChannelId,
    cookie: Bytes,
    life: Arc<MuxLife>,
    shared: Arc<ChannelShared>,
    send: SendStream,
    recv: RecvStream,
    credit: RecvCredit,
    closed_here: bool,
    _share: LinkShare,
}

impl Channel {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: ChannelId,
        cookie: Bytes,
        life: Arc<MuxLife>,
        shared: Arc<ChannelShared>,
        send: SendStream,
        recv: RecvStream,
        share: LinkShare,
    ) -> Self {
        let credit = RecvCredit::new(u64::from(life.shared.config.credit()));
        Channel {
            id,
            cookie,
            life,
            shared,
            send,
            recv,
            credit,
            closed_here: false,
            _share: share,
        }
    }

    /// The channel's ID in its mux (even from the side that opened the multiplexed stream,
    /// odd from the other).
    pub fn id(&self) -> ChannelId {
        self.id
    }

    /// The cookie the channel was opened with.
    pub fn cookie(&self) -> &[u8] {
        &self.cookie
    }

    /// Why the channel closed on the friend's side or was lost, if it did.
    pub fn close_reason(&self) -> Option<CloseReason> {
        lock(&self.shared.state).closed.clone()
    }

    /// Whether the friend pended this channel (writes wait until it resumes it).
    pub fn is_pended(&self) -> bool {
        lock(&self.shared.state).paused
    }

    /// Closes the channel both ways with `reason`, which the friend sees
    /// ([`MuxEvent::Closed`](crate::MuxEvent::Closed)). With [`CloseReason::Normal`] the
    /// friend still reads what was sent; otherwise the channel's stream is reset.
    pub async fn close(&mut self, reason: CloseReason) -> Result<(), MuxError> {
        if self.closed_here {
            return Err(MuxError::WrongState(format!(
                "channel {} is closed already",
                self.id.0
            )));
        }
        self.close_now(reason);
        Ok(())
    }

    fn close_now(&mut self, reason: CloseReason) {
        self.closed_here = true;
        let code = reason.code();
        let mux = &self.life.shared;
        if mux.gone().is_none() {
            mux.send(Control::Close {
                channel: self.id.0,
                code,
            });
        }
        let quinn_code = VarInt::from_u32(RESET_CODE_BASE + u32::from(code));
        match reason {
            // Finishing a stream the friend stopped has nobody to tell: it is over.
            CloseReason::Normal => {
                let _ = self.send.finish();
            }
            _ => {
                let _ = self.send.reset(quinn_code);
            }
        }
        let _ = self.recv.stop(quinn_code);
        mux.forget(self.id.0);
    }

    /// Tells the friend's writer how much more it may send, once the reader consumed enough.
    fn consumed(&mut self, n: usize) {
        if let Some(limit) = self.credit.consumed(n as u64) {
            self.life.shared.send(Control::Credit {
                channel: self.id.0,
                limit,
            });
        }
    }

    fn lost(&self) -> Option<String> {
        match &lock(&self.shared.state).closed {
            Some(CloseReason::Lost(why)) => Some(why.clone()),
            _ => None,
        }
    }
}

fn lost_error(why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        format!("the channel was lost: {why}"),
    )
}

impl AsyncRead for Channel {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        {
            let mut state = lock(&this.shared.state);
            if let Some(CloseReason::Lost(why)) = &state.closed {
                return Poll::Ready(Err(lost_error(why)));
            }
            state.read_waker = Some(cx.waker().clone());
        }
        let before = buf.filled().len();
        match AsyncRead::poll_read(Pin::new(&mut this.recv), cx, buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len() - before;
                if n > 0 {
                    this.consumed(n);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(match this.lost() {
                Some(why) => lost_error(&why),
                None => error,
            })),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for Channel {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.closed_here {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the channel is closed",
            )));
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let available = {
            let mut state = lock(&this.shared.state);
            match &state.closed {
                Some(CloseReason::Lost(why)) => return Poll::Ready(Err(lost_error(why))),
                Some(reason) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        format!("the friend closed the channel: {reason}"),
                    )))
                }
                None => {}
            }
            let available = state.credit.available();
            if state.paused || available == 0 {
                state.write_waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            available
        };
        let n = data
            .len()
            .min(usize::try_from(available).unwrap_or(usize::MAX));
        match AsyncWrite::poll_write(Pin::new(&mut this.send), cx, &data[..n]) {
            Poll::Ready(Ok(written)) => {
                lock(&this.shared.state).credit.sent(written as u64);
                Poll::Ready(Ok(written))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(match this.lost() {
                Some(why) => lost_error(&why),
                None => error,
            })),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_flush(Pin::new(&mut self.get_mut().send), cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match AsyncWrite::poll_shutdown(Pin::new(&mut this.send), cx) {
            Poll::Ready(Err(error)) => Poll::Ready(Err(match this.lost() {
                Some(why) => lost_error(&why),
                None => error,
            })),
            other => other,
        }
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        if !self.closed_here {
            self.close_now(CloseReason::Normal);
        }
    }
}
