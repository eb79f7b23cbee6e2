//! What applications hold: [`Session`] and its [`SessionEvent`]s, [`SessionRequest`]s from
//! friends and the [`SessionRequests`] of a bundle prefix.

use std::sync::Arc;

use carrier_msg::friend::dht::id::CarrierId;
use carrier_msg::invite::InviteId;
use tokio::sync::mpsc;

use super::info::{transport_info, TransportInfo};
use super::report::SessionReport;
use super::{status, Core, SessionShared, Status};
use crate::error::StreamError;
use crate::stream::{Stream, StreamKind, StreamMode};
use crate::wire::{self, Accept, Resume};

/// What happens to a session, in order.
#[derive(Debug)]
#[non_exhaustive]
pub enum SessionEvent {
    /// The friend added a stream.
    Stream(Stream),
    /// The friend's link went down: the session's streams failed, and new ones wait for the
    /// link to return within the grace period.
    Deactivated,
    /// The link came back within the grace period and the friend confirmed the session (it
    /// kept it, or its node restarted and its handler took it back as a resume): the session
    /// takes new streams again.
    Reactivated,
    /// The session closed (by either side, or its grace period ended), with the reason.
    Closed(String),
}

/// A session's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// The friend's link is up: streams may be added.
    Active,
    /// The link is down; the session waits for it within its grace period.
    Deactivated,
    /// Closed, with the reason.
    Closed(String),
}

/// Closes the session when the last handle goes.
#[derive(Debug)]
struct LastHandle {
    core: Arc<Core>,
    shared: Arc<SessionShared>,
}

impl Drop for LastHandle {
    fn drop(&mut self) {
        if matches!(self.shared.status(), Status::Closed(_)) {
            return;
        }
        let key = (self.shared.peer, self.shared.id);
        let reason = "the session's last handle was dropped";
        self.core.close_here(&key, reason);
        let core = self.core.clone();
        if tokio::runtime::Handle::try_current().is_ok() {
            self.core
                .spawn(async move { core.send_close(key.0, key.1, reason).await });
        }
    }
}

/// A session with a friend: streams in either mode, its events, its transport. Cheap to
/// clone; closed by [`close`](Self::close), by the friend, when its grace period ends, or
/// when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct Session {
    core: Arc<Core>,
    shared: Arc<SessionShared>,
    _last: Arc<LastHandle>,
}

impl Session {
    pub(crate) fn new(core: Arc<Core>, shared: Arc<SessionShared>) -> Self {
        shared
            .established
            .store(true, std::sync::atomic::Ordering::SeqCst);
        core.reporter.report(SessionReport::Opened {
            peer: shared.peer,
            session: shared.id,
            bundle: shared.bundle.clone(),
            requester: shared.initiator,
        });
        let last = Arc::new(LastHandle {
            core: core.clone(),
            shared: shared.clone(),
        });
        Session {
            core,
            shared,
            _last: last,
        }
    }

    /// The session's ID (drawn by its requester).
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The friend on the other side.
    pub fn peer(&self) -> CarrierId {
        self.shared.peer
    }

    /// The bundle the session was requested for.
    pub fn bundle(&self) -> &str {
        &self.shared.bundle
    }

    /// Whether this node requested the session.
    pub fn is_requester(&self) -> bool {
        self.shared.initiator
    }

    /// The session's state now.
    pub fn state(&self) -> SessionState {
        match self.shared.status() {
            Status::Active => SessionState::Active,
            Status::Deactivated => SessionState::Deactivated,
            Status::Closed(reason) => SessionState::Closed(reason),
        }
    }

    /// Adds a stream of `kind` in `mode`: resolves once the friend holds it too (the stream
    /// is `Connected`), or fails within the open timeout. A deactivated session is waited
    /// for within that timeout (its link may be between two connections), then the open
    /// fails with [`StreamError::WrongState`]. The friend gets it as
    /// [`SessionEvent::Stream`].
    pub async fn add_stream(
        &self,
        kind: StreamKind,
        mode: StreamMode,
    ) -> Result<Stream, StreamError> {
        self.core.open_stream(&self.shared, kind, mode, false).await
    }

    /// Adds a reliable stream of `kind` with channels multiplexed on it, as
    /// [`add_stream`](Self::add_stream) does: both sides may open channels on it
    /// ([`Stream::channel_opener`], [`Stream::incoming_channels`]), each a QUIC stream of its
    /// own on the friend's link. The hook for carrier-mux; the friend gets it as
    /// [`SessionEvent::Stream`] with [`Stream::is_multiplexed`] true.
    pub async fn add_multiplexed_stream(&self, kind: StreamKind) -> Result<Stream, StreamError> {
        self.core
            .open_stream(&self.shared, kind, StreamMode::Reliable, true)
            .await
    }

    /// The next event; `None` once the session closed and every event was taken.
    pub async fn next_event(&self) -> Option<SessionEvent> {
        let mut inbox = self.shared.inbox.lock().await;
        if let Ok(event) = inbox.try_recv() {
            return Some(event);
        }
        if matches!(self.shared.status(), Status::Closed(_)) {
            return None;
        }
        inbox.recv().await
    }

    /// The next stream the friend added, skipping other events; `None` once the session
    /// closed.
    pub async fn accept_stream(&self) -> Option<Stream> {
        loop {
            match self.next_event().await? {
                SessionEvent::Stream(stream) => return Some(stream),
                SessionEvent::Closed(_) => return None,
                _ => continue,
            }
        }
    }

    /// Closes the session here and tells the friend, with `reason` (at most 255 bytes are
    /// sent); its streams close on both sides.
    pub async fn close(&self, reason: &str) -> Result<(), StreamError> {
        if let Status::Closed(_) = self.shared.status() {
            return Err(StreamError::UnknownSession(self.shared.id));
        }
        let key = (self.shared.peer, self.shared.id);
        self.core.close_here(&key, reason);
        self.core.send_close(key.0, key.1, reason).await;
        Ok(())
    }

    /// How the session's link runs now: its topology and addresses.
    pub fn transport_info(&self) -> Result<TransportInfo, StreamError> {
        transport_info(self.core.friends(), &self.shared.peer)
    }
}

/// What the sessions layer knows of a request it hands a handler.
#[derive(Debug)]
pub(crate) struct RequestParts {
    pub(crate) invite: InviteId,
    pub(crate) peer: CarrierId,
    pub(crate) bundle: String,
    pub(crate) session: u64,
    /// For a request that resumes a session the friend still holds: the roles and where
    /// this side's stream numbers go on.
    pub(crate) resume: Option<Resume>,
}

/// A friend's request for a session, for a handler to [`accept`](Self::accept) or
/// [`refuse`](Self::refuse). Dropped unanswered, it refuses itself with
/// [`status::DROPPED`](super::status::DROPPED).
#[derive(Debug)]
pub struct SessionRequest {
    core: Arc<Core>,
    parts: RequestParts,
    answered: bool,
}

impl SessionRequest {
    pub(crate) fn new(core: Arc<Core>, parts: RequestParts) -> Self {
        SessionRequest {
            core,
            parts,
            answered: false,
        }
    }

    /// The friend who asks.
    pub fn peer(&self) -> CarrierId {
        self.parts.peer
    }

    /// The bundle asked for.
    pub fn bundle(&self) -> &str {
        &self.parts.bundle
    }

    /// Whether the friend asks to resume a session this node held before it restarted (the
    /// friend kept it through its grace period): accepting it re-creates that session, with
    /// its ID and the roles both sides had, and the friend's side raises
    /// [`SessionEvent::Reactivated`]. Its streams did not survive; new ones may be added.
    pub fn is_resume(&self) -> bool {
        self.parts.resume.is_some()
    }

    /// Accepts: the session is open on both sides once this returns.
    pub async fn accept(mut self) -> Result<Session, StreamError> {
        self.answered = true;
        let core = self.core.clone();
        let parts = &self.parts;
        // A resumed session keeps its roles: the friend's stream-ID parity stays its own.
        let (initiator, next_stream) = match &parts.resume {
            Some(resume) => (!resume.sender_requested, resume.next_stream),
            None => (false, 0),
        };
        let Some(shared) = core.insert_session(
            parts.peer,
            parts.session,
            &parts.bundle,
            initiator,
            next_stream,
        ) else {
            let _ = core
                .invites
                .reply_invite(
                    parts.invite,
                    status::SESSION_IN_USE,
                    "session ID in use",
                    b"",
                )
                .await;
            return Err(StreamError::Failed(
                "the requester's session ID is in use".into(),
            ));
        };
        let accept = wire::encode(&Accept {
            session: parts.session,
        });
        match core
            .invites
            .reply_invite(parts.invite, 0, "", &accept)
            .await
        {
            Ok(()) => Ok(Session::new(core, shared)),
            // The link closed under the request (a race of dials replaced it): the invites
            // layer keeps the reply and gives it to the request sent again on the next link
            // (carrier-msg's decisions 71 and 73), so the session is accepted.
            Err(carrier_msg::invite::InviteError::InviterGone(_)) => Ok(Session::new(core, shared)),
            Err(error) => {
                core.remove_session(&(parts.peer, parts.session));
                Err(StreamError::Failed(error.to_string()))
            }
        }
    }

    /// Refuses with `status` (not 0) and `reason` (at most
    /// [`MAX_REASON_BYTES`](carrier_msg::invite::MAX_REASON_BYTES)); the requester's
    /// [`request`](super::Sessions::request) fails with [`StreamError::Refused`].
    pub async fn refuse(mut self, status: i32, reason: &str) -> Result<(), StreamError> {
        if status == 0 {
            return Err(StreamError::Invalid(
                "status 0 accepts; a refusal needs another".into(),
            ));
        }
        self.answered = true;
        self.core
            .invites
            .reply_invite(self.parts.invite, status, reason, b"")
            .await
            .map_err(|e| StreamError::Invalid(e.to_string()))
    }
}

impl Drop for SessionRequest {
    fn drop(&mut self) {
        if self.answered || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let invites = self.core.invites.clone();
        let id = self.parts.invite;
        self.core.spawn(async move {
            // The inviter may be gone; its invite then times out there.
            let _ = invites
                .reply_invite(
                    id,
                    status::DROPPED,
                    "the request was dropped unanswered",
                    b"",
                )
                .await;
        });
    }
}

/// The requests of one bundle prefix ([`Sessions::handle`](super::Sessions::handle)).
#[derive(Debug)]
pub struct SessionRequests {
    receiver: mpsc::UnboundedReceiver<SessionRequest>,
}

impl SessionRequests {
    pub(crate) fn new(receiver: mpsc::UnboundedReceiver<SessionRequest>) -> Self {
        SessionRequests { receiver }
    }

    /// The next request; `None` once the sessions layer shut down.
    pub async fn recv(&mut self) -> Option<SessionRequest> {
        self.receiver.recv().await
    }
}
