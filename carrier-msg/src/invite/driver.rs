//! [`Invites`]: the thin async driver around the [`InviteTable`]. It owns the streams, the
//! extensions' inboxes and one timer task; every decision that takes time is the table's.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use carrier_friend::dht::bounded::BoundedBytes;
use carrier_friend::dht::id::CarrierId;
use carrier_friend::extension::ExtensionSendError;
use carrier_friend::quinn::{self, ReadError, ReadToEndError, RecvStream, SendStream};
use carrier_friend::{Extension, FriendEvent, Friends, Link};
use rand_core::{OsRng, RngCore};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::{JoinHandle, JoinSet};

use super::config::InviteConfig;
use super::error::InviteError;
use super::table::{
    Admission, Arrival, Expired, IncomingInvite, InviteId, InviteTable, ReplyRefusal,
};
use super::wire::{
    AnswerFrame, InviteFrame, MAX_ANSWER_FRAME_BYTES, MAX_BUNDLE_BYTES, MAX_EXTENSION_NAME_BYTES,
    MAX_INVITE_DATA_BYTES, MAX_INVITE_FRAME_BYTES, MAX_REASON_BYTES,
};
use crate::stream_kind::INVITE;

/// How long an inbound invite stream may take to deliver its whole frame.
pub const INVITE_FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// How much longer than its inviter's time left an invitee holds an unreplied invite, so
/// that the inviter's own clock decides its timeout (the time left travels in whole
/// milliseconds, and the two timers fire a little apart).
pub const HOLD_GRACE: Duration = Duration::from_secs(1);

/// How long an invite whose link just failed waits for a new link before it tries the one
/// the friend layer holds again (the friend layer may not have noticed the loss yet).
const LINK_RETRY: Duration = Duration::from_millis(250);
/// How often an invite waiting for an offline friend looks for its link besides following
/// the `Connected` events (a link can replace another without one).
const LINK_POLL: Duration = Duration::from_secs(1);

/// Application error codes an invite stream is reset or stopped with.
pub mod codes {
    use carrier_friend::quinn::VarInt;

    /// The invite frame was malformed, too long or late.
    pub const MALFORMED: VarInt = VarInt::from_u32(0x4d01);
    /// The invitee forgot the invite unreplied: its inviter's timeout passed.
    pub const EXPIRED: VarInt = VarInt::from_u32(0x4d02);
    /// The invitee's invites layer shut down.
    pub const SHUT_DOWN: VarInt = VarInt::from_u32(0x4d03);
}

/// The reply to an invite, as the invitee's application gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InviteReply {
    /// 0 confirms; anything else refuses (its meaning is the application's).
    pub status: i32,
    /// Why it was refused (empty when confirmed), at most
    /// [`MAX_REASON_BYTES`](super::MAX_REASON_BYTES).
    pub reason: String,
    /// The data of a confirmation (empty when refused), 1 to
    /// [`MAX_INVITE_DATA_BYTES`](super::MAX_INVITE_DATA_BYTES) bytes.
    pub data: Vec<u8>,
}

impl InviteReply {
    /// Whether the invitee confirmed (status 0).
    pub fn is_confirmed(&self) -> bool {
        self.status == 0
    }
}

/// The invites addressed to one extension on this node: what
/// [`Invites::register_extension`] gives. Dropping it unregisters the extension (invites
/// already raised stay pending and can still be replied to).
#[derive(Debug)]
pub struct InviteInbox {
    extension: String,
    receiver: mpsc::UnboundedReceiver<IncomingInvite>,
}

impl InviteInbox {
    /// The extension's name.
    pub fn extension(&self) -> &str {
        &self.extension
    }

    /// The next invite, or `None` once the invites layer is shut down.
    pub async fn recv(&mut self) -> Option<IncomingInvite> {
        self.receiver.recv().await
    }

    /// The next invite if one is waiting now.
    pub fn try_recv(&mut self) -> Option<IncomingInvite> {
        self.receiver.try_recv().ok()
    }
}

/// Invites between friends: see the [module](super). Cheap to clone; every clone is the same
/// layer.
#[derive(Clone)]
pub struct Invites {
    inner: Arc<Inner>,
}

impl fmt::Debug for Invites {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = lock(&self.inner.state);
        f.debug_struct("Invites")
            .field("closed", &state.closed)
            .field("extensions", &state.extensions.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

struct Inner {
    friends: Friends,
    config: InviteConfig,
    state: Mutex<State>,
    /// Re-arms the timer task when the table's next deadline may have moved earlier.
    wake: Arc<Notify>,
    timer: Mutex<Option<JoinHandle<()>>>,
    /// The tasks reading inbound invite frames.
    readers: Mutex<JoinSet<()>>,
}

#[derive(Debug, Default)]
struct State {
    closed: bool,
    table: InviteTable,
    /// The stream each pending incoming invite is answered on (the newest it came on).
    streams: HashMap<InviteId, SendStream>,
    /// Tells each outgoing invite that it timed out (dropped at shutdown).
    timeouts: HashMap<u64, oneshot::Sender<()>>,
    extensions: HashMap<String, mpsc::UnboundedSender<IncomingInvite>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The timer task holds only a weak handle: wake it so it sees the layer gone.
        self.wake.notify_one();
    }
}

fn now() -> Instant {
    // tokio's clock, so that tests may pause it.
    tokio::time::Instant::now().into_std()
}

/// How an attempt on one link ended without an answer.
enum Attempt {
    /// The link closed under it: try the next link.
    LinkLost,
    /// The invitee's node let go of the stream without an answer on it (it holds the same
    /// invite on a newer stream, or its read of this one failed): send it again, on
    /// whichever link is current. The invitee's table answers a repeat from what it holds.
    Unanswered,
    /// Anything else: the invite fails.
    Failed(InviteError),
}

impl From<ExtensionSendError> for Attempt {
    fn from(error: ExtensionSendError) -> Self {
        match error {
            ExtensionSendError::Connection(_) => Attempt::LinkLost,
            ExtensionSendError::Write(error) => error.into(),
            other => Attempt::Failed(InviteError::Stream(other.to_string())),
        }
    }
}

impl From<quinn::WriteError> for Attempt {
    fn from(error: quinn::WriteError) -> Self {
        match error {
            quinn::WriteError::ConnectionLost(_) => Attempt::LinkLost,
            other => Attempt::Failed(InviteError::Stream(other.to_string())),
        }
    }
}

impl From<ReadToEndError> for Attempt {
    fn from(error: ReadToEndError) -> Self {
        match error {
            ReadToEndError::Read(ReadError::ConnectionLost(_)) => Attempt::LinkLost,
            // The invitee's clock ran out on the time left we told it, before ours did.
            ReadToEndError::Read(ReadError::Reset(code)) if code == codes::EXPIRED => {
                Attempt::Failed(InviteError::Timeout)
            }
            other => Attempt::Failed(InviteError::Stream(other.to_string())),
        }
    }
}

pub(super) fn check_extension(name: &str) -> Result<(), InviteError> {
    if name.is_empty() {
        return Err(InviteError::EmptyExtension);
    }
    if name.len() > MAX_EXTENSION_NAME_BYTES {
        return Err(InviteError::ExtensionTooLong {
            len: name.len(),
            max: MAX_EXTENSION_NAME_BYTES,
        });
    }
    Ok(())
}

fn check_data(data: &[u8]) -> Result<(), InviteError> {
    if data.is_empty() {
        return Err(InviteError::EmptyData);
    }
    if data.len() > MAX_INVITE_DATA_BYTES {
        return Err(InviteError::DataTooLong {
            len: data.len(),
            max: MAX_INVITE_DATA_BYTES,
        });
    }
    Ok(())
}

/// The reply's frame, if its shape is one the original Carrier takes: status 0 with data
/// and no reason, or another status with a reason (possibly empty) and no data.
fn reply_frame(status: i32, reason: &str, data: &[u8]) -> Result<AnswerFrame, InviteError> {
    if reason.len() > MAX_REASON_BYTES {
        return Err(InviteError::ReasonTooLong {
            len: reason.len(),
            max: MAX_REASON_BYTES,
        });
    }
    if data.len() > MAX_INVITE_DATA_BYTES {
        return Err(InviteError::DataTooLong {
            len: data.len(),
            max: MAX_INVITE_DATA_BYTES,
        });
    }
    if status == 0 {
        if !reason.is_empty() {
            return Err(InviteError::ReasonOnConfirm);
        }
        check_data(data)?;
    } else if !data.is_empty() {
        return Err(InviteError::DataOnRefusal(status));
    }
    Ok(AnswerFrame::Reply {
        status,
        reason: BoundedBytes::from_slice(reason.as_bytes()).unwrap_or_default(),
        data: BoundedBytes::from_slice(data).unwrap_or_default(),
    })
}

impl Invites {
    /// The invites layer on `friends`. Spawns its timer task: call from within a tokio
    /// runtime. Inbound invite streams reach it through [`accept`](Self::accept).
    pub fn new(friends: Friends, config: InviteConfig) -> Invites {
        let wake = Arc::new(Notify::new());
        let inner = Arc::new(Inner {
            friends,
            config,
            state: Mutex::new(State::default()),
            wake: wake.clone(),
            timer: Mutex::new(None),
            readers: Mutex::new(JoinSet::new()),
        });
        let timer = tokio::spawn(run_timer(Arc::downgrade(&inner), wake));
        *lock(&inner.timer) = Some(timer);
        Invites { inner }
    }

    /// The settings.
    pub fn config(&self) -> &InviteConfig {
        &self.inner.config
    }

    /// Takes an inbound stream of `peer`'s whose kind byte (`INVITE`, 0x02) was already read:
    /// reads the invite frame (within [`INVITE_FRAME_TIMEOUT`]) and raises the invite in its
    /// extension's inbox, or answers it at once (no such extension, busy, or a reply given
    /// already). Returns at once; the work runs in a task.
    pub fn accept(&self, peer: CarrierId, send: SendStream, recv: RecvStream) {
        let inner = self.inner.clone();
        let mut readers = lock(&self.inner.readers);
        // Reap the readers that ended, so the set holds only the running ones.
        while readers.try_join_next().is_some() {}
        readers.spawn(async move { inner.take(peer, send, recv).await });
    }

    /// Invites friend `to` to its `extension` with `bundle` (at most [`MAX_BUNDLE_BYTES`])
    /// and `data` (1 to [`MAX_INVITE_DATA_BYTES`] bytes); resolves to the friend's reply.
    ///
    /// A friend offline now is invited as soon as its link is up. Resolves as
    /// [`InviteError::Timeout`] if no reply came within the [configured
    /// timeout](InviteConfig::with_timeout) (offline all along, or no answer), as
    /// [`InviteError::UnknownExtension`] at once if nobody registered `extension` on the
    /// friend's node. If the link closes under the invite, the invite is sent again on the
    /// next one; the friend raises it once.
    pub async fn invite(
        &self,
        to: &CarrierId,
        extension: &str,
        bundle: &[u8],
        data: &[u8],
    ) -> Result<InviteReply, InviteError> {
        check_extension(extension)?;
        if bundle.len() > MAX_BUNDLE_BYTES {
            return Err(InviteError::BundleTooLong {
                len: bundle.len(),
                max: MAX_BUNDLE_BYTES,
            });
        }
        check_data(data)?;
        let friends = &self.inner.friends;
        if *to == friends.id() {
            return Err(InviteError::Yourself);
        }
        if !friends.is_friend(to) {
            return Err(InviteError::NotAFriend(*to));
        }
        let (key, deadline, timed_out) = self.inner.start_outgoing()?;
        let _finish = FinishOutgoing {
            inner: &self.inner,
            key,
        };
        let frame = OutgoingInvite {
            tag: OsRng.next_u64(),
            deadline,
            extension: BoundedBytes::from_slice(extension.as_bytes()).unwrap_or_default(),
            bundle: BoundedBytes::from_slice(bundle).unwrap_or_default(),
            data: BoundedBytes::from_slice(data).unwrap_or_default(),
        };
        tokio::select! {
            biased;
            fired = timed_out => Err(match fired {
                Ok(()) => InviteError::Timeout,
                Err(_) => InviteError::Closed,
            }),
            answer = self.inner.deliver(*to, &frame) => match answer? {
                AnswerFrame::Reply { status, reason, data } => Ok(InviteReply {
                    status,
                    reason: String::from_utf8(reason.into_vec()).unwrap_or_default(),
                    data: data.into_vec(),
                }),
                AnswerFrame::NoExtension => Err(InviteError::UnknownExtension {
                    friend: *to,
                    extension: extension.to_owned(),
                }),
                AnswerFrame::Busy => Err(InviteError::Busy(*to)),
            },
        }
    }

    /// The inbox of the invites addressed to `name` (1 to [`MAX_EXTENSION_NAME_BYTES`]
    /// bytes). One per name; registering it again takes dropping the first inbox.
    pub fn register_extension(&self, name: &str) -> Result<InviteInbox, InviteError> {
        check_extension(name)?;
        let mut state = lock(&self.inner.state);
        if state.closed {
            return Err(InviteError::Closed);
        }
        if state
            .extensions
            .get(name)
            .is_some_and(|sender| !sender.is_closed())
        {
            return Err(InviteError::AlreadyRegistered(name.to_owned()));
        }
        let (sender, receiver) = mpsc::unbounded_channel();
        state.extensions.insert(name.to_owned(), sender);
        Ok(InviteInbox {
            extension: name.to_owned(),
            receiver,
        })
    }

    /// Replies to the pending invite `id`: `status` 0 confirms with `data` (1 to
    /// [`MAX_INVITE_DATA_BYTES`] bytes) and no reason; any other status refuses with
    /// `reason` (at most [`MAX_REASON_BYTES`], may be empty) and no data. Returns once the
    /// inviter's node has received the reply.
    ///
    /// Each invite is replied to once ([`InviteError::AlreadyReplied`] after);
    /// [`InviteError::InviterGone`] means the invite's stream is gone (its link closed, or
    /// the inviter gave up): the reply is kept, and sent if the inviter sends the invite
    /// again on a new link before its timeout.
    pub async fn reply_invite(
        &self,
        id: InviteId,
        status: i32,
        reason: &str,
        data: &[u8],
    ) -> Result<(), InviteError> {
        let answer = reply_frame(status, reason, data)?.encode();
        let stream = {
            let mut state = lock(&self.inner.state);
            if state.closed {
                return Err(InviteError::Closed);
            }
            match state.table.reply(now(), id, answer.clone()) {
                Ok(()) => {}
                Err(ReplyRefusal::Unknown) => return Err(InviteError::UnknownInvite(id)),
                Err(ReplyRefusal::AlreadyReplied) => return Err(InviteError::AlreadyReplied(id)),
            }
            state.streams.remove(&id)
        };
        let Some(send) = stream else {
            return Err(InviteError::InviterGone(id));
        };
        match write_answer(send, &answer).await {
            true => Ok(()),
            false => Err(InviteError::InviterGone(id)),
        }
    }

    /// The invites received and not yet replied to, oldest first (for every extension, and
    /// those of an extension whose inbox was dropped).
    pub fn pending(&self) -> Vec<IncomingInvite> {
        lock(&self.inner.state).table.pending(now())
    }

    /// Stops: every invite waiting for a reply resolves as [`InviteError::Closed`], every
    /// pending incoming invite's stream is reset, the inboxes end, and later calls are
    /// refused. Waits until the layer's tasks have ended.
    ///
    /// The layer keeps a [`Friends`] handle until its last clone is dropped: drop every
    /// `Invites` too before starting a node again on the same data directory.
    pub async fn shutdown(&self) {
        {
            let mut state = lock(&self.inner.state);
            state.closed = true;
            state.table.clear();
            state.timeouts.clear();
            state.extensions.clear();
            for (_, mut send) in state.streams.drain() {
                // The stream may be gone already; nobody to tell then.
                let _ = send.reset(codes::SHUT_DOWN);
            }
        }
        let mut readers = std::mem::take(&mut *lock(&self.inner.readers));
        readers.shutdown().await;
        let timer = lock(&self.inner.timer).take();
        if let Some(timer) = timer {
            timer.abort();
            // Aborted: it ends as cancelled, which is what was asked.
            let _ = timer.await;
        }
    }
}

/// An invite on its way: what each attempt encodes, with the time left.
struct OutgoingInvite {
    tag: u64,
    deadline: Instant,
    extension: BoundedBytes<MAX_EXTENSION_NAME_BYTES>,
    bundle: BoundedBytes<MAX_BUNDLE_BYTES>,
    data: BoundedBytes<MAX_INVITE_DATA_BYTES>,
}

impl OutgoingInvite {
    /// The kind byte and the frame, telling the invitee the time left now.
    fn encode(&self) -> Vec<u8> {
        let left = self.deadline.saturating_duration_since(now());
        let frame = InviteFrame::V1 {
            tag: self.tag,
            timeout_ms: u32::try_from(left.as_millis()).unwrap_or(u32::MAX),
            extension: self.extension.clone(),
            bundle: self.bundle.clone(),
            data: self.data.clone(),
        };
        let mut bytes = vec![INVITE];
        bytes.extend_from_slice(&frame.encode());
        bytes
    }
}

/// Gives an outgoing invite's deadline back to the table however the invite ends.
struct FinishOutgoing<'a> {
    inner: &'a Inner,
    key: u64,
}

impl Drop for FinishOutgoing<'_> {
    fn drop(&mut self) {
        let mut state = lock(&self.inner.state);
        state.table.finish_outgoing(self.key);
        state.timeouts.remove(&self.key);
    }
}

impl Inner {
    fn start_outgoing(&self) -> Result<(u64, Instant, oneshot::Receiver<()>), InviteError> {
        let (fire, timed_out) = oneshot::channel();
        let now = now();
        let mut state = lock(&self.state);
        if state.closed {
            return Err(InviteError::Closed);
        }
        let key = state.table.start_outgoing(now, self.config.timeout());
        state.timeouts.insert(key, fire);
        drop(state);
        self.wake.notify_one();
        Ok((key, now + self.config.timeout(), timed_out))
    }

    /// Sends the invite on `to`'s link, waiting for one while `to` is offline, and again on
    /// the next link whenever the link closes under it; the invitee's answer.
    async fn deliver(
        &self,
        to: CarrierId,
        invite: &OutgoingInvite,
    ) -> Result<AnswerFrame, InviteError> {
        // Subscribed before looking at the link, so a link that comes up in between is seen.
        let mut events = self.friends.subscribe();
        let mut failed: Option<usize> = None;
        loop {
            let link = self
                .friends
                .link(&to)
                .filter(|link| Some(link.connection().stable_id()) != failed);
            let Some(link) = link else {
                if !self.friends.is_friend(&to) {
                    return Err(InviteError::NotAFriend(to));
                }
                // Wait for the link: a `Connected` event, or a moment to look again at a
                // link that replaced the failed one without an event.
                let wait = if failed.is_some() {
                    LINK_RETRY
                } else {
                    LINK_POLL
                };
                match wait_for_link(&mut events, to, wait).await {
                    LinkWait::Maybe => continue,
                    LinkWait::Removed => return Err(InviteError::NotAFriend(to)),
                }
            };
            match attempt(&link, invite).await {
                Ok(answer) => return Ok(answer),
                Err(Attempt::LinkLost) => failed = Some(link.connection().stable_id()),
                Err(Attempt::Unanswered) => {
                    // Bounded by the invite's own timeout, which wraps this loop.
                    tokio::time::sleep(LINK_RETRY).await;
                    failed = None;
                }
                Err(Attempt::Failed(error)) => return Err(error),
            }
        }
    }

    /// An inbound invite stream, its kind byte read.
    async fn take(self: Arc<Self>, peer: CarrierId, mut send: SendStream, mut recv: RecvStream) {
        let read = tokio::time::timeout(
            INVITE_FRAME_TIMEOUT,
            recv.read_to_end(MAX_INVITE_FRAME_BYTES),
        )
        .await;
        let frame = match read {
            Ok(Ok(bytes)) => InviteFrame::decode(&bytes).ok(),
            // The inviter gave up or the link closed: nobody to answer.
            Ok(Err(ReadToEndError::Read(_))) => return,
            Ok(Err(ReadToEndError::TooLong)) | Err(_) => None,
        };
        let Some(InviteFrame::V1 {
            tag,
            timeout_ms,
            extension,
            bundle,
            data,
        }) = frame
        else {
            let _ = recv.stop(codes::MALFORMED);
            let _ = send.reset(codes::MALFORMED);
            return;
        };
        // Checked by the decoder.
        let extension = String::from_utf8(extension.into_vec()).unwrap_or_default();
        let answer = {
            let mut state = lock(&self.state);
            if state.closed {
                let _ = send.reset(codes::SHUT_DOWN);
                return;
            }
            let inbox = state
                .extensions
                .get(&extension)
                .filter(|sender| !sender.is_closed())
                .cloned();
            match inbox {
                None => {
                    state.extensions.remove(&extension);
                    AnswerFrame::NoExtension.encode()
                }
                Some(inbox) => {
                    let timeout = Duration::from_millis(timeout_ms.into()) + HOLD_GRACE;
                    let arrival = Arrival {
                        from: peer,
                        tag,
                        timeout,
                        extension,
                        bundle: bundle.into_vec(),
                        data: data.into_vec(),
                    };
                    let admission = state.table.admit(now(), arrival);
                    match admission {
                        Admission::New(invite) => {
                            let id = invite.id;
                            if inbox.send(invite).is_ok() {
                                state.streams.insert(id, send);
                                drop(state);
                                self.wake.notify_one();
                                return;
                            }
                            // The inbox was dropped just now: as if it never was.
                            let answer = AnswerFrame::NoExtension.encode();
                            let _ = state.table.reply(now(), id, answer.clone());
                            answer
                        }
                        Admission::Again(id) => {
                            // The older stream's link is gone or going: answer on this one.
                            state.streams.insert(id, send);
                            return;
                        }
                        Admission::Replay(answer) => answer,
                        Admission::Busy => AnswerFrame::Busy.encode(),
                    }
                }
            }
        };
        write_answer(send, &answer).await;
    }

    /// Resolves the outgoing invites whose time is up and forgets the incoming ones; when to
    /// come back.
    fn expire(&self) -> Option<Instant> {
        let mut state = lock(&self.state);
        for expired in state.table.handle_timeout(now()) {
            match expired {
                Expired::Outgoing(key) => {
                    if let Some(fire) = state.timeouts.remove(&key) {
                        // The invite may have just been answered: then nobody listens.
                        let _ = fire.send(());
                    }
                }
                Expired::Incoming(id) => {
                    if let Some(mut send) = state.streams.remove(&id) {
                        let _ = send.reset(codes::EXPIRED);
                    }
                }
            }
        }
        state.table.poll_timeout()
    }
}

/// One attempt on one link: opens the stream, writes the invite, reads the answer.
async fn attempt(link: &Link, invite: &OutgoingInvite) -> Result<AnswerFrame, Attempt> {
    let (mut send, mut recv) = link.open_bi(Extension::MSG).await?;
    send.write_all(&invite.encode()).await?;
    // Only fails if the stream was reset already, which a later read reports.
    let _ = send.finish();
    let bytes = recv.read_to_end(MAX_ANSWER_FRAME_BYTES).await?;
    // Every answer is a frame of at least one byte: an end with nothing is no answer.
    if bytes.is_empty() {
        return Err(Attempt::Unanswered);
    }
    AnswerFrame::decode(&bytes)
        .map_err(|error| Attempt::Failed(InviteError::Stream(format!("the answer: {error}"))))
}

enum LinkWait {
    /// A link may be there now: look.
    Maybe,
    /// The friend was removed.
    Removed,
}

/// Waits for `to`'s `Connected` event, at most `poll`.
async fn wait_for_link(
    events: &mut carrier_friend::FriendEvents,
    to: CarrierId,
    poll: Duration,
) -> LinkWait {
    let until = tokio::time::Instant::now() + poll;
    loop {
        match tokio::time::timeout_at(until, events.recv()).await {
            Ok(Some(FriendEvent::Connected(id))) if id == to => return LinkWait::Maybe,
            Ok(Some(FriendEvent::Removed(id))) if id == to => return LinkWait::Removed,
            Ok(Some(_)) => {}
            // The friend layer stopped: no link will come; the invite's timeout ends it.
            Ok(None) => std::future::pending::<()>().await,
            Err(_) => return LinkWait::Maybe,
        }
    }
}

/// Writes `answer` and finishes the stream; whether the inviter's node received it all.
async fn write_answer(mut send: SendStream, answer: &[u8]) -> bool {
    if send.write_all(answer).await.is_err() || send.finish().is_err() {
        return false;
    }
    matches!(send.stopped().await, Ok(None))
}

/// The timer: wakes at the table's next deadline, or when told it moved, until the layer is
/// dropped or shut down.
async fn run_timer(inner: Weak<Inner>, wake: Arc<Notify>) {
    loop {
        let next = match inner.upgrade() {
            Some(inner) => inner.expire(),
            None => return,
        };
        match next {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(tokio::time::Instant::from_std(at)) => {}
                    () = wake.notified() => {}
                }
            }
            None => wake.notified().await,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_has_the_originals_shape() {
        assert!(reply_frame(0, "", b"d").is_ok());
        assert!(matches!(
            reply_frame(0, "", b""),
            Err(InviteError::EmptyData)
        ));
        assert!(matches!(
            reply_frame(0, "why", b"d"),
            Err(InviteError::ReasonOnConfirm)
        ));
        assert!(reply_frame(-1, "busy", b"").is_ok());
        assert!(reply_frame(-1, "", b"").is_ok());
        assert!(matches!(
            reply_frame(7, "no", b"d"),
            Err(InviteError::DataOnRefusal(7))
        ));
        let long = "r".repeat(MAX_REASON_BYTES + 1);
        assert!(matches!(
            reply_frame(1, &long, b""),
            Err(InviteError::ReasonTooLong { len: 256, max: 255 })
        ));
        assert!(reply_frame(1, &long[1..], b"").is_ok());
        let big = vec![0; MAX_INVITE_DATA_BYTES + 1];
        assert!(matches!(
            reply_frame(0, "", &big),
            Err(InviteError::DataTooLong {
                len: 8193,
                max: 8192
            })
        ));
        assert!(reply_frame(0, "", &big[1..]).is_ok());
    }

    #[test]
    fn extension_names_are_one_to_31_bytes() {
        assert!(matches!(
            check_extension(""),
            Err(InviteError::EmptyExtension)
        ));
        assert!(check_extension(&"e".repeat(31)).is_ok());
        assert!(matches!(
            check_extension(&"e".repeat(32)),
            Err(InviteError::ExtensionTooLong { len: 32, max: 31 })
        ));
    }
}
