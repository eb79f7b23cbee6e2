//! The hook for a multiplexing layer above (carrier-mux): channels of a multiplexed
//! [`Stream`](super::Stream), each a QUIC stream of its own on the friend's link.
//!
//! This layer only routes them: a channel open names its session, stream and channel ID and
//! carries a header (the layer above's, at most
//! [`MAX_CHANNEL_HEADER_BYTES`](crate::MAX_CHANNEL_HEADER_BYTES)); the acceptor hands it to
//! the stream's [`IncomingChannels`], or refuses it if the stream takes no channels. What a
//! channel means (accept or refuse by the application, credit, pend) is the layer above's.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use carrier_msg::friend::quinn::{self, RecvStream, SendStream, VarInt};
use carrier_msg::friend::transport::CONNECTION_RECEIVE_WINDOW_BYTES;
use tokio::sync::mpsc;

use super::slot::{LinkCount, LinkSlot};
use crate::error::StreamError;

/// Bytes each open channel adds to its link's receive window, on both sides, for as long as
/// it is open: a multiplexing layer keeps each channel's unread data within it (its credit),
/// so channels that are paused or read slowly never fill the window the link's other
/// traffic needs.
pub const CHANNEL_WINDOW_BYTES: u32 = 256 * 1024;

/// Streams a link takes at once above those open, once it carries a multiplexed stream: 4,096
/// channels and the streams' own headroom (64). The side that takes channels raises the
/// link's stream limit to this much above what is open before any channel arrives, so a
/// burst of 4,096 channel opens never waits for stream credit.
pub const CHANNEL_HEADROOM: usize = 4096 + 64;

/// Opens a channel for a [`ChannelOpener`]; the session module implements it, so `stream`
/// never names `session`.
pub(crate) trait ChannelHost: Send + Sync + std::fmt::Debug {
    /// Opens channel `channel` of multiplexed stream `stream` with `header`.
    fn open_channel(
        &self,
        stream: u32,
        channel: u32,
        header: Bytes,
    ) -> Pin<Box<dyn Future<Output = Result<ChannelStream, StreamError>> + Send + '_>>;
}

/// Opens channels on one multiplexed stream ([`Stream::channel_opener`](super::Stream::channel_opener)).
/// Cheap to clone; usable from any task.
#[derive(Clone, Debug)]
pub struct ChannelOpener {
    pub(crate) host: Arc<dyn ChannelHost>,
    pub(crate) stream: u32,
}

impl ChannelOpener {
    /// Opens channel `channel` with `header` (at most
    /// [`MAX_CHANNEL_HEADER_BYTES`](crate::MAX_CHANNEL_HEADER_BYTES)): resolves once the
    /// friend's node routed it to the stream's [`IncomingChannels`], within the session's
    /// open timeout. The channel ID is the caller's to choose and to keep unique; this layer
    /// does not look at it. Fails with [`StreamError::Failed`] and the friend's reason if
    /// its stream takes no channels (or is gone).
    pub async fn open(&self, channel: u32, header: &[u8]) -> Result<ChannelStream, StreamError> {
        if header.len() > crate::MAX_CHANNEL_HEADER_BYTES {
            return Err(StreamError::Invalid(format!(
                "a channel header of {} bytes exceeds the cap of {}",
                header.len(),
                crate::MAX_CHANNEL_HEADER_BYTES
            )));
        }
        self.host
            .open_channel(self.stream, channel, Bytes::copy_from_slice(header))
            .await
    }

    /// The multiplexed stream's ID.
    pub fn stream_id(&self) -> u32 {
        self.stream
    }
}

/// The channels the friend opens on one multiplexed stream, in the order they arrived
/// ([`Stream::incoming_channels`](super::Stream::incoming_channels)). Bounded: while it is
/// full, the friend's opens wait (up to their open timeout).
#[derive(Debug)]
pub struct IncomingChannels {
    pub(crate) receiver: mpsc::Receiver<ChannelStream>,
}

impl IncomingChannels {
    /// The next channel; `None` once the stream is over.
    pub async fn recv(&mut self) -> Option<ChannelStream> {
        self.receiver.recv().await
    }
}

/// One channel's QUIC stream, opened or accepted, with the header it was opened with.
#[derive(Debug)]
pub struct ChannelStream {
    pub(crate) channel: u32,
    pub(crate) header: Bytes,
    pub(crate) send: SendStream,
    pub(crate) recv: RecvStream,
    pub(crate) share: LinkShare,
}

impl ChannelStream {
    /// The channel's ID, as its opener chose it.
    pub fn channel(&self) -> u32 {
        self.channel
    }

    /// The header the channel was opened with.
    pub fn header(&self) -> &Bytes {
        &self.header
    }

    /// The QUIC stream's halves and the channel's share of its link. Keep the share for as
    /// long as the channel is open: dropping it gives back the channel's place in the link's
    /// stream count and its [`CHANNEL_WINDOW_BYTES`] of the link's receive window.
    pub fn into_parts(self) -> (SendStream, RecvStream, LinkShare) {
        (self.send, self.recv, self.share)
    }
}

/// One channel's share of its link: for a channel this node accepted, its place in the link's
/// stream count; on both sides, [`CHANNEL_WINDOW_BYTES`] of the link's receive window. Given
/// back when dropped.
#[derive(Debug)]
pub struct LinkShare {
    count: Arc<LinkCount>,
    connection: quinn::Connection,
    _slot: Option<LinkSlot>,
}

impl LinkShare {
    /// Takes a share of the link `count` counts, on `connection`.
    pub(crate) fn new(
        count: Arc<LinkCount>,
        connection: quinn::Connection,
        slot: Option<LinkSlot>,
    ) -> Self {
        {
            let mut channels = lock(&count.channels);
            *channels += 1;
            set_window(&connection, *channels);
        }
        LinkShare {
            count,
            connection,
            _slot: slot,
        }
    }
}

impl Drop for LinkShare {
    fn drop(&mut self) {
        let mut channels = lock(&self.count.channels);
        *channels = channels.saturating_sub(1);
        set_window(&self.connection, *channels);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while this lock is held; a poisoned count is still whole.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The link's receive window with `channels` open: the base and each channel's share.
fn set_window(connection: &quinn::Connection, channels: usize) {
    let window = u64::from(CONNECTION_RECEIVE_WINDOW_BYTES)
        + channels as u64 * u64::from(CHANNEL_WINDOW_BYTES);
    if let Ok(window) = VarInt::from_u64(window) {
        connection.set_receive_window(window);
    }
}
