//! Sessions: negotiated by an invite to the `session` extension, routed on the receiving
//! side by the longest registered bundle prefix, holding streams on the friend's link.
//!
//! - [`Sessions`]: the driver of a node's sessions (requests, handlers, the link's streams
//!   and datagrams, the friends' links going down and up).
//! - `handle`: [`Session`], [`SessionEvent`], [`SessionRequest`], [`SessionRequests`].
//! - `routing`: the longest-prefix rule, without I/O.
//! - `grace`: the grace period of deactivated sessions, without I/O, taking `now`.
//! - `resume`: the rules of resuming a session across its friend's restart, without I/O.
//! - `info`: [`TransportInfo`], from the link's current path.
//! - `report`: [`SessionReport`]s of the whole layer, to its subscribers.

mod channels;
mod grace;
mod handle;
mod info;
mod report;
mod resume;
mod routing;

pub use handle::{Session, SessionEvent, SessionRequest, SessionRequests, SessionState};
pub use info::{Topology, TransportInfo};
pub use report::{SessionReport, SessionReports};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use carrier_msg::friend::close;
use carrier_msg::friend::dht::id::CarrierId;
use carrier_msg::friend::quinn::{self, RecvStream, SendStream, VarInt};
use carrier_msg::friend::transport::MAX_CONCURRENT_BIDI_STREAMS;
use carrier_msg::friend::{Extension, ExtensionInbox, FriendEvent, Friends, Inbound, Link};
use carrier_msg::invite::{IncomingInvite, InviteError, InviteInbox, Invites};
use carrier_msg::Messenger;
use rand_core::{OsRng, RngCore};
use tokio::sync::{mpsc, Notify};
use tokio::task::{JoinHandle, JoinSet};

use self::grace::Grace;
use self::report::Reporter;
use self::resume::{Closed, OfferAnswer, REMEMBERED_CLOSED_SESSIONS};
use self::routing::Routes;
use crate::config::SessionConfig;
use crate::error::StreamError;
use crate::stream::{
    connection_reason, LinkCount, LinkSlot, StateCell, Stream, StreamHost, StreamKind, StreamMode,
    StreamState, Transport,
};
use crate::wire::{self, Accept, Answer, Offer, Open, Resume, ResumeOffer};

/// The invite extension sessions are requested on.
pub const SESSION_EXTENSION: &str = "session";

/// Statuses a node refuses a session request with by itself (an application refuses with
/// any status but 0). Never renumbered.
pub mod status {
    /// No handler on the friend's node takes the request's bundle.
    pub const NO_HANDLER: i32 = 1;
    /// The request was malformed (a bundle that is not UTF-8, bad data).
    pub const MALFORMED: i32 = 2;
    /// The requester's session ID is in use already.
    pub const SESSION_IN_USE: i32 = 3;
    /// The handler dropped the request without answering it.
    pub const DROPPED: i32 = 4;
    /// The friend's sessions layer shut down.
    pub const SHUT_DOWN: i32 = 5;
    /// The friend's node takes no sessions (nobody started its sessions layer).
    pub const NO_SESSIONS: i32 = 6;
    /// The session a resume names was closed on the friend's node.
    pub const SESSION_CLOSED: i32 = 7;
}

use crate::codes;

/// Headroom of bidirectional streams the accepting side keeps above the streams open on a
/// link: the link's limit is raised (doubled) once fewer than this are left, so an opener
/// never waits on credit while the acceptor keeps up.
pub const STREAM_HEADROOM: usize = 64;

/// How many times an open is tried when its link closes under it.
pub(crate) const OPEN_ATTEMPTS: u32 = 3;

/// How often an open that found no live link looks again.
pub(crate) const LINK_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(20);

/// How long a session whose link closed as the loser of a race of dials waits for the
/// winner before it deactivates: the friend layer's own grace for the same wait.
pub(crate) const DUPLICATE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// How often the links of deactivated sessions are looked for.
pub(crate) const LINK_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

type Key = (CarrierId, u64);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while these locks are held; a poisoned lock's data is still whole.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A session's status.
#[derive(Debug, Clone)]
pub(crate) enum Status {
    Active,
    Deactivated,
    Closed(String),
}

/// A stream as its session knows it: its state, and for a datagram stream the sending end
/// of its receive queue.
#[derive(Debug)]
pub(crate) struct Entry {
    state: Arc<StateCell>,
    datagrams: Option<(mpsc::Sender<Bytes>, Arc<AtomicU64>)>,
    connection: usize,
    /// For a multiplexed stream: where the friend's channels go.
    channels: Option<mpsc::Sender<crate::stream::ChannelStream>>,
}

/// What a session's handles and streams share.
#[derive(Debug)]
pub(crate) struct SessionShared {
    pub(crate) id: u64,
    pub(crate) peer: CarrierId,
    pub(crate) bundle: String,
    pub(crate) initiator: bool,
    next_stream: AtomicU32,
    /// The friend's next stream number, past every stream of its this side has seen: where a
    /// friend that resumes the session after a restart goes on.
    peer_next_stream: AtomicU32,
    /// Whether a resume of the session is in flight.
    resuming: AtomicBool,
    /// Whether both sides hold the session: the application has its handle. Before that (a
    /// request waiting for its answer) there is nothing to resume.
    pub(crate) established: AtomicBool,
    status: Mutex<Status>,
    events: mpsc::UnboundedSender<SessionEvent>,
    /// The layer's subscribers, told what the session's holder is told.
    reporter: Reporter,
    pub(crate) inbox: tokio::sync::Mutex<mpsc::UnboundedReceiver<SessionEvent>>,
    streams: Mutex<HashMap<u32, Entry>>,
}

impl StreamHost for SessionShared {
    fn session_id(&self) -> u64 {
        self.id
    }

    fn peer(&self) -> CarrierId {
        self.peer
    }

    fn forget_stream(&self, id: u32) {
        SessionShared::forget_stream(self, id);
    }
}

impl SessionShared {
    pub(crate) fn status(&self) -> Status {
        lock(&self.status).clone()
    }

    /// The stream is over: the session no longer routes to it.
    pub(crate) fn forget_stream(&self, id: u32) {
        lock(&self.streams).remove(&id);
    }

    fn emit(&self, event: SessionEvent) {
        // A request that was never answered was never reported open.
        if self.established.load(Ordering::SeqCst) {
            let (peer, session) = (self.peer, self.id);
            let report = match &event {
                SessionEvent::Deactivated => Some(SessionReport::Deactivated { peer, session }),
                SessionEvent::Reactivated => Some(SessionReport::Reactivated { peer, session }),
                SessionEvent::Closed(reason) => Some(SessionReport::Closed {
                    peer,
                    session,
                    reason: reason.clone(),
                }),
                // Its states are reported, `Initialized` first.
                SessionEvent::Stream(_) => None,
            };
            if let Some(report) = report {
                self.reporter.report(report);
            }
        }
        // Nobody listening is the application's choice.
        let _ = self.events.send(event);
    }

    /// A cell for the state of this session's stream `id`, reported to the layer's
    /// subscribers.
    fn state_cell(
        &self,
        id: u32,
        kind: StreamKind,
        mode: StreamMode,
    ) -> (StateCell, mpsc::UnboundedReceiver<StreamState>) {
        StateCell::observed(
            self.reporter
                .stream_observer(self.peer, self.id, id, kind, mode),
        )
    }

    /// Fails every stream (the link is gone) and stops routing datagrams to them.
    fn fail_streams(&self, reason: &str, only_connection: Option<usize>) {
        let mut streams = lock(&self.streams);
        for entry in streams.values_mut() {
            if only_connection.is_none_or(|c| c == entry.connection) {
                entry.state.link_lost(reason);
                entry.datagrams = None;
                entry.channels = None;
            }
        }
    }

    /// Ends every stream: the session closed.
    fn close_streams(&self) {
        let mut streams = lock(&self.streams);
        for entry in streams.values_mut() {
            entry.state.advance(StreamState::Closed);
            entry.datagrams = None;
            entry.channels = None;
        }
        streams.clear();
    }
}

pub(crate) struct Core {
    friends: Friends,
    invites: Invites,
    config: SessionConfig,
    sessions: Mutex<HashMap<Key, Arc<SessionShared>>>,
    routes: Mutex<Routes<mpsc::UnboundedSender<SessionRequest>>>,
    grace: Mutex<Grace<Key>>,
    grace_wake: Notify,
    /// The sessions closed here lately, whose resumes are refused.
    closed_sessions: Mutex<Closed<Key>>,
    /// By connection (`stable_id`): streams accepted, the limit set; and whose closing is
    /// watched.
    links: Mutex<HashMap<usize, Arc<LinkCount>>>,
    work: Mutex<JoinSet<()>>,
    closed: AtomicBool,
    /// Who hears of every session and stream ([`Sessions::subscribe`]).
    pub(crate) reporter: Reporter,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("id", &self.friends.id())
            .finish_non_exhaustive()
    }
}

/// The sessions of a node: requests sessions of friends, hands friends' requests to the
/// handlers registered by bundle prefix, and carries every session's streams on the
/// friends' links ([`Extension::STREAM`]). Cheap to clone; stops on
/// [`shutdown`](Self::shutdown) or when the last clone goes.
#[derive(Clone, Debug)]
pub struct Sessions {
    core: Arc<Core>,
    loops: Arc<Loops>,
}

/// The layer's loops; when the last `Sessions` goes, they and the work they started stop
/// (that work holds the core, so nothing else would end it).
#[derive(Debug)]
struct Loops {
    tasks: Mutex<Vec<JoinHandle<()>>>,
    core: Arc<Core>,
}

impl Drop for Loops {
    fn drop(&mut self) {
        self.core.closed.store(true, Ordering::SeqCst);
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
        lock(&self.core.work).abort_all();
    }
}

impl Sessions {
    /// Starts the sessions layer of the node whose friend layer is `friends` and messenger
    /// `messenger` (one per node): registers the `session` invite extension and the
    /// [`Extension::STREAM`] inbox, and follows the friends' links.
    pub async fn start(
        friends: &Friends,
        messenger: &Messenger,
        config: SessionConfig,
    ) -> Result<Sessions, StreamError> {
        let invites = messenger.invites().clone();
        let requests = invites
            .register_extension(SESSION_EXTENSION)
            .map_err(|e| StreamError::Invalid(e.to_string()))?;
        let inbox = friends
            .register(Extension::STREAM)
            .map_err(|e| StreamError::Invalid(e.to_string()))?;
        let link_events = friends.subscribe();
        let core = Arc::new(Core {
            friends: friends.clone(),
            invites,
            grace: Mutex::new(Grace::new(config.grace_period())),
            config,
            sessions: Mutex::new(HashMap::new()),
            routes: Mutex::new(Routes::default()),
            grace_wake: Notify::new(),
            closed_sessions: Mutex::new(Closed::new(REMEMBERED_CLOSED_SESSIONS)),
            links: Mutex::new(HashMap::new()),
            work: Mutex::new(JoinSet::new()),
            closed: AtomicBool::new(false),
            reporter: Reporter::default(),
        });
        let loops = vec![
            tokio::spawn(take_requests(core.clone(), requests)),
            tokio::spawn(take_inbound(core.clone(), inbox)),
            tokio::spawn(follow_links(core.clone(), link_events)),
            tokio::spawn(expire(core.clone())),
        ];
        Ok(Sessions {
            loops: Arc::new(Loops {
                tasks: Mutex::new(loops),
                core: core.clone(),
            }),
            core,
        })
    }

    /// Requests a session of `friend` for `bundle` (at most
    /// [`MAX_BUNDLE_BYTES`](carrier_msg::invite::MAX_BUNDLE_BYTES)): resolves once the friend
    /// accepted, or to its refusal ([`StreamError::Refused`] with its status and reason).
    pub async fn request(&self, friend: &CarrierId, bundle: &str) -> Result<Session, StreamError> {
        let core = &self.core;
        if core.closed.load(Ordering::SeqCst) {
            return Err(StreamError::Closed);
        }
        core.check_friend(friend)?;
        if bundle.len() > carrier_msg::invite::MAX_BUNDLE_BYTES {
            return Err(StreamError::Invalid(format!(
                "a bundle of {} bytes exceeds the cap of {}",
                bundle.len(),
                carrier_msg::invite::MAX_BUNDLE_BYTES
            )));
        }
        let id = OsRng.next_u64();
        // Registered before the invite leaves: the friend may open a stream the moment it
        // accepted, before its reply reaches us.
        let session = core
            .insert_session(*friend, id, bundle, true, 0)
            .ok_or(StreamError::Failed("a session ID drawn twice".into()))?;
        let offer = wire::encode(&Offer { session: id });
        let invited = tokio::time::timeout(
            core.config.request_timeout(),
            core.invites
                .invite(friend, SESSION_EXTENSION, bundle.as_bytes(), &offer),
        )
        .await;
        let refusal = match invited {
            Err(_) => StreamError::Timeout("the friend did not answer the session request".into()),
            Ok(Err(error)) => invite_error(friend, error),
            Ok(Ok(reply)) if reply.is_confirmed() => match wire::decode::<Accept>(&reply.data) {
                Ok(Accept { session: accepted }) if accepted == id => {
                    return Ok(session_handle(core, session))
                }
                _ => StreamError::Failed("the friend's accept names another session".into()),
            },
            Ok(Ok(reply)) => StreamError::Refused {
                status: reply.status,
                reason: reply.reason,
            },
        };
        core.remove_session(&(*friend, id));
        drop(session);
        Err(refusal)
    }

    /// Every session of the node and every stream of theirs, as they open, change and close
    /// ([`SessionReport`]): for one event stream of the node, a log, a UI. Each
    /// subscriber gets every report from now on, until it drops its receiver.
    pub fn subscribe(&self) -> SessionReports {
        self.core.reporter.subscribe()
    }

    /// The requests whose bundle starts with `bundle_prefix` (`""`: every request no longer
    /// prefix takes). The longest registered prefix of a request's bundle takes it; a request
    /// nobody takes is refused with [`status::NO_HANDLER`]. One receiver per prefix, until it
    /// is dropped.
    pub fn handle(&self, bundle_prefix: &str) -> Result<SessionRequests, StreamError> {
        if self.core.closed.load(Ordering::SeqCst) {
            return Err(StreamError::Closed);
        }
        let (sender, receiver) = mpsc::unbounded_channel();
        lock(&self.core.routes)
            .insert(bundle_prefix, sender, |s| !s.is_closed())
            .map_err(|_| StreamError::AlreadyHandled(bundle_prefix.to_owned()))?;
        Ok(SessionRequests::new(receiver))
    }

    /// The sessions open now, with their friends.
    pub fn sessions(&self) -> Vec<(CarrierId, u64)> {
        lock(&self.core.sessions).keys().copied().collect()
    }

    /// Closes every session (without telling the friends: their links say it) and stops the
    /// layer's tasks.
    pub async fn shutdown(&self) {
        self.core.closed.store(true, Ordering::SeqCst);
        let tasks: Vec<JoinHandle<()>> = lock(&self.loops.tasks).drain(..).collect();
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            // Cancelled, as asked.
            let _ = task.await;
        }
        let mut work = std::mem::take(&mut *lock(&self.core.work));
        work.abort_all();
        while work.join_next().await.is_some() {}
        let sessions: Vec<Arc<SessionShared>> =
            lock(&self.core.sessions).drain().map(|(_, s)| s).collect();
        for session in sessions {
            self.core
                .end_session(&session, "the sessions layer shut down");
        }
    }
}

fn session_handle(core: &Arc<Core>, session: Arc<SessionShared>) -> Session {
    Session::new(core.clone(), session)
}

fn invite_error(friend: &CarrierId, error: InviteError) -> StreamError {
    match error {
        InviteError::NotAFriend(id) => StreamError::NotAFriend(id),
        InviteError::Timeout => {
            StreamError::Timeout("the friend did not answer the session request".into())
        }
        InviteError::UnknownExtension { .. } => StreamError::Refused {
            status: status::NO_SESSIONS,
            reason: format!("{friend} takes no sessions"),
        },
        InviteError::Closed => StreamError::Closed,
        other => StreamError::Failed(other.to_string()),
    }
}

impl Core {
    fn check_friend(&self, peer: &CarrierId) -> Result<(), StreamError> {
        let friends = &self.friends;
        if friends.is_friend(peer) {
            return Ok(());
        }
        let known = friends.incoming_requests().iter().any(|r| r.from == *peer)
            || friends
                .outgoing_requests()
                .iter()
                .any(|r| r.to.id() == *peer)
            || friends.blocked().contains(peer);
        Err(if known {
            StreamError::NotAFriend(*peer)
        } else {
            StreamError::UnknownFriend(*peer)
        })
    }

    /// A new session in the table, its own streams numbered from `next_stream`; `None` if
    /// the key is taken.
    fn insert_session(
        self: &Arc<Self>,
        peer: CarrierId,
        id: u64,
        bundle: &str,
        initiator: bool,
        next_stream: u32,
    ) -> Option<Arc<SessionShared>> {
        let (events, receiver) = mpsc::unbounded_channel();
        let active = self.friends.is_online(&peer);
        let shared = Arc::new(SessionShared {
            id,
            peer,
            bundle: bundle.to_owned(),
            initiator,
            next_stream: AtomicU32::new(next_stream),
            peer_next_stream: AtomicU32::new(0),
            resuming: AtomicBool::new(false),
            established: AtomicBool::new(false),
            status: Mutex::new(if active {
                Status::Active
            } else {
                Status::Deactivated
            }),
            events,
            reporter: self.reporter.clone(),
            inbox: tokio::sync::Mutex::new(receiver),
            streams: Mutex::new(HashMap::new()),
        });
        let mut sessions = lock(&self.sessions);
        if sessions.contains_key(&(peer, id)) {
            return None;
        }
        sessions.insert((peer, id), shared.clone());
        drop(sessions);
        if let Some(link) = self.friends.link(&peer) {
            self.watch(peer, link.connection());
        }
        Some(shared)
    }

    fn session(&self, key: &Key) -> Option<Arc<SessionShared>> {
        lock(&self.sessions).get(key).cloned()
    }

    fn remove_session(&self, key: &Key) -> Option<Arc<SessionShared>> {
        lock(&self.grace).link_up(key);
        lock(&self.sessions).remove(key)
    }

    /// Marks `session` closed with `reason`, ends its streams and tells its handles.
    fn end_session(&self, session: &SessionShared, reason: &str) {
        {
            let mut status = lock(&session.status);
            if matches!(*status, Status::Closed(_)) {
                return;
            }
            *status = Status::Closed(reason.to_owned());
        }
        session.close_streams();
        session.emit(SessionEvent::Closed(reason.to_owned()));
    }

    /// Closes the session `key` here, with `reason`.
    pub(crate) fn close_here(&self, key: &Key, reason: &str) {
        if let Some(session) = self.remove_session(key) {
            lock(&self.closed_sessions).insert(*key);
            self.end_session(&session, reason);
        }
    }

    fn spawn(&self, work: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut set = lock(&self.work);
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        while set.try_join_next().is_some() {}
        set.spawn(work);
    }

    /// The count of `link`'s accepted streams, and a watch on its closing (once per
    /// connection): when it closes, the streams on it fail.
    fn watch(self: &Arc<Self>, peer: CarrierId, connection: &quinn::Connection) -> Arc<LinkCount> {
        let id = connection.stable_id();
        let mut links = lock(&self.links);
        if let Some(count) = links.get(&id) {
            return count.clone();
        }
        let count = Arc::new(LinkCount {
            open: AtomicUsize::new(0),
            limit: Mutex::new(u64::from(MAX_CONCURRENT_BIDI_STREAMS)),
            channels: Mutex::new(0),
        });
        links.insert(id, count.clone());
        drop(links);
        let core = self.clone();
        let connection = connection.clone();
        self.spawn(async move {
            let error = connection.closed().await;
            lock(&core.links).remove(&id);
            let reason = connection_reason(&error);
            let sessions: Vec<Arc<SessionShared>> =
                lock(&core.sessions).values().cloned().collect();
            for session in sessions {
                session.fail_streams(&reason, Some(id));
            }
            // Closed as the loser of a race of dials: the winner is a handshake away if this
            // side has not seen it yet, and the sessions stay active if it comes in time.
            let duplicate = matches!(
                &error,
                quinn::ConnectionError::ApplicationClosed(c) if c.error_code == close::DUPLICATE
            );
            if duplicate {
                let deadline = tokio::time::Instant::now() + DUPLICATE_WAIT;
                while !core.live_link(&peer, Some(id)) && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(LINK_POLL_INTERVAL).await;
                }
            }
            core.link_down(peer, Some(id));
        });
        count
    }

    /// `peer`'s live link, waiting for one (a link replaced in a race of dials comes back in
    /// moments) up to the open timeout; looked for every [`LINK_POLL_INTERVAL`].
    async fn wait_link(&self, peer: &CarrierId) -> Option<Link> {
        let deadline = tokio::time::Instant::now() + self.config.open_timeout();
        loop {
            if let Some(link) = self.friends.link(peer) {
                if link.connection().close_reason().is_none() {
                    return Some(link);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(LINK_POLL_INTERVAL).await;
        }
    }

    /// Whether `peer` has a live link now, other than connection `not`.
    fn live_link(&self, peer: &CarrierId, not: Option<usize>) -> bool {
        self.friends.link(peer).is_some_and(|link| {
            let connection = link.connection();
            connection.close_reason().is_none() && Some(connection.stable_id()) != not
        })
    }

    /// One more stream accepted on `connection`: raises the link's limit when fewer than
    /// [`STREAM_HEADROOM`] are left, before the opener needs them.
    fn take_slot(self: &Arc<Self>, peer: CarrierId, connection: &quinn::Connection) -> LinkSlot {
        self.take_slot_with(peer, connection, STREAM_HEADROOM)
    }

    /// [`take_slot`](Self::take_slot) keeping `headroom` streams above those open.
    fn take_slot_with(
        self: &Arc<Self>,
        peer: CarrierId,
        connection: &quinn::Connection,
        headroom: usize,
    ) -> LinkSlot {
        let count = self.watch(peer, connection);
        let open = count.open.fetch_add(1, Ordering::Relaxed) + 1;
        raise_limit(&count, connection, open + headroom);
        LinkSlot(count)
    }
}

/// Raises `connection`'s limit of bidirectional streams (at least doubling it) if it is below
/// `needed`.
fn raise_limit(count: &LinkCount, connection: &quinn::Connection, needed: usize) {
    {
        let needed = needed as u64;
        let mut limit = lock(&count.limit);
        if needed > *limit {
            let raised = (*limit * 2).max(needed);
            if let Ok(raised_var) = VarInt::from_u64(raised) {
                connection.set_max_concurrent_bi_streams(raised_var);
                *limit = raised;
            }
        }
    }
}

impl Core {
    /// Routes stream `id` of `session` (on `connection`) to its state and, in datagram mode,
    /// to a new bounded queue: the queue's receiving end and drop count, for the stream.
    fn register_stream(
        &self,
        session: &SessionShared,
        id: u32,
        cell: &Arc<StateCell>,
        mode: StreamMode,
        connection: &quinn::Connection,
    ) -> Option<(mpsc::Sender<Bytes>, mpsc::Receiver<Bytes>, Arc<AtomicU64>)> {
        let datagrams = (mode == StreamMode::Datagram).then(|| {
            let (sender, queue) = mpsc::channel(self.config.datagram_queue());
            (sender, queue, Arc::new(AtomicU64::new(0)))
        });
        lock(&session.streams).insert(
            id,
            Entry {
                state: cell.clone(),
                datagrams: datagrams
                    .as_ref()
                    .map(|(sender, _, dropped)| (sender.clone(), dropped.clone())),
                connection: connection.stable_id(),
                channels: None,
            },
        );
        datagrams
    }

    /// The session's status once it is not between two links: a deactivated session may be
    /// (one link replaced in a race of dials, the other not seen yet), so it is waited for
    /// within the open timeout, on the side that opens a stream and on the side that takes it.
    async fn settled_status(&self, session: &SessionShared) -> Status {
        let deadline = tokio::time::Instant::now() + self.config.open_timeout();
        loop {
            match session.status() {
                Status::Deactivated if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(LINK_POLL_INTERVAL).await;
                }
                status => return status,
            }
        }
    }

    /// Opens a stream of `session` on its friend's link: the [`Open`] exchange, within the
    /// open timeout. An open that fails because its link closed under it (a race of dials
    /// closes one of two links) is tried again on the live link, with a new stream ID, at
    /// most [`OPEN_ATTEMPTS`] times.
    pub(crate) async fn open_stream(
        self: &Arc<Self>,
        session: &Arc<SessionShared>,
        kind: StreamKind,
        mode: StreamMode,
        multiplexed: bool,
    ) -> Result<Stream, StreamError> {
        let mut attempt = 1;
        loop {
            match self
                .open_stream_once(session, kind, mode, multiplexed)
                .await
            {
                Ok(stream) => return Ok(stream),
                Err((error, Some(_closed))) if attempt < OPEN_ATTEMPTS => {
                    // The open never reached the friend's application: nothing is lost.
                    drop(error);
                    attempt += 1;
                }
                Err((error, _)) => return Err(error),
            }
        }
    }

    /// One attempt of [`open_stream`](Self::open_stream); on failure, the error and, if the
    /// open may be tried again (the link closed under it, or the friend had forgotten the
    /// session, which is being resumed), the connection's ID.
    async fn open_stream_once(
        self: &Arc<Self>,
        session: &Arc<SessionShared>,
        kind: StreamKind,
        mode: StreamMode,
        multiplexed: bool,
    ) -> Result<Stream, (StreamError, Option<usize>)> {
        match self.settled_status(session).await {
            Status::Active => {}
            Status::Deactivated => {
                return Err((
                    StreamError::WrongState(
                        "the session is deactivated: its friend's link is down".into(),
                    ),
                    None,
                ))
            }
            Status::Closed(_) => return Err((StreamError::UnknownSession(session.id), None)),
        }
        let n = session.next_stream.fetch_add(1, Ordering::Relaxed);
        let id = n.wrapping_mul(2) + u32::from(!session.initiator);
        let (cell, changes) = session.state_cell(id, kind, mode);
        let cell = Arc::new(cell);
        let link = self.wait_link(&session.peer).await.ok_or_else(|| {
            (
                StreamError::WrongState("the friend's link is down".into()),
                None,
            )
        })?;
        cell.advance(StreamState::TransportReady);
        let connection = link.connection().clone();
        self.watch(session.peer, &connection);
        let datagrams = self.register_stream(session, id, &cell, mode, &connection);
        let channels = multiplexed.then(|| self.multiplex(session, id, &connection));
        let open = match multiplexed {
            true => Open::MultiplexedStream {
                session: session.id,
                stream: id,
                kind: kind.byte(),
            },
            false => Open::Stream {
                session: session.id,
                stream: id,
                kind: kind.byte(),
                mode: mode.byte(),
            },
        };
        let exchange = exchange(&link, &open, &cell);
        let answer = match tokio::time::timeout(self.config.open_timeout(), exchange).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => {
                session.forget_stream(id);
                cell.advance(StreamState::Failed(error.to_string()));
                let closed = connection
                    .close_reason()
                    .is_some()
                    .then(|| connection.stable_id());
                return Err((error, closed));
            }
            Err(_) => {
                session.forget_stream(id);
                let reason = "the friend did not take the stream in time";
                cell.advance(StreamState::Failed(reason.into()));
                return Err((StreamError::Timeout(reason.into()), None));
            }
        };
        let (send, recv) = match answer {
            (Answer::Ready, send, recv) => (send, recv),
            (Answer::UnknownSession, ..) => {
                session.forget_stream(id);
                cell.advance(StreamState::Failed(
                    "the friend knows no such session".into(),
                ));
                // The friend restarted before this side saw its link go: the session is
                // resumed as after a link that went, and the open waits for it once more.
                self.forgotten(session);
                return Err((
                    StreamError::UnknownSession(session.id),
                    Some(connection.stable_id()),
                ));
            }
            (Answer::Refused(reason), ..) => {
                session.forget_stream(id);
                let reason = wire::reason_text(&reason);
                cell.advance(StreamState::Failed(reason.clone()));
                return Err((StreamError::Failed(reason), None));
            }
        };
        cell.advance(StreamState::Connected);
        let transport = match datagrams {
            None => Transport::Reliable(send, recv),
            Some((_, queue, dropped)) => {
                self.watch_control(session.clone(), id, cell.clone(), recv);
                Transport::Datagram {
                    connection,
                    control: send,
                    queue,
                    dropped,
                }
            }
        };
        let stream = Stream::new(id, kind, session.clone(), cell, changes, transport, None);
        Ok(match channels {
            Some((opener, incoming)) => stream.with_channels(opener, incoming),
            None => stream,
        })
    }

    /// Follows the control stream of a datagram-mode stream: its end closes the stream.
    fn watch_control(
        &self,
        session: Arc<SessionShared>,
        id: u32,
        cell: Arc<StateCell>,
        mut recv: RecvStream,
    ) {
        self.spawn(async move {
            loop {
                match recv.read_chunk(64, true).await {
                    // Nothing travels on it; whatever does is ignored.
                    Ok(Some(_)) => continue,
                    Ok(None) => {
                        cell.advance(StreamState::Closed);
                    }
                    Err(quinn::ReadError::ConnectionLost(error)) => {
                        cell.link_lost(&connection_reason(&error));
                    }
                    Err(error) => {
                        cell.advance(StreamState::Failed(format!(
                            "the friend ended the stream: {error}"
                        )));
                    }
                }
                break;
            }
            if let Some(entry) = lock(&session.streams).get_mut(&id) {
                entry.datagrams = None;
            }
        });
    }

    /// Takes a stream the friend opened: its [`Open`] frame, then the answer.
    async fn take_stream(
        self: Arc<Self>,
        peer: CarrierId,
        mut send: SendStream,
        mut recv: RecvStream,
    ) {
        let open =
            match tokio::time::timeout(self.config.open_timeout(), read_frame::<Open>(&mut recv))
                .await
            {
                Ok(Ok(open)) => open,
                _ => {
                    let _ = recv.stop(codes::MALFORMED);
                    let _ = send.reset(codes::MALFORMED);
                    return;
                }
            };
        match open {
            Open::CloseSession { session, reason } => {
                let known = self.session(&(peer, session)).is_some();
                let answer = if known {
                    Answer::Ready
                } else {
                    Answer::UnknownSession
                };
                let _ = send.write_all(&wire::prefixed(&answer)).await;
                let _ = send.finish();
                self.close_here(&(peer, session), &wire::reason_text(&reason));
            }
            Open::Stream {
                session,
                stream,
                kind,
                mode,
            } => {
                self.take_session_stream(peer, session, stream, kind, mode, false, send, recv)
                    .await
            }
            Open::MultiplexedStream {
                session,
                stream,
                kind,
            } => {
                let mode = StreamMode::Reliable.byte();
                self.take_session_stream(peer, session, stream, kind, mode, true, send, recv)
                    .await
            }
            Open::Channel {
                session,
                stream,
                channel,
                header,
            } => {
                let key = (peer, session);
                self.take_channel(key, stream, channel, header, send, recv)
                    .await
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn take_session_stream(
        self: &Arc<Self>,
        peer: CarrierId,
        session_id: u64,
        id: u32,
        kind: u8,
        mode: u8,
        multiplexed: bool,
        mut send: SendStream,
        recv: RecvStream,
    ) {
        let refuse = |answer: Answer| wire::prefixed(&answer);
        let session = match self.session(&(peer, session_id)) {
            Some(session) if matches!(self.settled_status(&session).await, Status::Active) => {
                session
            }
            Some(_) => {
                let _ = send
                    .write_all(&refuse(Answer::Refused(wire::reason(
                        "the session is not active",
                    ))))
                    .await;
                let _ = send.finish();
                return;
            }
            None => {
                let _ = send.write_all(&refuse(Answer::UnknownSession)).await;
                let _ = send.finish();
                return;
            }
        };
        let (Some(kind), Some(mode)) = (StreamKind::from_byte(kind), StreamMode::from_byte(mode))
        else {
            let _ = send
                .write_all(&refuse(Answer::Refused(wire::reason(
                    "unknown stream kind or mode",
                ))))
                .await;
            let _ = send.finish();
            return;
        };
        // The friend's streams carry the other parity.
        if id % 2 == u32::from(!session.initiator) || lock(&session.streams).contains_key(&id) {
            let _ = send
                .write_all(&refuse(Answer::Refused(wire::reason("stream ID in use"))))
                .await;
            let _ = send.finish();
            return;
        }
        session
            .peer_next_stream
            .fetch_max(id / 2 + 1, Ordering::Relaxed);
        let Some(link) = self.friends.link(&peer) else {
            return;
        };
        let connection = link.connection().clone();
        let slot = self.take_slot(peer, &connection);
        let (cell, changes) = session.state_cell(id, kind, mode);
        let cell = Arc::new(cell);
        cell.advance(StreamState::TransportReady);
        cell.advance(StreamState::Connecting);
        let datagrams = self.register_stream(&session, id, &cell, mode, &connection);
        let channels = multiplexed.then(|| self.multiplex(&session, id, &connection));
        if let Err(error) = send.write_all(&wire::prefixed(&Answer::Ready)).await {
            session.forget_stream(id);
            cell.advance(StreamState::Failed(error.to_string()));
            return;
        }
        cell.advance(StreamState::Connected);
        let transport = match datagrams {
            None => Transport::Reliable(send, recv),
            Some((_, queue, dropped)) => {
                self.watch_control(session.clone(), id, cell.clone(), recv);
                Transport::Datagram {
                    connection,
                    control: send,
                    queue,
                    dropped,
                }
            }
        };
        let stream = Stream::new(
            id,
            kind,
            session.clone(),
            cell,
            changes,
            transport,
            Some(slot),
        );
        let stream = match channels {
            Some((opener, incoming)) => stream.with_channels(opener, incoming),
            None => stream,
        };
        session.emit(SessionEvent::Stream(stream));
    }

    /// Routes a datagram to its stream's queue; dropped (and counted for that stream) if the
    /// queue is full, dropped silently if no stream has its tag.
    fn route_datagram(&self, peer: CarrierId, payload: Bytes) {
        let Some((session, stream, _)) = wire::split_datagram(&payload) else {
            return;
        };
        let Some(session) = self.session(&(peer, session)) else {
            return;
        };
        let streams = lock(&session.streams);
        let Some((queue, dropped)) = streams.get(&stream).and_then(|e| e.datagrams.as_ref()) else {
            return;
        };
        if queue
            .try_send(payload.slice(wire::DATAGRAM_TAG_BYTES..))
            .is_err()
        {
            dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Tells the friend that `session` closed, within the open timeout; best effort.
    pub(crate) async fn send_close(&self, peer: CarrierId, session: u64, reason: &str) {
        let Some(link) = self.friends.link(&peer) else {
            return;
        };
        let open = Open::CloseSession {
            session,
            reason: wire::reason(reason),
        };
        let cell = StateCell::new().0;
        // The friend learns it from its link or its grace period otherwise.
        let _ =
            tokio::time::timeout(self.config.open_timeout(), exchange(&link, &open, &cell)).await;
    }

    pub(crate) fn friends(&self) -> &Friends {
        &self.friends
    }

    /// The friend's sessions lost their link (connection `closed`, when a watch saw it, whose
    /// streams failed already): unless a live link is up (a race of dials replaced the one
    /// closed, or a `Disconnected` event is stale), the sessions deactivate. A friend that
    /// restarted behind a live link answers the next stream `UnknownSession`, which resumes.
    fn link_down(self: &Arc<Self>, peer: CarrierId, closed: Option<usize>) {
        if self.live_link(&peer, closed) {
            return;
        }
        let now = tokio::time::Instant::now().into_std();
        let sessions: Vec<Arc<SessionShared>> = lock(&self.sessions)
            .values()
            .filter(|s| s.peer == peer)
            .cloned()
            .collect();
        for session in sessions {
            {
                let mut status = lock(&session.status);
                if !matches!(*status, Status::Active) {
                    continue;
                }
                *status = Status::Deactivated;
            }
            lock(&self.grace).link_down((peer, session.id), now);
            session.fail_streams("the link to the friend went down", closed);
            session.emit(SessionEvent::Deactivated);
        }
        self.grace_wake.notify_one();
    }

    /// The friend's link is live: each of its deactivated sessions asks the friend to
    /// confirm it (module `resume`), and is active again once it did.
    fn link_up(self: &Arc<Self>, peer: CarrierId) {
        let sessions: Vec<Arc<SessionShared>> = lock(&self.sessions)
            .values()
            .filter(|s| s.peer == peer)
            .cloned()
            .collect();
        for session in sessions {
            if !matches!(session.status(), Status::Deactivated) {
                continue;
            }
            if session.established.load(Ordering::SeqCst) {
                self.resume(&session);
            } else {
                self.reactivate(&session);
            }
        }
    }

    /// Asks the friend to confirm `session`, unless that is under way.
    fn resume(self: &Arc<Self>, session: &Arc<SessionShared>) {
        if session.resuming.swap(true, Ordering::SeqCst) {
            return;
        }
        let core = self.clone();
        let session = session.clone();
        self.spawn(async move {
            let answer = core.ask_resume(&session).await;
            session.resuming.store(false, Ordering::SeqCst);
            match resume::outcome(answer) {
                resume::Outcome::Reactivate => core.reactivate(&session),
                resume::Outcome::Close(reason) => {
                    core.close_here(&(session.peer, session.id), &reason)
                }
                // The grace period's loop looks for the link again and asks once more.
                resume::Outcome::Retry | resume::Outcome::Nothing => {}
            }
        });
    }

    /// The resume request for `session` (an invite with its ID, bundle and roles) and how it
    /// ended.
    async fn ask_resume(&self, session: &SessionShared) -> resume::Answer {
        let offer = wire::encode(&ResumeOffer {
            session: session.id,
            resume: Resume {
                sender_requested: session.initiator,
                next_stream: session.peer_next_stream.load(Ordering::Relaxed),
            },
        });
        let invited = tokio::time::timeout(
            self.config.request_timeout(),
            self.invites.invite(
                &session.peer,
                SESSION_EXTENSION,
                session.bundle.as_bytes(),
                &offer,
            ),
        )
        .await;
        match invited {
            Err(_) => resume::Answer::Silent,
            Ok(Ok(reply)) if reply.is_confirmed() => match wire::decode::<Accept>(&reply.data) {
                Ok(Accept { session: id }) if id == session.id => resume::Answer::Confirmed,
                _ => resume::Answer::ConfirmedOther,
            },
            Ok(Ok(reply)) => resume::Answer::Refused {
                status: reply.status,
                reason: reply.reason,
            },
            Ok(Err(InviteError::NotAFriend(_))) => resume::Answer::NotAFriend,
            Ok(Err(InviteError::UnknownExtension { .. })) => resume::Answer::NoSessions,
            Ok(Err(InviteError::Closed)) => resume::Answer::ShutDown,
            Ok(Err(_)) => resume::Answer::Silent,
        }
    }

    /// `session` was confirmed by its friend: active again, and the application is told.
    fn reactivate(&self, session: &SessionShared) {
        {
            let mut status = lock(&session.status);
            if !matches!(*status, Status::Deactivated) {
                return;
            }
            *status = Status::Active;
        }
        lock(&self.grace).link_up(&(session.peer, session.id));
        session.emit(SessionEvent::Reactivated);
    }

    /// The friend answered a stream of `session` with `UnknownSession`: it restarted before
    /// this side saw its link go. The session deactivates and is resumed, as after a link
    /// that went.
    fn forgotten(self: &Arc<Self>, session: &Arc<SessionShared>) {
        {
            let mut status = lock(&session.status);
            if !matches!(*status, Status::Active) {
                return;
            }
            *status = Status::Deactivated;
        }
        let now = tokio::time::Instant::now().into_std();
        lock(&self.grace).link_down((session.peer, session.id), now);
        session.emit(SessionEvent::Deactivated);
        self.grace_wake.notify_one();
        self.resume(session);
    }
}

/// Opens a stream on `link`, sends `open`, reads the answer.
async fn exchange(
    link: &Link,
    open: &Open,
    cell: &StateCell,
) -> Result<(Answer, SendStream, RecvStream), StreamError> {
    let (mut send, mut recv) = link
        .open_bi(Extension::STREAM)
        .await
        .map_err(|e| StreamError::Failed(format!("the link to the friend: {e}")))?;
    send.write_all(&wire::prefixed(open))
        .await
        .map_err(|e| StreamError::Failed(format!("the link to the friend: {e}")))?;
    cell.advance(StreamState::Connecting);
    let answer = read_frame::<Answer>(&mut recv).await?;
    Ok((answer, send, recv))
}

/// Reads one length-prefixed frame.
async fn read_frame<T: serde::de::DeserializeOwned>(
    recv: &mut RecvStream,
) -> Result<T, StreamError> {
    let malformed =
        |e: &dyn std::fmt::Display| StreamError::Failed(format!("a malformed frame: {e}"));
    let mut prefix = [0u8; 2];
    recv.read_exact(&mut prefix)
        .await
        .map_err(|e| malformed(&e))?;
    let len = wire::frame_len(prefix).map_err(|e| malformed(&e))?;
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body)
        .await
        .map_err(|e| malformed(&e))?;
    wire::decode(&body).map_err(|e| malformed(&e))
}

/// Hands each session request to its handler, or refuses it.
async fn take_requests(core: Arc<Core>, mut requests: InviteInbox) {
    while let Some(invite) = requests.recv().await {
        let refuse = |status: i32, reason: String| {
            let invites = core.invites.clone();
            let id = invite.id;
            core.spawn(async move {
                // The inviter may be gone; its invite then times out there.
                let _ = invites.reply_invite(id, status, &reason, b"").await;
            });
        };
        let Ok((session, resume)) = wire::decode_offer(&invite.data) else {
            refuse(status::MALFORMED, "a malformed session request".into());
            continue;
        };
        let Ok(bundle) = String::from_utf8(invite.bundle.clone()) else {
            refuse(status::MALFORMED, "a bundle that is not UTF-8".into());
            continue;
        };
        if resume.is_some() {
            let key = (invite.from, session);
            let holds = core.session(&key).is_some();
            let closed = lock(&core.closed_sessions).contains(&key);
            match resume::on_resume_offer(holds, closed) {
                OfferAnswer::Confirm => {
                    let invites = core.invites.clone();
                    let id = invite.id;
                    let accept = wire::encode(&Accept { session });
                    core.spawn(async move {
                        // The inviter may be gone; it asks again on its next link.
                        let _ = invites.reply_invite(id, 0, "", &accept).await;
                    });
                    continue;
                }
                OfferAnswer::RefuseClosed => {
                    refuse(resume::CLOSED_STATUS, "the session was closed".into());
                    continue;
                }
                OfferAnswer::AskHandler => {}
            }
        }
        let routes = lock(&core.routes);
        let Some(handler) = routes.route(&bundle, |s| !s.is_closed()).cloned() else {
            drop(routes);
            refuse(
                status::NO_HANDLER,
                format!("no handler takes bundle {bundle:?}"),
            );
            continue;
        };
        drop(routes);
        let request =
            SessionRequest::new(core.clone(), invite_parts(invite, bundle, session, resume));
        if let Err(unsent) = handler.send(request) {
            // The handler went between the lookup and now: its request refuses itself.
            drop(unsent);
        }
    }
}

fn invite_parts(
    invite: IncomingInvite,
    bundle: String,
    session: u64,
    resume: Option<Resume>,
) -> handle::RequestParts {
    handle::RequestParts {
        invite: invite.id,
        peer: invite.from,
        bundle,
        session,
        resume,
    }
}

/// Routes the friends' session streams and datagrams.
async fn take_inbound(core: Arc<Core>, mut inbox: ExtensionInbox) {
    while let Some(inbound) = inbox.recv().await {
        match inbound {
            Inbound::Bi { peer, send, recv } => {
                let core2 = core.clone();
                core.spawn(core2.take_stream(peer, send, recv));
            }
            Inbound::Uni { mut recv, .. } => {
                let _ = recv.stop(codes::MALFORMED);
            }
            Inbound::Datagram { peer, payload } => core.route_datagram(peer, payload),
        }
    }
}

/// Deactivates a friend's sessions when its link goes down, reactivates them when it comes
/// back, closes them when it stops being a friend.
async fn follow_links(core: Arc<Core>, mut events: mpsc::UnboundedReceiver<FriendEvent>) {
    while let Some(event) = events.recv().await {
        match event {
            FriendEvent::Disconnected(peer) => core.link_down(peer, None),
            FriendEvent::Connected(peer) => core.link_up(peer),
            FriendEvent::Removed(peer) => {
                let keys: Vec<Key> = lock(&core.sessions)
                    .keys()
                    .filter(|(p, _)| *p == peer)
                    .copied()
                    .collect();
                for key in keys {
                    core.close_here(&key, "no longer a friend");
                }
            }
            _ => {}
        }
    }
}

/// Closes the sessions whose grace period ended.
async fn expire(core: Arc<Core>) {
    loop {
        let next = lock(&core.grace).poll_timeout();
        let wait = async {
            match next {
                // While sessions wait, their links are looked for every LINK_CHECK_INTERVAL
                // too: a link that replaced another comes back without an event.
                Some(at) => {
                    let at = tokio::time::Instant::from_std(at);
                    let check = tokio::time::Instant::now() + LINK_CHECK_INTERVAL;
                    tokio::time::sleep_until(at.min(check)).await
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = wait => {}
            () = core.grace_wake.notified() => continue,
        }
        let waiting: Vec<CarrierId> = lock(&core.grace).keys().map(|(peer, _)| *peer).collect();
        for peer in waiting {
            if core.live_link(&peer, None) {
                core.link_up(peer);
            }
        }
        let over = lock(&core.grace).expired(tokio::time::Instant::now().into_std());
        for key in over {
            core.close_here(
                &key,
                "the friend's link did not return within the grace period",
            );
        }
    }
}
