//! [`Stream`]: one stream of a session, in [`StreamMode::Reliable`] (a QUIC stream of its
//! own) or [`StreamMode::Datagram`] (QUIC datagrams with the stream's own receive queue),
//! behind one interface; its [`StreamState`]s; its [`StreamKind`].

mod channel;
mod kind;
mod slot;
mod state;

pub(crate) use channel::ChannelHost;
pub use channel::{
    ChannelOpener, ChannelStream, IncomingChannels, LinkShare, CHANNEL_HEADROOM,
    CHANNEL_WINDOW_BYTES,
};
pub use kind::{StreamKind, StreamMode};
pub(crate) use slot::{LinkCount, LinkSlot, StreamHost};
pub use state::StreamState;
pub(crate) use state::{StateCell, StateObserver};

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use carrier_msg::friend::quinn::{self, RecvStream, SendStream};
use carrier_msg::friend::Extension;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;

use crate::error::StreamError;
use crate::wire::{datagram_tag, DATAGRAM_TAG_BYTES};

/// The largest datagram payload a datagram-mode stream takes: 1100 bytes. Fixed, whatever the
/// path: a QUIC packet of 1200 bytes (the size every link starts at and never goes below,
/// relayed paths included) less QUIC's largest short header (1 + 20-byte connection ID + 4),
/// its 16-byte tag, the datagram frame's 9, the extension byte and the stream's
/// 12-byte tag leaves 1137; 1100 keeps a margin.
pub const MAX_DATAGRAM_BYTES: usize = 1100;

/// One stream of a [`Session`](crate::Session), in either mode.
///
/// - [`send`](Self::send) and [`recv`](Self::recv) move chunks: for a reliable stream bytes
///   in order (chunk borders are not kept), for a datagram stream one datagram each (never
///   merged, never cut, possibly lost or reordered).
/// - A reliable stream is also tokio's [`AsyncRead`] and [`AsyncWrite`];
///   [`shutdown`](tokio::io::AsyncWriteExt::shutdown) (or [`finish`](Self::finish)) ends this
///   side's writing while reading goes on (half-close). It is `Closed` once both sides
///   finished and this side read to the end.
/// - Its states come in order from [`next_state`](Self::next_state).
///
/// Dropping a stream closes it.
#[derive(Debug)]
pub struct Stream {
    id: u32,
    kind: StreamKind,
    mode: StreamMode,
    session: Arc<dyn StreamHost>,
    state: Arc<StateCell>,
    changes: mpsc::UnboundedReceiver<StreamState>,
    io: Io,
    /// For a stream this node accepted: its place in the link's stream count.
    _slot: Option<LinkSlot>,
    /// For a multiplexed stream: its opener of channels, and its inbox of the friend's
    /// channels until taken.
    channels: Option<(ChannelOpener, Option<IncomingChannels>)>,
}

#[derive(Debug)]
enum Io {
    Reliable {
        send: SendStream,
        recv: RecvStream,
        sent_fin: bool,
        recv_fin: bool,
    },
    Datagram {
        connection: quinn::Connection,
        control: SendStream,
        queue: mpsc::Receiver<Bytes>,
        tag: [u8; DATAGRAM_TAG_BYTES],
        dropped: Arc<AtomicU64>,
    },
}

/// The halves of a stream's transport, as the session hands them over.
pub(crate) enum Transport {
    Reliable(SendStream, RecvStream),
    Datagram {
        connection: quinn::Connection,
        control: SendStream,
        queue: mpsc::Receiver<Bytes>,
        dropped: Arc<AtomicU64>,
    },
}

/// What the link's failure under a stream says.
pub(crate) fn connection_reason(error: &quinn::ConnectionError) -> String {
    format!("the link to the friend closed: {error}")
}

impl Stream {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: u32,
        kind: StreamKind,
        session: Arc<dyn StreamHost>,
        state: Arc<StateCell>,
        changes: mpsc::UnboundedReceiver<StreamState>,
        transport: Transport,
        slot: Option<LinkSlot>,
    ) -> Self {
        let (mode, io) = match transport {
            Transport::Reliable(send, recv) => (
                StreamMode::Reliable,
                Io::Reliable {
                    send,
                    recv,
                    sent_fin: false,
                    recv_fin: false,
                },
            ),
            Transport::Datagram {
                connection,
                control,
                queue,
                dropped,
            } => (
                StreamMode::Datagram,
                Io::Datagram {
                    connection,
                    control,
                    queue,
                    tag: datagram_tag(session.session_id(), id),
                    dropped,
                },
            ),
        };
        Stream {
            id,
            kind,
            mode,
            session,
            state,
            changes,
            io,
            _slot: slot,
            channels: None,
        }
    }

    /// The stream made multiplexed: channels open through `opener` and arrive in `incoming`.
    pub(crate) fn with_channels(
        mut self,
        opener: ChannelOpener,
        incoming: IncomingChannels,
    ) -> Self {
        self.channels = Some((opener, Some(incoming)));
        self
    }

    /// Resolves once the stream is over (`Closed` or `Failed`: its session closed, its link
    /// was lost, or it ended both ways), with that state. Needs no borrow of the stream: the
    /// hook for a layer that moved the stream's halves into tasks of its own (carrier-mux).
    pub fn ended(&self) -> impl std::future::Future<Output = StreamState> + Send + 'static {
        let mut watch = self.state.watch();
        async move {
            loop {
                let state = watch.borrow_and_update().clone();
                if state.is_terminal() {
                    return state;
                }
                if watch.changed().await.is_err() {
                    // The state's cell is gone with the stream's last holder.
                    return StreamState::Closed;
                }
            }
        }
    }

    /// Whether channels may be opened on this stream
    /// ([`Session::add_multiplexed_stream`](crate::Session::add_multiplexed_stream) on either
    /// side).
    pub fn is_multiplexed(&self) -> bool {
        self.channels.is_some()
    }

    /// The hook for a multiplexing layer (carrier-mux): a handle that opens channels on this
    /// multiplexed stream, each a QUIC stream of its own; [`StreamError::WrongState`] if the
    /// stream is not multiplexed.
    pub fn channel_opener(&self) -> Result<ChannelOpener, StreamError> {
        match &self.channels {
            Some((opener, _)) => Ok(opener.clone()),
            None => Err(not_multiplexed(self.id)),
        }
    }

    /// The hook for a multiplexing layer (carrier-mux): the channels the friend opens on this
    /// multiplexed stream. Taken once; [`StreamError::WrongState`] if the stream is not
    /// multiplexed or it was taken already.
    pub fn incoming_channels(&mut self) -> Result<IncomingChannels, StreamError> {
        match &mut self.channels {
            Some((_, incoming)) => incoming.take().ok_or_else(|| {
                StreamError::WrongState(format!(
                    "the incoming channels of stream {} were taken already",
                    self.id
                ))
            }),
            None => Err(not_multiplexed(self.id)),
        }
    }

    /// The stream's ID in its session (the opener's side picks it: even for the session's
    /// requester, odd for its acceptor).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The ID of the session the stream belongs to.
    pub fn session_id(&self) -> u64 {
        self.session.session_id()
    }

    /// The friend at the other end.
    pub fn peer(&self) -> carrier_msg::friend::dht::id::CarrierId {
        self.session.peer()
    }

    /// What the stream carries, as its opener labelled it.
    pub fn kind(&self) -> StreamKind {
        self.kind
    }

    /// How the stream's data travels.
    pub fn mode(&self) -> StreamMode {
        self.mode
    }

    /// The stream's state now.
    pub fn state(&self) -> StreamState {
        self.state.get()
    }

    /// The next state change not yet taken, in order (the first is `Initialized`); waits for
    /// one unless the stream ended and every change was taken (`None`).
    pub async fn next_state(&mut self) -> Option<StreamState> {
        if let Ok(state) = self.changes.try_recv() {
            return Some(state);
        }
        if self.state.get().is_terminal() {
            return None;
        }
        self.changes.recv().await
    }

    /// Datagrams that arrived for this stream and were dropped because its queue was full
    /// (always 0 for a reliable stream).
    pub fn dropped_datagrams(&self) -> u64 {
        match &self.io {
            Io::Datagram { dropped, .. } => dropped.load(Ordering::Relaxed),
            Io::Reliable { .. } => 0,
        }
    }

    fn check_sendable(&self) -> Result<(), StreamError> {
        match self.state.get() {
            StreamState::Connected => Ok(()),
            StreamState::Failed(reason) => Err(StreamError::Failed(reason)),
            other => Err(StreamError::WrongState(format!(
                "stream {} is {other:?}, not connected",
                self.id
            ))),
        }
    }

    /// Sends `data`: on a reliable stream, all of it in order (waits for flow control); on a
    /// datagram stream, as one datagram of at most [`MAX_DATAGRAM_BYTES`] (waits while the
    /// link's datagram send buffer is full, rather than drop older ones).
    pub async fn send(&mut self, data: &[u8]) -> Result<(), StreamError> {
        self.check_sendable()?;
        let result = match &mut self.io {
            Io::Reliable { send, sent_fin, .. } => {
                if *sent_fin {
                    return Err(StreamError::WrongState(format!(
                        "stream {} finished its sending side",
                        self.id
                    )));
                }
                send.write_all(data).await.map_err(write_error)
            }
            Io::Datagram {
                connection, tag, ..
            } => send_datagram(connection, tag, data).await,
        };
        self.note(result)
    }

    /// A handle that sends on this datagram-mode stream from another task while this one
    /// receives; [`StreamError::WrongState`] for a reliable stream (split it with
    /// [`tokio::io::split`] instead).
    pub fn datagram_sender(&self) -> Result<DatagramSender, StreamError> {
        match &self.io {
            Io::Datagram {
                connection, tag, ..
            } => Ok(DatagramSender {
                connection: connection.clone(),
                tag: *tag,
                state: self.state.clone(),
            }),
            Io::Reliable { .. } => Err(StreamError::WrongState(
                "a reliable stream has no datagram sender".into(),
            )),
        }
    }

    /// The next chunk (reliable) or datagram (datagram mode); `None` once the peer finished
    /// or closed the stream and everything was read.
    pub async fn recv(&mut self) -> Result<Option<Bytes>, StreamError> {
        let result = match &mut self.io {
            Io::Reliable { recv, recv_fin, .. } => {
                if *recv_fin {
                    return Ok(None);
                }
                match recv.read_chunk(usize::MAX, true).await {
                    Ok(Some(chunk)) => Ok(Some(chunk.bytes)),
                    Ok(None) => {
                        *recv_fin = true;
                        Ok(None)
                    }
                    Err(error) => Err(read_error(error)),
                }
            }
            Io::Datagram { queue, .. } => match queue.recv().await {
                Some(datagram) => Ok(Some(datagram)),
                None => match self.state.get() {
                    StreamState::Failed(reason) => Err(StreamError::Failed(reason)),
                    _ => Ok(None),
                },
            },
        };
        let result = self.note(result);
        self.maybe_closed();
        result
    }

    /// Ends this side's sending (a reliable stream's half-close; for a datagram stream the
    /// same as [`close`](Self::close)). Reading goes on.
    pub fn finish(&mut self) -> Result<(), StreamError> {
        match &mut self.io {
            Io::Reliable { send, sent_fin, .. } => {
                if !*sent_fin {
                    // Finishing a stream the peer stopped has nobody to tell: it is over.
                    let _ = send.finish();
                    *sent_fin = true;
                }
                self.maybe_closed();
                Ok(())
            }
            Io::Datagram { .. } => {
                self.close();
                Ok(())
            }
        }
    }

    /// Closes the stream both ways: the peer reads the end of what was sent (a reliable
    /// stream) or sees the stream closed (datagram mode).
    pub fn close(&mut self) {
        match &mut self.io {
            Io::Reliable {
                send,
                recv,
                sent_fin,
                recv_fin,
            } => {
                if !*sent_fin {
                    let _ = send.finish();
                    *sent_fin = true;
                }
                if !*recv_fin {
                    let _ = recv.stop(crate::codes::CLOSED);
                    *recv_fin = true;
                }
            }
            Io::Datagram { control, queue, .. } => {
                let _ = control.finish();
                queue.close();
            }
        }
        self.state.advance(StreamState::Closed);
        self.session.forget_stream(self.id);
    }

    fn maybe_closed(&mut self) {
        if let Io::Reliable {
            sent_fin: true,
            recv_fin: true,
            ..
        } = self.io
        {
            self.state.advance(StreamState::Closed);
            self.session.forget_stream(self.id);
        }
    }

    /// Records a failure in the stream's state.
    fn note<T>(&self, result: Result<T, StreamError>) -> Result<T, StreamError> {
        if let Err(error) = &result {
            match error {
                StreamError::Failed(reason) if reason.starts_with("the link") => {
                    self.state.link_lost(reason)
                }
                StreamError::Failed(reason) => {
                    self.state.advance(StreamState::Failed(reason.clone()));
                }
                _ => {}
            }
        }
        result
    }

    fn note_io(&self, error: io::Error) -> io::Error {
        let reason = error.to_string();
        if error.kind() == io::ErrorKind::NotConnected {
            self.state
                .link_lost(&format!("the link to the friend closed: {reason}"));
        } else {
            self.state.advance(StreamState::Failed(reason));
        }
        error
    }
}

/// Sends one datagram of a datagram-mode stream, behind the extension byte and the tag.
async fn send_datagram(
    connection: &quinn::Connection,
    tag: &[u8; DATAGRAM_TAG_BYTES],
    data: &[u8],
) -> Result<(), StreamError> {
    if data.len() > MAX_DATAGRAM_BYTES {
        return Err(StreamError::DatagramTooLarge {
            len: data.len(),
            max: MAX_DATAGRAM_BYTES,
        });
    }
    let mut datagram = BytesMut::with_capacity(1 + DATAGRAM_TAG_BYTES + data.len());
    datagram.put_u8(Extension::STREAM.byte());
    datagram.put_slice(tag);
    datagram.put_slice(data);
    connection
        .send_datagram_wait(datagram.freeze())
        .await
        .map_err(datagram_error)
}

/// Sends on a datagram-mode [`Stream`] from another task ([`Stream::datagram_sender`]).
/// Cheap to clone.
#[derive(Clone, Debug)]
pub struct DatagramSender {
    connection: quinn::Connection,
    tag: [u8; DATAGRAM_TAG_BYTES],
    state: Arc<StateCell>,
}

impl DatagramSender {
    /// Sends `data` as one datagram, as [`Stream::send`] does.
    pub async fn send(&self, data: &[u8]) -> Result<(), StreamError> {
        match self.state.get() {
            StreamState::Connected => {}
            StreamState::Failed(reason) => return Err(StreamError::Failed(reason)),
            other => {
                return Err(StreamError::WrongState(format!(
                    "the stream is {other:?}, not connected"
                )))
            }
        }
        let result = send_datagram(&self.connection, &self.tag, data).await;
        if let Err(StreamError::Failed(reason)) = &result {
            self.state.link_lost(reason);
        }
        result
    }
}

fn not_multiplexed(id: u32) -> StreamError {
    StreamError::WrongState(format!("stream {id} is not multiplexed"))
}

fn write_error(error: quinn::WriteError) -> StreamError {
    match error {
        quinn::WriteError::ConnectionLost(e) => StreamError::Failed(connection_reason(&e)),
        quinn::WriteError::Stopped(code) => {
            StreamError::Failed(format!("the friend stopped reading (code {code})"))
        }
        other => StreamError::WrongState(other.to_string()),
    }
}

fn read_error(error: quinn::ReadError) -> StreamError {
    match error {
        quinn::ReadError::ConnectionLost(e) => StreamError::Failed(connection_reason(&e)),
        quinn::ReadError::Reset(code) => {
            StreamError::Failed(format!("the friend reset the stream (code {code})"))
        }
        other => StreamError::WrongState(other.to_string()),
    }
}

fn datagram_error(error: quinn::SendDatagramError) -> StreamError {
    match error {
        quinn::SendDatagramError::ConnectionLost(e) => StreamError::Failed(connection_reason(&e)),
        quinn::SendDatagramError::TooLarge => StreamError::DatagramTooLarge {
            len: 0,
            max: MAX_DATAGRAM_BYTES,
        },
        other => StreamError::Failed(other.to_string()),
    }
}

fn unsupported() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "a datagram stream is not a byte stream: use send and recv",
    )
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Io::Reliable { recv, recv_fin, .. } = &mut this.io else {
            return Poll::Ready(Err(unsupported()));
        };
        if *recv_fin {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match AsyncRead::poll_read(Pin::new(recv), cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() == before && buf.remaining() > 0 {
                    *recv_fin = true;
                    this.maybe_closed();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(this.note_io(error))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let Io::Reliable { send, .. } = &mut this.io else {
            return Poll::Ready(Err(unsupported()));
        };
        match AsyncWrite::poll_write(Pin::new(send), cx, data) {
            Poll::Ready(Err(error)) => Poll::Ready(Err(this.note_io(error))),
            other => other,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Io::Reliable { send, .. } = &mut this.io else {
            return Poll::Ready(Err(unsupported()));
        };
        AsyncWrite::poll_flush(Pin::new(send), cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Io::Reliable { send, sent_fin, .. } = &mut this.io else {
            return Poll::Ready(Err(unsupported()));
        };
        match AsyncWrite::poll_shutdown(Pin::new(send), cx) {
            Poll::Ready(Ok(())) => {
                *sent_fin = true;
                this.maybe_closed();
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(this.note_io(error))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if !self.state.get().is_terminal() {
            self.close();
        } else {
            self.session.forget_stream(self.id);
        }
    }
}
