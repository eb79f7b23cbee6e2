//! [`Mux`]: channels over one multiplexed reliable stream; [`ChannelRequests`] and
//! [`ChannelRequest`]s from the friend; the tasks that carry the control frames.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use carrier_stream::msg::friend::dht::bounded::BoundedBytes;
use carrier_stream::msg::friend::quinn::{RecvStream, SendStream, VarInt};
use carrier_stream::{
    ChannelOpener, IncomingChannels, LinkShare, Session, Stream, StreamKind, StreamState,
};
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::mpsc;

use crate::channel::Channel;
use crate::config::MuxConfig;
use crate::error::{CloseReason, MuxError};
use crate::event::{ChannelId, MuxEvent};
use crate::report::{ChannelChange, Reporter};
use crate::state::{ChannelShared, MuxLife, MuxShared};
use crate::wire::{self, Control, Hello, Reply, MAX_COOKIE_BYTES};

/// The QUIC code a channel's stream is stopped with when its request was refused, dropped
/// unanswered or its header was malformed; never renumbered.
const REFUSED_CODE: VarInt = VarInt::from_u32(0x4d10);

/// Channels over one multiplexed reliable stream of a session: either side opens them with a
/// cookie ([`open_channel`](Self::open_channel)), the other's application accepts or refuses
/// them ([`ChannelRequests`]), and each is a QUIC stream of its own, so a slow or pended
/// channel never holds up another. Cheap to clone; it runs while any clone, its
/// [`ChannelRequests`] or one of its channels lives.
#[derive(Clone, Debug)]
pub struct Mux {
    life: Arc<MuxLife>,
    opener: ChannelOpener,
    next: Arc<AtomicU32>,
    parity: u32,
}

impl Mux {
    /// Adds a multiplexed stream to `session` and runs channels over it: the friend gets it
    /// as a [`SessionEvent::Stream`](carrier_stream::SessionEvent::Stream) and takes it with
    /// [`accept`](Self::accept). Returns the mux and the channels the friend opens.
    pub async fn open(
        session: &Session,
        config: MuxConfig,
    ) -> Result<(Mux, ChannelRequests), MuxError> {
        let stream = session
            .add_multiplexed_stream(StreamKind::Application)
            .await?;
        Self::start(stream, config, 0)
    }

    /// Runs channels over `stream`, a multiplexed stream the friend added (the session's
    /// [`SessionEvent::Stream`](carrier_stream::SessionEvent::Stream));
    /// [`MuxError::WrongState`] if it is not multiplexed.
    pub fn accept(stream: Stream, config: MuxConfig) -> Result<(Mux, ChannelRequests), MuxError> {
        if !stream.is_multiplexed() {
            return Err(MuxError::WrongState(format!(
                "stream {} is not multiplexed",
                stream.id()
            )));
        }
        Self::start(stream, config, 1)
    }

    fn start(
        mut stream: Stream,
        config: MuxConfig,
        parity: u32,
    ) -> Result<(Mux, ChannelRequests), MuxError> {
        let opener = stream.channel_opener()?;
        let incoming = stream.incoming_channels()?;
        let (control, frames) = mpsc::unbounded_channel();
        let reporter = Reporter {
            to: config.reports().cloned(),
            peer: stream.peer(),
            session: stream.session_id(),
            stream: stream.id(),
        };
        let shared = MuxShared::new(config, control, reporter);
        let ended = stream.ended();
        let (reader, writer) = tokio::io::split(stream);
        let tasks = vec![
            tokio::spawn(write_control(shared.clone(), writer, frames)).abort_handle(),
            tokio::spawn(read_control(shared.clone(), reader, ended)).abort_handle(),
        ];
        let life = Arc::new(MuxLife { shared, tasks });
        let mux = Mux {
            life: life.clone(),
            opener,
            next: Arc::new(AtomicU32::new(0)),
            parity,
        };
        let requests = ChannelRequests { life, incoming };
        Ok((mux, requests))
    }

    fn shared(&self) -> &MuxShared {
        &self.life.shared
    }

    fn check_gone(&self) -> Result<(), MuxError> {
        match self.shared().gone() {
            Some(why) => Err(MuxError::Gone(why)),
            None => Ok(()),
        }
    }

    /// Opens a channel with `cookie` (at most [`MAX_COOKIE_BYTES`]): resolves once the
    /// friend's application accepted it, or to its refusal ([`MuxError::Refused`] with its
    /// reason), within the open timeout ([`MuxError::Timeout`]).
    pub async fn open_channel(&self, cookie: &[u8]) -> Result<Channel, MuxError> {
        let hello = Hello {
            cookie: BoundedBytes::from_slice(cookie).map_err(|_| MuxError::CookieTooLong {
                len: cookie.len(),
                max: MAX_COOKIE_BYTES,
            })?,
            credit: self.shared().config.credit(),
        };
        self.check_gone()?;
        let id = self.next.fetch_add(1, Ordering::Relaxed).wrapping_mul(2) + self.parity;
        // In the table before the friend can pend it or grant credit on it.
        let channel = ChannelShared::new(0);
        crate::state::lock(&self.shared().channels).insert(id, channel.clone());
        let timeout = self.shared().config.open_timeout();
        let opened = tokio::time::timeout(timeout, self.open_once(id, &hello)).await;
        let ((send, recv, share), reply) = match opened {
            Ok(Ok(opened)) => opened,
            Ok(Err(error)) => {
                self.shared().forget(id);
                return Err(error);
            }
            Err(_) => {
                self.shared().forget(id);
                return Err(MuxError::Timeout(
                    "the friend did not answer the channel open".into(),
                ));
            }
        };
        match reply {
            Reply::Accepted { credit } => {
                channel.update(false, |state| state.credit.grant(u64::from(credit)));
                self.shared().reporter.report(
                    ChannelId(id),
                    ChannelChange::Opened {
                        cookie: Bytes::copy_from_slice(cookie),
                        by_friend: false,
                    },
                );
                Ok(Channel::new(
                    ChannelId(id),
                    Bytes::copy_from_slice(cookie),
                    self.life.clone(),
                    channel,
                    send,
                    recv,
                    share,
                ))
            }
            Reply::Refused(reason) => {
                self.shared().forget(id);
                let reason = wire::reason_text(&reason);
                self.shared().reporter.report(
                    ChannelId(id),
                    ChannelChange::Refused {
                        cookie: Bytes::copy_from_slice(cookie),
                        by_friend: false,
                        reason: reason.clone(),
                    },
                );
                Err(MuxError::Refused(reason))
            }
        }
    }

    /// Opens channel `id` and reads the friend's answer.
    async fn open_once(&self, id: u32, hello: &Hello) -> Result<(Parts, Reply), MuxError> {
        let stream = self.opener.open(id, &wire::encode(hello)).await?;
        let (send, mut recv, share) = stream.into_parts();
        let reply = wire::read_frame::<Reply>(&mut recv)
            .await
            .map_err(|e| MuxError::Refused(format!("no answer: {e}")))?
            .ok_or_else(|| {
                MuxError::Refused("the friend's application did not answer the channel".into())
            })?;
        Ok(((send, recv, share), reply))
    }

    /// Asks the friend to pause sending on `channel`: its writer stops as soon as this
    /// arrives (its writes wait) and it gets [`MuxEvent::Pending`].
    pub async fn pend(&self, channel: ChannelId) -> Result<(), MuxError> {
        self.control(channel, Control::Pend { channel: channel.0 })
    }

    /// Lets the friend go on sending on `channel`; it gets [`MuxEvent::Resumed`].
    pub async fn resume(&self, channel: ChannelId) -> Result<(), MuxError> {
        self.control(channel, Control::Resume { channel: channel.0 })
    }

    fn control(&self, channel: ChannelId, frame: Control) -> Result<(), MuxError> {
        self.check_gone()?;
        if self.shared().channel(channel.0).is_none() {
            return Err(MuxError::UnknownChannel(channel.0));
        }
        self.shared().send(frame);
        Ok(())
    }

    /// The next event about this mux's channels; `None` once the multiplexed stream is gone
    /// and every event was taken.
    pub async fn next_event(&self) -> Option<MuxEvent> {
        let mut inbox = self.shared().event_inbox.lock().await;
        if let Ok(event) = inbox.try_recv() {
            return Some(event);
        }
        if self.shared().gone().is_some() {
            // Every event of the loss was queued before the mux counted as gone: take what
            // arrived since the first look.
            return inbox.try_recv().ok();
        }
        inbox.recv().await
    }

    /// Channels open now (opened or accepted, not yet closed here).
    pub fn open_channels(&self) -> usize {
        crate::state::lock(&self.shared().channels).len()
    }

    /// Why the multiplexed stream is gone, if it is: every channel closed with
    /// [`CloseReason::Lost`] then.
    pub fn gone(&self) -> Option<String> {
        self.shared().gone()
    }
}

/// A channel's QUIC stream and its share of the link.
type Parts = (SendStream, RecvStream, LinkShare);

/// The channels the friend opens on a mux, for the application to accept or refuse.
#[derive(Debug)]
pub struct ChannelRequests {
    life: Arc<MuxLife>,
    incoming: IncomingChannels,
}

impl ChannelRequests {
    /// The next channel the friend opened; `None` once the multiplexed stream is gone.
    pub async fn recv(&mut self) -> Option<ChannelRequest> {
        loop {
            let stream = self.incoming.recv().await?;
            let id = stream.channel();
            let hello = wire::decode::<Hello>(stream.header());
            let (mut send, mut recv, share) = stream.into_parts();
            let shared = &self.life.shared;
            let taken = crate::state::lock(&shared.channels).contains_key(&id);
            match hello {
                // The friend's IDs have the other parity; it cannot reuse an open one.
                Ok(hello) if !taken => {
                    return Some(ChannelRequest {
                        life: self.life.clone(),
                        id,
                        cookie: Bytes::from(hello.cookie.into_vec()),
                        credit: hello.credit,
                        parts: Some((send, recv, share)),
                    })
                }
                _ => {
                    let _ = send.finish();
                    let _ = recv.stop(REFUSED_CODE);
                }
            }
        }
    }
}

/// A channel the friend opened, for the application to [`accept`](Self::accept) or
/// [`refuse`](Self::refuse). Dropped unanswered, it is refused (the friend's open fails).
#[derive(Debug)]
pub struct ChannelRequest {
    life: Arc<MuxLife>,
    id: u32,
    cookie: Bytes,
    credit: u32,
    parts: Option<Parts>,
}

impl ChannelRequest {
    /// The channel's ID.
    pub fn id(&self) -> ChannelId {
        ChannelId(self.id)
    }

    /// The cookie the friend opened the channel with.
    pub fn cookie(&self) -> &[u8] {
        &self.cookie
    }

    /// Accepts: the channel is open on both sides once the friend reads the answer.
    pub async fn accept(mut self) -> Result<Channel, MuxError> {
        let Some((mut send, recv, share)) = self.parts.take() else {
            return Err(MuxError::WrongState("answered already".into()));
        };
        let shared = &self.life.shared;
        if let Some(why) = shared.gone() {
            return Err(MuxError::Gone(why));
        }
        let channel = ChannelShared::new(u64::from(self.credit));
        crate::state::lock(&shared.channels).insert(self.id, channel.clone());
        let reply = Reply::Accepted {
            credit: shared.config.credit(),
        };
        if let Err(error) = send.write_all(&wire::prefixed(&reply)).await {
            shared.forget(self.id);
            return Err(MuxError::Gone(format!("the channel's answer: {error}")));
        }
        shared.reporter.report(
            ChannelId(self.id),
            ChannelChange::Opened {
                cookie: self.cookie.clone(),
                by_friend: true,
            },
        );
        Ok(Channel::new(
            ChannelId(self.id),
            self.cookie.clone(),
            self.life.clone(),
            channel,
            send,
            recv,
            share,
        ))
    }

    /// Refuses with `reason` (at most [`MAX_REASON_BYTES`](crate::MAX_REASON_BYTES) are
    /// sent); the friend's [`open_channel`](Mux::open_channel) fails with
    /// [`MuxError::Refused`] and the reason.
    pub async fn refuse(mut self, reason: &str) -> Result<(), MuxError> {
        let Some((mut send, mut recv, _share)) = self.parts.take() else {
            return Err(MuxError::WrongState("answered already".into()));
        };
        let reply = Reply::Refused(wire::reason(reason));
        send.write_all(&wire::prefixed(&reply))
            .await
            .map_err(|e| MuxError::Gone(format!("the channel's answer: {e}")))?;
        let _ = send.finish();
        let _ = recv.stop(REFUSED_CODE);
        self.life.shared.reporter.report(
            ChannelId(self.id),
            ChannelChange::Refused {
                cookie: self.cookie.clone(),
                by_friend: true,
                reason: wire::reason_text(&wire::reason(reason)),
            },
        );
        Ok(())
    }
}

impl Drop for ChannelRequest {
    fn drop(&mut self) {
        if let Some((mut send, mut recv, _)) = self.parts.take() {
            // Finished, not reset: a reset could overtake the node's own answer to the open.
            let _ = send.finish();
            let _ = recv.stop(REFUSED_CODE);
        }
    }
}

/// Writes the queued control frames on the multiplexed stream.
async fn write_control(
    shared: Arc<MuxShared>,
    mut writer: WriteHalf<Stream>,
    mut frames: mpsc::UnboundedReceiver<Control>,
) {
    let mut batch = Vec::new();
    while let Some(frame) = frames.recv().await {
        batch.clear();
        batch.extend(wire::prefixed(&frame));
        // Frames queued meanwhile go in the same write.
        while batch.len() < 64 * 1024 {
            match frames.try_recv() {
                Ok(frame) => batch.extend(wire::prefixed(&frame)),
                Err(_) => break,
            }
        }
        if let Err(error) = writer.write_all(&batch).await {
            shared.lose(&format!("the multiplexed stream failed: {error}"));
            return;
        }
    }
}

/// Reads the friend's control frames from the multiplexed stream and applies them; its end
/// or failure, or the stream's (its session closed, its link lost), loses every channel.
async fn read_control(
    shared: Arc<MuxShared>,
    mut reader: ReadHalf<Stream>,
    ended: impl std::future::Future<Output = StreamState>,
) {
    let mut ended = std::pin::pin!(ended);
    loop {
        let read = tokio::select! {
            read = wire::read_frame::<Control>(&mut reader) => read,
            state = &mut ended => {
                let why = match state {
                    StreamState::Failed(reason) => reason,
                    _ => "the multiplexed stream closed with its session".to_owned(),
                };
                shared.lose(&why);
                return;
            }
        };
        let frame = match read {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                shared.lose("the friend ended the multiplexed stream");
                return;
            }
            Err(error) => {
                shared.lose(&format!("the multiplexed stream failed: {error}"));
                return;
            }
        };
        apply(&shared, frame);
    }
}

/// One control frame from the friend; a frame about a channel that is not open here is
/// late (it closed here meanwhile) and ignored.
fn apply(shared: &MuxShared, frame: Control) {
    match frame {
        Control::Pend { channel } => {
            if let Some(state) = shared.channel(channel) {
                state.update(false, |s| s.paused = true);
                shared.emit(MuxEvent::Pending(ChannelId(channel)));
            }
        }
        Control::Resume { channel } => {
            if let Some(state) = shared.channel(channel) {
                state.update(false, |s| s.paused = false);
                shared.emit(MuxEvent::Resumed(ChannelId(channel)));
            }
        }
        Control::Credit { channel, limit } => {
            if let Some(state) = shared.channel(channel) {
                state.update(false, |s| s.credit.grant(limit));
            }
        }
        Control::Close { channel, code } => {
            if let Some(state) = shared.channel(channel) {
                let reason = CloseReason::from_code(code);
                let mut newly = false;
                state.update(false, |s| {
                    if s.closed.is_none() {
                        s.closed = Some(reason.clone());
                        newly = true;
                    }
                });
                if newly {
                    shared.emit(MuxEvent::Closed(ChannelId(channel), reason));
                }
            }
        }
    }
}
