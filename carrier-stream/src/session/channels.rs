//! Channels of multiplexed streams, as the sessions layer routes them: each a bidirectional
//! QUIC stream on the friend's link whose [`Open::Channel`] frame names its session, stream
//! and channel; the acceptor hands it to the stream's bounded inbox of channels. What a
//! channel carries is the layer above's (carrier-mux).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use carrier_msg::friend::dht::bounded::BoundedBytes;
use carrier_msg::friend::quinn::{self, RecvStream, SendStream};
use tokio::sync::mpsc;

use super::{exchange, lock, raise_limit, Core, Key, SessionShared, Status};
use crate::error::StreamError;
use crate::stream::{
    ChannelHost, ChannelOpener, ChannelStream, IncomingChannels, LinkShare, StateCell,
    CHANNEL_HEADROOM,
};
use crate::wire::{self, Answer, Open, MAX_CHANNEL_HEADER_BYTES};

/// Channels one multiplexed stream holds that the layer above has not taken yet: a burst of
/// 4,096 opens at once fits; beyond it, opens wait (within their open timeout).
pub(crate) const CHANNEL_INBOX: usize = 4096;

/// Opens the channels of one session's multiplexed streams.
#[derive(Debug)]
struct SessionChannels {
    core: Arc<Core>,
    session: Arc<SessionShared>,
}

impl ChannelHost for SessionChannels {
    fn open_channel(
        &self,
        stream: u32,
        channel: u32,
        header: Bytes,
    ) -> Pin<Box<dyn Future<Output = Result<ChannelStream, StreamError>> + Send + '_>> {
        Box::pin(
            self.core
                .open_channel(&self.session, stream, channel, header),
        )
    }
}

impl Core {
    /// Makes stream `id` of `session` multiplexed: it takes channels into a new inbox, and the
    /// link's stream limit is raised to [`CHANNEL_HEADROOM`] above what is open, before any
    /// channel arrives.
    pub(super) fn multiplex(
        self: &Arc<Self>,
        session: &Arc<SessionShared>,
        id: u32,
        connection: &quinn::Connection,
    ) -> (ChannelOpener, IncomingChannels) {
        let (sender, receiver) = mpsc::channel(CHANNEL_INBOX);
        if let Some(entry) = lock(&session.streams).get_mut(&id) {
            entry.channels = Some(sender);
        }
        let count = self.watch(session.peer, connection);
        let open = count.open.load(std::sync::atomic::Ordering::Relaxed);
        raise_limit(&count, connection, open + CHANNEL_HEADROOM);
        let opener = ChannelOpener {
            host: Arc::new(SessionChannels {
                core: self.clone(),
                session: session.clone(),
            }),
            stream: id,
        };
        (opener, IncomingChannels { receiver })
    }

    /// Opens channel `channel` of multiplexed stream `stream`: the [`Open::Channel`] exchange
    /// on a new QUIC stream, within the open timeout.
    async fn open_channel(
        self: &Arc<Self>,
        session: &Arc<SessionShared>,
        stream: u32,
        channel: u32,
        header: Bytes,
    ) -> Result<ChannelStream, StreamError> {
        match session.status() {
            Status::Active => {}
            Status::Deactivated => {
                return Err(StreamError::WrongState(
                    "the session is deactivated: its friend's link is down".into(),
                ))
            }
            Status::Closed(_) => return Err(StreamError::UnknownSession(session.id)),
        }
        if !lock(&session.streams).contains_key(&stream) {
            return Err(StreamError::UnknownStream(stream));
        }
        let link = self
            .friends
            .link(&session.peer)
            .ok_or_else(|| StreamError::WrongState("the friend's link is down".into()))?;
        let connection = link.connection().clone();
        let count = self.watch(session.peer, &connection);
        // The window grows before the friend can send on the channel.
        let share = LinkShare::new(count, connection, None);
        let open = Open::Channel {
            session: session.id,
            stream,
            channel,
            header: BoundedBytes::from_slice(&header)
                .map_err(|e| StreamError::Invalid(e.to_string()))?,
        };
        let cell = StateCell::new().0;
        let exchanged =
            tokio::time::timeout(self.config.open_timeout(), exchange(&link, &open, &cell)).await;
        match exchanged {
            Err(_) => Err(StreamError::Timeout(
                "the friend did not take the channel in time".into(),
            )),
            Ok(Err(error)) => Err(error),
            Ok(Ok((Answer::Ready, send, recv))) => Ok(ChannelStream {
                channel,
                header,
                send,
                recv,
                share,
            }),
            Ok(Ok((Answer::UnknownSession, ..))) => Err(StreamError::UnknownSession(session.id)),
            Ok(Ok((Answer::Refused(reason), ..))) => {
                Err(StreamError::Failed(wire::reason_text(&reason)))
            }
        }
    }

    /// Takes a channel the friend opened: routes it to its stream's inbox (waiting for room
    /// within the open timeout), or refuses it.
    pub(super) async fn take_channel(
        self: &Arc<Self>,
        key: Key,
        stream: u32,
        channel: u32,
        header: BoundedBytes<MAX_CHANNEL_HEADER_BYTES>,
        mut send: SendStream,
        recv: RecvStream,
    ) {
        let refuse = |reason: &str| wire::prefixed(&Answer::Refused(wire::reason(reason)));
        let Some(session) = self.session(&key) else {
            let _ = send
                .write_all(&wire::prefixed(&Answer::UnknownSession))
                .await;
            let _ = send.finish();
            return;
        };
        let inbox = lock(&session.streams)
            .get(&stream)
            .map(|entry| entry.channels.clone());
        let inbox = match inbox {
            Some(Some(inbox)) => inbox,
            Some(None) => {
                let reason = format!("stream {stream} takes no channels");
                let _ = send.write_all(&refuse(&reason)).await;
                let _ = send.finish();
                return;
            }
            None => {
                let reason = format!("unknown stream {stream}");
                let _ = send.write_all(&refuse(&reason)).await;
                let _ = send.finish();
                return;
            }
        };
        let Some(link) = self.friends.link(&key.0) else {
            return;
        };
        let connection = link.connection().clone();
        let slot = self.take_slot_with(key.0, &connection, CHANNEL_HEADROOM);
        let count = slot.0.clone();
        let share = LinkShare::new(count, connection, Some(slot));
        let permit =
            match tokio::time::timeout(self.config.open_timeout(), inbox.reserve_owned()).await {
                Ok(Ok(permit)) => permit,
                Ok(Err(_)) => {
                    let _ = send.write_all(&refuse("the stream is over")).await;
                    let _ = send.finish();
                    return;
                }
                Err(_) => {
                    let _ = send.write_all(&refuse("too many channels waiting")).await;
                    let _ = send.finish();
                    return;
                }
            };
        if send
            .write_all(&wire::prefixed(&Answer::Ready))
            .await
            .is_err()
        {
            return;
        }
        permit.send(ChannelStream {
            channel,
            header: Bytes::copy_from_slice(header.as_slice()),
            send,
            recv,
            share,
        });
    }
}
