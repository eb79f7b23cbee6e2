//! [`Friends`]: friend requests that survive restarts and offline peers, the friend list, one
//! live link per online friend, and the user info and presence friends tell each other.
//!
//! Links: a node dials every friend it holds no link to (looking its peer record up, with
//! backoff) and accepts friends' dials; when both dial at once one link survives on both sides
//! ([`crate::live`] has the rule). Every link is served by the layer's [`LayerRouter`], so each
//! layer above receives only its own streams; the friend layer's own travel as
//! [`Layer::Friend`] streams.
//!
//! A request goes straight to the target over `carrier-request/1` when its peer record names
//! an address that answers; otherwise into the target's request mailbox (the one its nospam
//! selects), and it is tried again with backoff until the target takes it. Accepts and
//! removes (control items) go the same way over a `carrier/1` control stream or the target's
//! message mailbox. Every item sits in the durable [`Outbox`](crate::outbox::Outbox) until the
//! target acknowledges it: by taking it over the connection (the close code of a request, the
//! one-byte answer of a control stream), or with an acknowledgement letter in our mailbox when
//! it came through the target's. The target takes each item once: item IDs are kept per
//! sender, and the change, the item ID and any outbox item it causes commit together before
//! anything is acknowledged or reported.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use carrier_dht::bounded::{BoundedBytes, BoundedVec};
use carrier_dht::id::{Address, CarrierId, Keypair, Nospam};
use carrier_dht::store::{DatabaseError, Store};
use carrier_dht::{Dht, Path, PeerRecord};
use tokio::sync::{mpsc, Notify};
use tokio::task::{JoinHandle, JoinSet};

use crate::alpn::Alpn;
use crate::close;
use crate::endpoint::{LinkConfig, LinkEndpoint, MAX_PENDING_HANDSHAKES};
use crate::error::FriendError;
use crate::gate::FriendGate;
use crate::layer::{AlreadyRegistered, Inbound, Layer, LayerInbox, LayerRouter};
use crate::link::{Accepted, Link};
use crate::live::LiveLinks;
use crate::outbox::{OutboxEntry, OutboxId, RetryPolicy, Route};
use crate::request::{self, REQUEST_TIMEOUT};
use crate::state::{self, FriendRow, IncomingRow, OutgoingRow, State, Tables, OUTBOX};
use crate::stranger_limit::StrangerLimit;
use crate::transport::{SILENCE_CHECK_INTERVAL, SILENCE_LIMIT};
use crate::wire::{
    self, Body, Change, ControlBody, Presence, ProfileBody, RequestBody, UserInfo, ANSWER_TAKEN,
    MAX_ACKS, MAX_CONTROL_FRAME_BYTES, MAX_HELLO_BYTES, MAX_LABEL_BYTES,
};

/// The outbox kind of a friend request.
const KIND_REQUEST: u8 = 1;
/// The outbox kind of a control item (accept, remove): a newer one to the same peer replaces
/// any older one still waiting.
const KIND_CONTROL: u8 = 2;
/// The outbox kind of a profile (user info and presence): a newer one to the same peer
/// replaces any older one still waiting.
const KIND_PROFILE: u8 = 3;
/// How long a friend whose link the peer closed as a duplicate may stay without one before it
/// counts as disconnected: the surviving link is usually a handshake away.
const DUPLICATE_GRACE: Duration = Duration::from_secs(2);
/// How often the connect loop looks for friends without a link (besides being woken).
const CONNECT_TICK: Duration = Duration::from_millis(250);
/// Deliveries in progress at once.
const MAX_DELIVERIES: usize = 32;
/// Addresses of a peer record tried per attempt.
const ADDRESSES_PER_ATTEMPT: usize = 3;

/// Settings of [`Friends`].
#[derive(Clone, Debug)]
pub struct FriendsConfig {
    /// How undelivered items are retried, and how often they are deposited again.
    pub retry: RetryPolicy,
    /// How often the node's request and message mailboxes are checked.
    pub poll_interval: Duration,
    /// How often the node announces its peer record.
    pub announce_interval: Duration,
    /// How long an announced peer record is valid (at most the DHT's `max_record_ttl`).
    pub record_ttl: Duration,
    /// How long finding a peer and dialling it may take before the mailbox is used.
    pub dial_timeout: Duration,
    /// How long taken item IDs are kept (against a duplicate arriving late).
    pub seen_retention: Duration,
    /// Handshakes a stranger's source may start (friend requests).
    pub stranger_limit: StrangerLimit,
    /// Handshakes in progress at once.
    pub max_pending_handshakes: usize,
    /// The first wait before looking a friend without a link up again; it doubles at each
    /// failed attempt, up to `link_retry_max`. A link that closes starts it over.
    pub link_retry_initial: Duration,
    /// The longest wait between two attempts to reach a friend without a link.
    pub link_retry_max: Duration,
    /// How often the node compares its addresses with those it announced, and announces
    /// again when they changed.
    pub address_check_interval: Duration,
    /// Requests waiting for an answer at most. Beyond it a new requester's request is not
    /// taken (its sender tries again later; a letter stays in the mailbox), so strangers who
    /// know the address cannot fill the disk; rotating the nospam stops them for good.
    pub max_incoming_requests: u64,
    /// Friends looked up and dialled at once, at most. A node with many friends starting up
    /// dials them a batch at a time, longest-waiting first, instead of starting a lookup for
    /// every friend in the same instant.
    pub max_concurrent_dials: usize,
}

/// Requests waiting for an answer at most, by default ([`FriendsConfig::max_incoming_requests`]):
/// about 0.5 MiB of user info and hellos at the largest.
pub const MAX_INCOMING_REQUESTS: u64 = 256;

impl Default for FriendsConfig {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            poll_interval: Duration::from_secs(60),
            announce_interval: Duration::from_secs(10 * 60),
            record_ttl: Duration::from_secs(60 * 60),
            dial_timeout: Duration::from_secs(10),
            seen_retention: Duration::from_secs(30 * 24 * 60 * 60),
            stranger_limit: StrangerLimit::default(),
            max_pending_handshakes: MAX_PENDING_HANDSHAKES,
            link_retry_initial: Duration::from_secs(1),
            link_retry_max: Duration::from_secs(60),
            address_check_interval: Duration::from_secs(5),
            max_incoming_requests: MAX_INCOMING_REQUESTS,
            max_concurrent_dials: 16,
        }
    }
}

impl FriendsConfig {
    /// Intervals of fractions of a second, so offline delivery, reconnects and address changes
    /// show within seconds: for tests and experiments on one machine. On a real network they
    /// cost traffic and lookups for nothing; use [`FriendsConfig::default`] there.
    pub fn for_tests() -> Self {
        Self {
            retry: RetryPolicy {
                initial: Duration::from_millis(200),
                max: Duration::from_secs(1),
                republish: Duration::from_secs(60),
            },
            poll_interval: Duration::from_millis(500),
            announce_interval: Duration::from_secs(5),
            dial_timeout: Duration::from_secs(2),
            link_retry_initial: Duration::from_millis(200),
            link_retry_max: Duration::from_secs(1),
            address_check_interval: Duration::from_millis(500),
            ..Self::default()
        }
    }
}

/// A friend in the friend list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Friend {
    /// The friend's Carrier ID.
    pub id: CarrierId,
    /// The local label given to the friend (empty until set).
    pub label: String,
    /// The user info the friend sent.
    pub info: UserInfo,
    /// The friend's presence, as it last told.
    pub presence: Presence,
    /// When the friendship started here (Unix seconds).
    pub since_unix_secs: u64,
}

/// A friend request someone sent this node, waiting for accept or refuse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FriendRequest {
    /// Who sent it (proved in the handshake, or the verified signer of the letter).
    pub from: CarrierId,
    /// The requester's user info.
    pub info: UserInfo,
    /// The requester's hello.
    pub hello: Vec<u8>,
    /// When it was taken (Unix seconds).
    pub received_unix_secs: u64,
}

/// A friend request this node sent, until the peer accepts it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingRequest {
    /// The address it was sent to.
    pub to: Address,
    /// The hello.
    pub hello: Vec<u8>,
    /// When it was sent (Unix seconds).
    pub sent_unix_secs: u64,
}

/// What the friend layer reports, each once, after the change it reports is committed.
///
/// An event is sent after its commit, so a node killed in between has the change but never
/// reports it: an application reads [`Friends::friends`] and
/// [`Friends::incoming_requests`] when it starts, then follows the events.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FriendEvent {
    /// A new friend request arrived (also listed by [`Friends::incoming_requests`]).
    Request(FriendRequest),
    /// A peer accepted this node's request: it is a friend now.
    Added(CarrierId),
    /// A friend removed this node: it is a friend no more.
    Removed(CarrierId),
    /// A friend's link is up: [`Friends::link`] gives it. Sent once per time the friend comes
    /// online; a link replaced by another (a race of dials, a restart of the friend) does not
    /// count.
    Connected(CarrierId),
    /// A friend that was connected has no link any more: it shut down, vanished (seen within
    /// 22 s: a link that hears nothing for [`SILENCE_LIMIT`] is closed), or stopped being a
    /// friend (then after `Removed`).
    Disconnected(CarrierId),
    /// A friend's user info changed (the new info).
    InfoChanged(CarrierId, UserInfo),
    /// A friend's presence changed (the new presence).
    PresenceChanged(CarrierId, Presence),
}

/// The receiving end of the friend layer's events. Unbounded: the events are few (requests
/// pass the stranger limit first), and none is lost while the application is busy.
pub type FriendEvents = mpsc::UnboundedReceiver<FriendEvent>;

/// The friend layer of a node: its friend list, requests both ways, block list and nospam,
/// kept in the node's database, and the QUIC endpoint whose gate admits friends. Cheap to
/// clone; the background tasks stop when the last clone is dropped or on
/// [`shutdown`](Self::shutdown).
#[derive(Clone)]
pub struct Friends {
    core: Arc<Core>,
    tasks: Arc<Tasks>,
}

impl std::fmt::Debug for Friends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Friends")
            .field("id", &self.core.id)
            .finish_non_exhaustive()
    }
}

/// The background loops, and the work they started: all aborted when the last [`Friends`]
/// goes (or on shutdown), so no task outlives the layer.
struct Tasks {
    loops: Mutex<Vec<JoinHandle<()>>>,
    core: Arc<Core>,
}

impl Tasks {
    fn abort(&self) {
        for task in lock(&self.loops).drain(..) {
            task.abort();
        }
        lock(&self.core.work).abort_all();
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.abort();
    }
}

struct Core {
    dht: Dht,
    store: Store,
    links: LinkEndpoint,
    keypair: Keypair,
    id: CarrierId,
    config: FriendsConfig,
    state: Arc<RwLock<State>>,
    reload: Mutex<()>,
    events: mpsc::UnboundedSender<FriendEvent>,
    wake: Arc<Notify>,
    in_flight: Mutex<HashSet<(CarrierId, OutboxId)>>,
    /// Work the loops start (deliveries, links, streams, requests), aborted on shutdown.
    work: Mutex<JoinSet<()>>,
    /// Routes every friend link's streams and datagrams to the inbox of their layer.
    router: LayerRouter,
    /// The link held per peer.
    live: Mutex<LiveLinks>,
    /// Friends reported connected (and not disconnected since).
    online: Mutex<HashSet<CarrierId>>,
    /// Friends being looked up and dialled now.
    dialling: Mutex<HashSet<CarrierId>>,
    /// Per friend without a link: failed attempts, and when to try again.
    backoff: Mutex<HashMap<CarrierId, (u32, Instant)>>,
    /// Wakes the connect loop.
    connect_wake: Notify,
}

/// The gate of `carrier/1`: friends, and peers this node asked to be friends (so their
/// accept can arrive).
struct Gate(Arc<RwLock<State>>);

impl FriendGate for Gate {
    fn admits(&self, peer: &CarrierId) -> bool {
        let state = read(&self.0);
        state.friends.contains_key(peer) || state.outgoing.contains_key(peer)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while these locks are held; a poisoned lock's data is still whole.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn read(state: &RwLock<State>) -> RwLockReadGuard<'_, State> {
    state
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn check_hello(hello: &[u8]) -> Result<(), FriendError> {
    if hello.is_empty() {
        return Err(FriendError::EmptyHello);
    }
    if hello.len() > MAX_HELLO_BYTES {
        return Err(FriendError::HelloTooLong {
            len: hello.len(),
            max: MAX_HELLO_BYTES,
        });
    }
    Ok(())
}

/// Queues a control item for `peer`, replacing any older one still waiting.
fn queue_control(
    t: &Tables<'_>,
    peer: CarrierId,
    change: Change,
    now_ms: u64,
) -> Result<(), DatabaseError> {
    let seq = t.next_control_seq(now_ms)?;
    let id = OutboxId::random();
    OUTBOX.remove_kinds(t.txn(), &peer, |kind| kind == KIND_CONTROL)?;
    let payload = wire::encode(&Body::Control(ControlBody { id, seq, change }));
    put_item(t, peer, id, KIND_CONTROL, payload, now_ms)
}

/// Queues this node's current user info and presence for `peer`, replacing any older profile
/// still waiting.
fn queue_profile(t: &Tables<'_>, peer: CarrierId, now_ms: u64) -> Result<(), DatabaseError> {
    let seq = t.next_control_seq(now_ms)?;
    let id = OutboxId::random();
    OUTBOX.remove_kinds(t.txn(), &peer, |kind| kind == KIND_PROFILE)?;
    let payload = wire::encode(&Body::Profile(ProfileBody {
        id,
        seq,
        info: t.info()?,
        presence: t.presence()?,
    }));
    put_item(t, peer, id, KIND_PROFILE, payload, now_ms)
}

fn put_item(
    t: &Tables<'_>,
    peer: CarrierId,
    id: OutboxId,
    kind: u8,
    payload: Vec<u8>,
    now_ms: u64,
) -> Result<(), DatabaseError> {
    OUTBOX.put(
        t.txn(),
        &OutboxEntry {
            peer,
            id,
            kind,
            route: Route::Messages,
            payload,
            created_unix_ms: now_ms,
            attempts: 0,
            next_attempt_unix_ms: now_ms,
            deposited_unix_ms: None,
        },
    )
}

/// What taking a request did.
#[derive(Debug)]
enum Taken {
    /// A new request: reported.
    New(Box<FriendRequest>),
    /// Taken before.
    Duplicate,
    /// Not taken: [`FriendsConfig::max_incoming_requests`] wait for an answer already. The
    /// requester tries again later (its outbox retries; a letter stays in the mailbox).
    Full,
    /// Dropped on purpose (blocked sender, old nospam, ourselves, malformed).
    Dropped,
    /// From a friend: answered with a fresh accept.
    ReAccepted,
}

impl Friends {
    /// Starts the friend layer on `dht`, one per node. The DHT must have a data directory:
    /// the layer keeps everything in the node's database. Opens the node's QUIC endpoint on the DHT's socket
    /// with a gate that admits friends, and starts the background work: taking requests and
    /// control items, delivering the outbox, checking the mailboxes, announcing the node's
    /// peer record (once the DHT is bootstrapped). Returns the layer and its events.
    pub async fn start(
        dht: Dht,
        config: FriendsConfig,
    ) -> Result<(Friends, FriendEvents), FriendError> {
        let store = dht.store().ok_or(FriendError::NoStore)?;
        state::ensure_schema(&store).await?;
        let oldest = unix_ms() / 1000 - config.seen_retention.as_secs().min(unix_ms() / 1000);
        store
            .write(move |txn| Tables::new(txn).prune_seen(oldest))
            .await?;
        let state = Arc::new(RwLock::new(State::load(&store)?));
        let keypair = dht.keypair();
        let mut link_config = LinkConfig::new(Gate(state.clone()));
        link_config.stranger_limit = config.stranger_limit;
        link_config.max_pending_handshakes = config.max_pending_handshakes;
        let links = LinkEndpoint::new(dht.socket().clone(), &keypair, link_config)?;
        let (events, receiver) = mpsc::unbounded_channel();
        // The layers above hear only friends; a peer this node asked (admitted by the gate
        // so its accept can arrive) reaches the friend layer alone.
        let admitted = state.clone();
        let router = LayerRouter::with_admission(move |peer, layer| {
            layer == Layer::Friend || read(&admitted).friends.contains_key(peer)
        });
        // Invariant: a fresh router has no inboxes, so the first registration cannot fail.
        #[allow(clippy::expect_used)]
        let inbox = router
            .register(Layer::Friend)
            .expect("a fresh router has no inbox");
        let core = Arc::new(Core {
            live: Mutex::new(LiveLinks::new(keypair.id())),
            router,
            online: Mutex::new(HashSet::new()),
            dialling: Mutex::new(HashSet::new()),
            backoff: Mutex::new(HashMap::new()),
            connect_wake: Notify::new(),
            id: keypair.id(),
            dht,
            store,
            links,
            keypair,
            config,
            state,
            reload: Mutex::new(()),
            events,
            wake: Arc::new(Notify::new()),
            in_flight: Mutex::new(HashSet::new()),
            work: Mutex::new(JoinSet::new()),
        });
        let tasks = vec![
            tokio::spawn(accept_loop(core.clone())),
            tokio::spawn(outbox_loop(core.clone())),
            tokio::spawn(poll_loop(core.clone())),
            tokio::spawn(announce_loop(core.clone())),
            tokio::spawn(friend_inbox_loop(core.clone(), inbox)),
            tokio::spawn(connect_loop(core.clone())),
            tokio::spawn(silence_loop(core.clone())),
        ];
        let friends = Friends {
            tasks: Arc::new(Tasks {
                loops: Mutex::new(tasks),
                core: core.clone(),
            }),
            core,
        };
        Ok((friends, receiver))
    }

    /// This node's Carrier ID.
    pub fn id(&self) -> CarrierId {
        self.core.id
    }

    /// This node's address: its ID and current nospam. Give it to whoever may ask to be a
    /// friend.
    pub fn address(&self) -> Address {
        Address::new(self.core.id, read(&self.core.state).nospam)
    }

    /// The DHT node underneath.
    pub fn dht(&self) -> &Dht {
        &self.core.dht
    }

    /// The node's QUIC endpoint, whose gate admits friends (and peers this node asked).
    pub fn links(&self) -> &LinkEndpoint {
        &self.core.links
    }

    /// The live link of friend `id`, if it is online: open streams and send datagrams on it
    /// with [`Link::open_bi`], [`Link::open_uni`] and [`Link::send_datagram`], which write the
    /// layer header. `None` for a friend without a link, and for anyone not a friend.
    ///
    /// A link can close at any moment (the friend vanished, or it lost a race of dials and
    /// was closed with [`close::DUPLICATE`]); a stream on it then fails with the close code,
    /// never silently, and its layer sends again on the next link.
    pub fn link(&self, id: &CarrierId) -> Option<Link> {
        if !self.is_friend(id) {
            return None;
        }
        lock(&self.core.live).get(id)
    }

    /// Looks friend `id` up and dials it now, whatever the backoff and even if a link is held
    /// (the tie-break then keeps one of the two, on both sides alike); returns the link
    /// dialled, which may be the one closed as the duplicate.
    pub async fn connect(&self, id: &CarrierId) -> Result<Link, FriendError> {
        if !self.is_friend(id) {
            return Err(FriendError::NotAFriend(*id));
        }
        match self.core.find_and_dial(*id, false).await {
            Some(link) => {
                self.core.adopt(link.clone(), true);
                Ok(link)
            }
            None => Err(FriendError::Unreachable(*id)),
        }
    }

    /// Whether friend `id` is connected (reported [`FriendEvent::Connected`] and not
    /// disconnected since).
    pub fn is_online(&self, id: &CarrierId) -> bool {
        lock(&self.core.online).contains(id)
    }

    /// The friends connected now, in ID order.
    pub fn online(&self) -> Vec<CarrierId> {
        let mut online: Vec<CarrierId> = lock(&self.core.online).iter().copied().collect();
        online.sort_by_key(CarrierId::to_bytes);
        online
    }

    /// How many friends are being looked up and dialled now (at most
    /// [`FriendsConfig::max_concurrent_dials`]).
    pub fn dials_in_flight(&self) -> usize {
        lock(&self.core.dialling).len()
    }

    /// How many links the node holds now: one per connected friend, plus any short-lived
    /// link to a peer that is not (or no longer) a friend, such as one delivering a remove.
    pub fn link_count(&self) -> usize {
        lock(&self.core.live).peers().len()
    }

    /// The inbox of `layer`: every stream and datagram any friend sends it on a link (header
    /// removed). One per layer; [`Layer::Friend`] is this layer's own.
    pub fn register(&self, layer: Layer) -> Result<LayerInbox, AlreadyRegistered> {
        self.core.router.register(layer)
    }

    /// The router serving every friend link (its refusal counters, for diagnostics).
    pub fn router(&self) -> &LayerRouter {
        &self.core.router
    }

    /// Asks the owner of `address` to be friends, with `hello` (1 to [`MAX_HELLO_BYTES`]
    /// bytes). Returns once the request is stored; it is then delivered directly, or through
    /// the target's request mailbox while the target is offline, until the target takes it.
    /// Asking an existing friend again sends the request again (the friend answers with an
    /// accept); asking again before an answer replaces the earlier request.
    pub async fn add_friend(&self, address: &str, hello: &[u8]) -> Result<(), FriendError> {
        let address: Address = address.trim().parse()?;
        let peer = address.id();
        if peer == self.core.id {
            return Err(FriendError::Yourself);
        }
        check_hello(hello)?;
        let hello = BoundedBytes::from_slice(hello).map_err(|_| FriendError::HelloTooLong {
            len: hello.len(),
            max: MAX_HELLO_BYTES,
        })?;
        let now_ms = unix_ms();
        let request = OutboxId::random();
        let nospam = address.nospam();
        self.core
            .change(move |t| {
                if t.is_blocked(&peer)? {
                    return Ok(Err(FriendError::Blocked(peer)));
                }
                let payload = wire::encode(&Body::Request(RequestBody {
                    id: request,
                    seq: t.next_control_seq(now_ms)?,
                    nospam,
                    info: t.info()?,
                    hello: hello.clone(),
                }));
                if let Some(old) = t.outgoing(&peer)? {
                    OUTBOX.remove(t.txn(), &peer, &old.request)?;
                }
                t.put_outgoing(
                    &peer,
                    &OutgoingRow {
                        request,
                        nospam,
                        hello: hello.to_vec(),
                        sent_unix_secs: now_ms / 1000,
                    },
                )?;
                OUTBOX.put(
                    t.txn(),
                    &OutboxEntry {
                        peer,
                        id: request,
                        kind: KIND_REQUEST,
                        route: Route::Requests(nospam),
                        payload,
                        created_unix_ms: now_ms,
                        attempts: 0,
                        next_attempt_unix_ms: now_ms,
                        deposited_unix_ms: None,
                    },
                )?;
                Ok(Ok(()))
            })
            .await??;
        self.core.wake.notify_one();
        Ok(())
    }

    /// Accepts the pending request from `id`: `id` is a friend from now on, and the
    /// requester is told (through its mailbox if it is offline) and gets
    /// [`FriendEvent::Added`].
    pub async fn accept_friend(&self, id: &CarrierId) -> Result<(), FriendError> {
        let peer = *id;
        let now_ms = unix_ms();
        self.core
            .change(move |t| {
                let Some(request) = t.incoming(&peer)? else {
                    return Ok(Err(FriendError::UnknownRequest(peer)));
                };
                t.remove_incoming(&peer)?;
                t.remove_outgoing(&peer)?;
                if t.friend(&peer)?.is_none() {
                    t.put_friend(
                        &peer,
                        &FriendRow {
                            label: String::new(),
                            info: request.info,
                            since_unix_secs: now_ms / 1000,
                            presence: Presence::None,
                            profile_seq: 0,
                        },
                    )?;
                }
                queue_control(t, peer, Change::Accept(t.info()?), now_ms)?;
                queue_profile(t, peer, now_ms)?;
                Ok(Ok(()))
            })
            .await??;
        self.core.wake.notify_one();
        self.core.refresh_online(peer);
        Ok(())
    }

    /// Drops the pending request from `id`, without telling the requester.
    pub async fn refuse_friend(&self, id: &CarrierId) -> Result<(), FriendError> {
        let peer = *id;
        self.core
            .change(move |t| {
                Ok(if t.remove_incoming(&peer)? {
                    Ok(())
                } else {
                    Err(FriendError::UnknownRequest(peer))
                })
            })
            .await?
    }

    /// Removes friend `id`; the friend is told (through its mailbox if it is offline) and
    /// gets [`FriendEvent::Removed`].
    pub async fn remove_friend(&self, id: &CarrierId) -> Result<(), FriendError> {
        let peer = *id;
        let now_ms = unix_ms();
        self.core
            .change(move |t| {
                if !t.remove_friend(&peer)? {
                    return Ok(Err(FriendError::NotAFriend(peer)));
                }
                // A request asking the friend again is moot now: its answer must not make
                // the friendship again.
                t.remove_outgoing(&peer)?;
                OUTBOX.remove_kinds(t.txn(), &peer, |kind| {
                    kind == KIND_REQUEST || kind == KIND_PROFILE
                })?;
                queue_control(t, peer, Change::Remove, now_ms)?;
                Ok(Ok(()))
            })
            .await??;
        self.core.wake.notify_one();
        self.core.refresh_online(peer);
        Ok(())
    }

    /// Puts `id` on the block list: its requests are dropped silently from now on, and its
    /// pending request (if any) is dropped. A friend stays a friend until removed.
    pub async fn block(&self, id: &CarrierId) -> Result<(), FriendError> {
        let peer = *id;
        if peer == self.core.id {
            return Err(FriendError::Yourself);
        }
        let now = unix_ms() / 1000;
        self.core
            .change(move |t| {
                t.block(&peer, now)?;
                t.remove_incoming(&peer)?;
                Ok(())
            })
            .await
    }

    /// Takes `id` off the block list; returns whether it was on it.
    pub async fn unblock(&self, id: &CarrierId) -> Result<bool, FriendError> {
        let peer = *id;
        self.core.change(move |t| t.unblock(&peer)).await
    }

    /// Replaces the nospam, and so the address: requests to the old address are dropped from
    /// now on (the request mailbox moves with it).
    pub async fn set_nospam(&self, nospam: Nospam) -> Result<(), FriendError> {
        self.core.change(move |t| t.set_nospam(nospam)).await
    }

    /// Sets the user info sent with this node's requests and accepts, and tells every friend:
    /// at once over its link, or when it comes back (directly, or through its mailbox).
    pub async fn set_user_info(&self, info: UserInfo) -> Result<(), FriendError> {
        let now_ms = unix_ms();
        self.core
            .change(move |t| {
                t.set_info(&info)?;
                for friend in t.friend_ids()? {
                    queue_profile(t, friend, now_ms)?;
                }
                Ok(())
            })
            .await?;
        self.core.wake.notify_one();
        Ok(())
    }

    /// Sets this node's presence and tells every friend, like
    /// [`set_user_info`](Self::set_user_info). It stays until changed, restarts included.
    pub async fn set_presence(&self, presence: Presence) -> Result<(), FriendError> {
        let now_ms = unix_ms();
        self.core
            .change(move |t| {
                t.set_presence(presence)?;
                for friend in t.friend_ids()? {
                    queue_profile(t, friend, now_ms)?;
                }
                Ok(())
            })
            .await?;
        self.core.wake.notify_one();
        Ok(())
    }

    /// This node's presence.
    pub fn presence(&self) -> Presence {
        read(&self.core.state).presence
    }

    /// Sets the local label of friend `id` (at most [`MAX_LABEL_BYTES`]).
    pub async fn set_label(&self, id: &CarrierId, label: &str) -> Result<(), FriendError> {
        if label.len() > MAX_LABEL_BYTES {
            return Err(FriendError::LabelTooLong {
                len: label.len(),
                max: MAX_LABEL_BYTES,
            });
        }
        let (peer, label) = (*id, label.to_string());
        self.core
            .change(move |t| {
                let Some(mut row) = t.friend(&peer)? else {
                    return Ok(Err(FriendError::NotAFriend(peer)));
                };
                row.label.clone_from(&label);
                t.put_friend(&peer, &row)?;
                Ok(Ok(()))
            })
            .await?
    }

    /// The friend list, in ID order.
    pub fn friends(&self) -> Vec<Friend> {
        let state = read(&self.core.state);
        let mut friends: Vec<Friend> = state
            .friends
            .iter()
            .map(|(id, row)| Friend {
                id: *id,
                label: row.label.clone(),
                info: row.info.clone(),
                presence: row.presence,
                since_unix_secs: row.since_unix_secs,
            })
            .collect();
        friends.sort_by_key(|f| f.id.to_bytes());
        friends
    }

    /// Whether `id` is a friend.
    pub fn is_friend(&self, id: &CarrierId) -> bool {
        read(&self.core.state).friends.contains_key(id)
    }

    /// Requests waiting for [`accept_friend`](Self::accept_friend) or
    /// [`refuse_friend`](Self::refuse_friend), in ID order.
    pub fn incoming_requests(&self) -> Vec<FriendRequest> {
        let state = read(&self.core.state);
        let mut requests: Vec<FriendRequest> = state
            .incoming
            .iter()
            .map(|(from, row)| FriendRequest {
                from: *from,
                info: row.info.clone(),
                hello: row.hello.clone(),
                received_unix_secs: row.received_unix_secs,
            })
            .collect();
        requests.sort_by_key(|r| r.from.to_bytes());
        requests
    }

    /// Requests this node sent that are not accepted yet, in ID order.
    pub fn outgoing_requests(&self) -> Vec<OutgoingRequest> {
        let state = read(&self.core.state);
        let mut requests: Vec<OutgoingRequest> = state
            .outgoing
            .iter()
            .map(|(to, row)| OutgoingRequest {
                to: Address::new(*to, row.nospam),
                hello: row.hello.clone(),
                sent_unix_secs: row.sent_unix_secs,
            })
            .collect();
        requests.sort_by_key(|r| r.to.id().to_bytes());
        requests
    }

    /// The block list, in ID order.
    pub fn blocked(&self) -> Vec<CarrierId> {
        let mut blocked: Vec<CarrierId> = read(&self.core.state).blocked.iter().copied().collect();
        blocked.sort_by_key(CarrierId::to_bytes);
        blocked
    }

    /// The user info this node sends.
    pub fn user_info(&self) -> UserInfo {
        read(&self.core.state).info.clone()
    }

    /// Items (requests, accepts, removes) still waiting for their peer's acknowledgement,
    /// with their retry state.
    pub fn outbox(&self) -> Result<Vec<OutboxEntry>, FriendError> {
        Ok(OUTBOX.load(&self.core.store)?)
    }

    /// Checks the node's request and message mailboxes now, instead of at the next
    /// [`poll_interval`](FriendsConfig::poll_interval).
    pub async fn check_mailboxes(&self) {
        self.core.poll_mailboxes().await;
    }

    /// Announces the node's peer record now; returns how many storers took it.
    pub async fn announce(&self) -> Result<usize, FriendError> {
        self.core.announce().await
    }

    /// Stops the background work and closes the QUIC endpoint (telling peers). The DHT is the
    /// caller's to shut down.
    pub async fn shutdown(&self) {
        self.tasks.abort();
        self.core.links.shutdown().await;
    }
}

impl Core {
    /// Runs `f` on the tables in one committed transaction, then refreshes the in-memory
    /// copy.
    async fn change<T, F>(&self, mut f: F) -> Result<T, FriendError>
    where
        T: Send + 'static,
        F: FnMut(&Tables<'_>) -> Result<T, DatabaseError> + Send + 'static,
    {
        let out = self.store.write(move |txn| f(&Tables::new(txn))).await?;
        self.reload()?;
        Ok(out)
    }

    /// Reads everything again from one snapshot. Serialized, so a later snapshot is never
    /// overwritten by an earlier one.
    fn reload(&self) -> Result<(), FriendError> {
        let _serial = lock(&self.reload);
        let fresh = State::load(&self.store)?;
        *self
            .state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = fresh;
        Ok(())
    }

    /// Runs `work` in the background until it ends or the layer shuts down.
    fn spawn(&self, work: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut set = lock(&self.work);
        // Finished work is reaped here, so the set holds only what still runs.
        while set.try_join_next().is_some() {}
        set.spawn(work);
    }

    fn emit(&self, event: FriendEvent) {
        // Nobody listening is the application's choice.
        let _ = self.events.send(event);
    }

    /// Takes a request `frame` from `from` (once per request ID).
    async fn take_request(&self, from: CarrierId, frame: &[u8]) -> Result<Taken, FriendError> {
        let Ok(Body::Request(body)) = wire::decode(frame) else {
            return Ok(Taken::Dropped);
        };
        if from == self.id {
            return Ok(Taken::Dropped);
        }
        let now_ms = unix_ms();
        let max_incoming = self.config.max_incoming_requests;
        let taken = self
            .change(move |t| {
                // Refusals come before anything is written: a stranger who knows only the
                // node's ID (the nospam is in its address alone) makes it store nothing.
                if t.is_blocked(&from)? || body.nospam != t.nospam()? {
                    return Ok(Taken::Dropped);
                }
                let friend = t.friend(&from)?.is_some();
                if !friend && t.incoming(&from)?.is_none() && t.incoming_count()? >= max_incoming {
                    return Ok(Taken::Full);
                }
                if t.seen(&from, &body.id, now_ms / 1000)? {
                    return Ok(Taken::Duplicate);
                }
                // Sent before a change already applied from the requester (a remove that
                // overtook it): the requester's later decision stands.
                if !t.advance_peer_seq(&from, body.seq)? {
                    return Ok(Taken::Dropped);
                }
                if friend {
                    queue_control(t, from, Change::Accept(t.info()?), now_ms)?;
                    return Ok(Taken::ReAccepted);
                }
                let row = IncomingRow {
                    request: body.id,
                    info: body.info.clone(),
                    hello: body.hello.to_vec(),
                    received_unix_secs: now_ms / 1000,
                };
                t.put_incoming(&from, &row)?;
                Ok(Taken::New(Box::new(FriendRequest {
                    from,
                    info: row.info,
                    hello: row.hello,
                    received_unix_secs: row.received_unix_secs,
                })))
            })
            .await?;
        match &taken {
            Taken::New(request) => self.emit(FriendEvent::Request((**request).clone())),
            Taken::ReAccepted => self.wake.notify_one(),
            Taken::Duplicate | Taken::Dropped | Taken::Full => {}
        }
        Ok(taken)
    }

    /// Takes a control item from `from` (once per item ID, and never one older than the
    /// newest applied from `from`).
    async fn take_control(&self, from: CarrierId, body: ControlBody) -> Result<(), FriendError> {
        let now_ms = unix_ms();
        let event = self
            .change(move |t| {
                if t.seen(&from, &body.id, now_ms / 1000)?
                    || !t.advance_peer_seq(&from, body.seq)?
                {
                    return Ok(None);
                }
                match &body.change {
                    Change::Accept(info) => {
                        let asked = t.remove_outgoing(&from)?;
                        OUTBOX.remove_kinds(t.txn(), &from, |kind| kind == KIND_REQUEST)?;
                        if let Some(mut row) = t.friend(&from)? {
                            if body.seq > row.profile_seq {
                                row.info = info.clone();
                                row.profile_seq = body.seq;
                                t.put_friend(&from, &row)?;
                            }
                            return Ok(None);
                        }
                        if !asked || t.is_blocked(&from)? {
                            return Ok(None);
                        }
                        // Both asked: the peer's own request is answered by the friendship.
                        t.remove_incoming(&from)?;
                        t.put_friend(
                            &from,
                            &FriendRow {
                                label: String::new(),
                                info: info.clone(),
                                since_unix_secs: now_ms / 1000,
                                presence: Presence::None,
                                profile_seq: body.seq,
                            },
                        )?;
                        // The new friend knows this node's info from the request, which may
                        // be older, and not its presence.
                        queue_profile(t, from, now_ms)?;
                        Ok(Some(FriendEvent::Added(from)))
                    }
                    Change::Remove => {
                        if !t.remove_friend(&from)? {
                            return Ok(None);
                        }
                        // An accept still waiting for the remover (an answer to its request
                        // asking again) would make the friendship again: it goes, and so do
                        // profiles for it.
                        OUTBOX.remove_kinds(t.txn(), &from, |kind| {
                            kind == KIND_CONTROL || kind == KIND_PROFILE
                        })?;
                        Ok(Some(FriendEvent::Removed(from)))
                    }
                }
            })
            .await?;
        if let Some(event) = event {
            self.emit(event);
            self.wake.notify_one();
            self.refresh_online(from);
        }
        Ok(())
    }

    /// Takes a profile (user info and presence) from friend `from`: applied if it is newer
    /// than the newest profile or accept applied from `from`; each change is reported.
    /// Returns whether it was taken: a profile from a peer that is not a friend (yet) is not,
    /// so its sender tries again (its accept may still be on the way; a remove on the way
    /// drops the profile from the sender's outbox).
    async fn take_profile(&self, from: CarrierId, body: ProfileBody) -> Result<bool, FriendError> {
        let now_ms = unix_ms();
        let (taken, events) = self
            .change(move |t| {
                let mut events = Vec::new();
                let Some(mut row) = t.friend(&from)? else {
                    return Ok((false, events));
                };
                if t.seen(&from, &body.id, now_ms / 1000)? {
                    return Ok((true, events));
                }
                if body.seq <= row.profile_seq {
                    return Ok((true, events));
                }
                if row.info != body.info {
                    events.push(FriendEvent::InfoChanged(from, body.info.clone()));
                }
                if row.presence != body.presence {
                    events.push(FriendEvent::PresenceChanged(from, body.presence));
                }
                row.info = body.info.clone();
                row.presence = body.presence;
                row.profile_seq = body.seq;
                t.put_friend(&from, &row)?;
                Ok((true, events))
            })
            .await?;
        for event in events {
            self.emit(event);
        }
        Ok(taken)
    }

    /// Drops the outbox items for `from` that `from` acknowledged.
    async fn take_acks(&self, from: CarrierId, ids: Vec<OutboxId>) -> Result<(), FriendError> {
        self.store
            .write(move |txn| {
                for id in &ids {
                    OUTBOX.remove(txn, &from, id)?;
                }
                Ok(())
            })
            .await?;
        Ok(())
    }

    /// Takes what waits in the request mailbox of the current nospam and the friend layer's
    /// letters in the message mailbox; deletes what was taken and acknowledges it to its
    /// sender through the sender's mailbox.
    async fn poll_mailboxes(&self) {
        let nospam = read(&self.state).nospam;
        let mut acks: HashMap<CarrierId, Vec<OutboxId>> = HashMap::new();
        if let Ok(letters) = self.dht.fetch_requests(nospam).await {
            for letter in letters {
                let frame = wire::letter_frame(&letter.bytes).unwrap_or_default();
                let id = match wire::decode(frame) {
                    Ok(Body::Request(request)) => Some(request.id),
                    _ => None,
                };
                let taken = self.take_request(letter.sender, frame).await;
                if matches!(taken, Ok(ref t) if !matches!(t, Taken::Full)) {
                    if let Some(id) = id {
                        acks.entry(letter.sender).or_default().push(id);
                    }
                    // A delete that fails is tried at the next check; the item is taken once.
                    let _ = self.dht.delete(&letter).await;
                }
            }
        }
        if let Ok(letters) = self.dht.fetch().await {
            for letter in letters {
                // Letters of other layers are theirs to take.
                let Some(frame) = wire::letter_frame(&letter.bytes) else {
                    continue;
                };
                let taken = match wire::decode(frame) {
                    Ok(Body::Control(control)) => {
                        let id = control.id;
                        let taken = self.take_control(letter.sender, control).await.is_ok();
                        if taken {
                            acks.entry(letter.sender).or_default().push(id);
                        }
                        taken
                    }
                    Ok(Body::Ack(ids)) => {
                        self.take_acks(letter.sender, ids.into_vec()).await.is_ok()
                    }
                    Ok(Body::Profile(profile)) => {
                        let id = profile.id;
                        let taken =
                            matches!(self.take_profile(letter.sender, profile).await, Ok(true));
                        if taken {
                            acks.entry(letter.sender).or_default().push(id);
                        }
                        taken
                    }
                    // Malformed, or a request in the wrong mailbox: nothing to take.
                    Ok(Body::Request(_)) | Err(_) => true,
                };
                if taken {
                    let _ = self.dht.delete(&letter).await;
                }
            }
        }
        for (peer, ids) in acks {
            for chunk in ids.chunks(MAX_ACKS) {
                let ids = BoundedVec::truncating(chunk.to_vec());
                // Lost acknowledgements cost a retry, which is taken once and acknowledged
                // again.
                let _ = self
                    .dht
                    .deposit(&peer, &wire::encode_letter(&Body::Ack(ids)))
                    .await;
            }
        }
    }

    /// The node's addresses for its peer record: the observed one, and the local one.
    fn addresses(&self) -> Vec<std::net::SocketAddr> {
        let mut addrs = Vec::new();
        if let Some(observed) = self.dht.observed_addr() {
            addrs.push(observed);
        }
        let local = self.dht.local_addr();
        if !local.ip().is_unspecified() && !addrs.contains(&local) {
            addrs.push(local);
        }
        addrs
    }

    /// Publishes the node's signed peer record (its observed and local addresses).
    async fn announce(&self) -> Result<usize, FriendError> {
        let addrs = self.addresses();
        if addrs.is_empty() {
            // Nowhere to be found yet (behind a NAT, before peers reported the public
            // address): a record without addresses would only hide the last useful one.
            return Ok(0);
        }
        let now_ms = unix_ms();
        let expires = (now_ms / 1000).saturating_add(self.config.record_ttl.as_secs());
        // Two addresses and no relays always fit the record's caps.
        let Ok(record) = PeerRecord::sign(&self.keypair, now_ms, expires, addrs, Vec::new()) else {
            return Ok(0);
        };
        Ok(self.dht.announce(record).await?)
    }

    /// Tries to hand `entry` to its peer directly; whether the peer took it.
    async fn deliver_direct(self: &Arc<Self>, entry: &OutboxEntry) -> bool {
        if entry.kind != KIND_REQUEST {
            let held = lock(&self.live).get(&entry.peer);
            if let Some(link) = held {
                if self.send_on_link(&link, &entry.payload).await {
                    if !read(&self.state).friends.contains_key(&entry.peer) {
                        // The remove is delivered: the link has no more use.
                        link.close(close::DONE, b"");
                    }
                    return true;
                }
            }
        }
        let found = tokio::time::timeout(self.config.dial_timeout, self.dht.find_peer(&entry.peer));
        let Ok(Ok(Some(record))) = found.await else {
            return false;
        };
        let now = unix_ms() / 1000;
        if record.id != entry.peer || record.expires_unix_secs < now {
            return false;
        }
        for addr in record.addrs.iter().take(ADDRESSES_PER_ATTEMPT) {
            let path = Path::Direct(*addr);
            let taken = match entry.kind {
                KIND_REQUEST => self.send_request(entry.peer, path, &entry.payload).await,
                _ => self.send_control(entry.peer, path, &entry.payload).await,
            };
            if taken {
                return true;
            }
        }
        false
    }

    /// Sends one request frame on `carrier-request/1`; whether the peer took it. The dial
    /// has `dial_timeout`, the answer [`REQUEST_TIMEOUT`] and a second more.
    async fn send_request(&self, peer: CarrierId, path: Path, frame: &[u8]) -> bool {
        let Some(bytes) = request::encode(frame) else {
            return false;
        };
        let dialling = self.links.connect(peer, path, Alpn::Request);
        let Ok(Ok(connection)) = tokio::time::timeout(self.config.dial_timeout, dialling).await
        else {
            return false;
        };
        let answer = REQUEST_TIMEOUT + Duration::from_secs(1);
        let sent = tokio::time::timeout(answer, request::send(&connection, &bytes)).await;
        matches!(sent, Ok(Ok(())))
    }

    /// Dials `peer` at `path` and sends one control frame on the new link (which is then held
    /// like any link, and closed at once if `peer` is not a friend); whether the peer took it.
    /// The dial has `dial_timeout`, the answer [`REQUEST_TIMEOUT`] and a second more.
    async fn send_control(self: &Arc<Self>, peer: CarrierId, path: Path, frame: &[u8]) -> bool {
        let dialling = self.links.dial(peer, path);
        let Ok(Ok(link)) = tokio::time::timeout(self.config.dial_timeout, dialling).await else {
            return false;
        };
        self.adopt(link.clone(), true);
        let taken = self.send_on_link(&link, frame).await;
        if !read(&self.state).friends.contains_key(&peer) {
            link.close(close::DONE, b"");
        }
        taken
    }

    /// Sends one control frame on a friend-layer stream of `link` (`Layer::Friend ‖ u16 length
    /// ‖ frame`, then the end of the stream); whether the peer answered that it took it, within
    /// [`REQUEST_TIMEOUT`] and a second more.
    async fn send_on_link(&self, link: &Link, frame: &[u8]) -> bool {
        let Ok(length) = u16::try_from(frame.len()) else {
            return false;
        };
        let sending = async {
            let (mut send, mut recv) = link.open_bi(Layer::Friend).await.ok()?;
            let mut bytes = Vec::with_capacity(2 + frame.len());
            bytes.extend_from_slice(&length.to_be_bytes());
            bytes.extend_from_slice(frame);
            send.write_all(&bytes).await.ok()?;
            send.finish().ok()?;
            let answer = recv.read_to_end(8).await.ok()?;
            Some(answer == [ANSWER_TAKEN])
        };
        let answer = REQUEST_TIMEOUT + Duration::from_secs(1);
        matches!(tokio::time::timeout(answer, sending).await, Ok(Some(true)))
    }

    /// Deposits `entry` in its peer's mailbox; whether every item was stored.
    async fn deposit(&self, entry: &OutboxEntry) -> bool {
        let mut letter = vec![wire::LETTER_TAG];
        letter.extend_from_slice(&entry.payload);
        let deposited = match entry.route {
            Route::Requests(nospam) => {
                self.dht
                    .deposit_request(&Address::new(entry.peer, nospam), &letter)
                    .await
            }
            Route::Messages => self.dht.deposit(&entry.peer, &letter).await,
        };
        deposited.is_ok()
    }

    /// One delivery attempt of `entry`: directly, else (when due) into the mailbox; the
    /// outcome is committed before the next attempt is scheduled.
    async fn attempt(self: &Arc<Self>, entry: OutboxEntry) {
        let (peer, id) = (entry.peer, entry.id);
        let written = if self.deliver_direct(&entry).await {
            self.store
                .write(move |txn| OUTBOX.remove(txn, &peer, &id).map(drop))
                .await
        } else {
            let now = unix_ms();
            let deposited =
                self.config.retry.needs_deposit(&entry, now) && self.deposit(&entry).await;
            let policy = self.config.retry;
            self.store
                .write(move |txn| OUTBOX.record_attempt(txn, &peer, &id, now, deposited, &policy))
                .await
        };
        // A failed write leaves the entry as it was: it is tried again.
        let _ = written;
        lock(&self.in_flight).remove(&(peer, id));
        self.wake.notify_one();
    }

    /// Holds `link` (dialled by this node, or accepted), routes its streams and datagrams, and
    /// watches it until it closes. If a link to the same peer is held already, the tie-break
    /// ([`crate::live`]) keeps one and closes the other with [`close::DUPLICATE`].
    fn adopt(self: &Arc<Self>, link: Link, dialled: bool) {
        let peer = link.peer();
        let loser = lock(&self.live).add(link.clone(), dialled, Instant::now());
        if let Some(loser) = loser {
            loser.close(close::DUPLICATE, b"duplicate link");
        }
        let router = self.router.clone();
        let routed = link.clone();
        self.spawn(async move { router.route(routed).await });
        let watcher = self.clone();
        self.spawn(async move { watcher.watch(link).await });
        self.refresh_online(peer);
    }

    /// Waits until `link` closes, forgets it, and reports the friend disconnected if no other
    /// link replaced it; then the friend is looked up again at once.
    async fn watch(self: Arc<Self>, link: Link) {
        let peer = link.peer();
        let reason = link.connection().closed().await;
        let code = match &reason {
            quinn::ConnectionError::ApplicationClosed(close) => Some(close.error_code),
            _ => None,
        };
        let grace_until = Instant::now() + DUPLICATE_GRACE;
        let was_held = {
            // One lock for both: no refresh in between may see the friend without a link.
            let mut live = lock(&self.live);
            let was_held = live.remove(&link);
            if was_held && code == Some(close::DUPLICATE) {
                live.await_successor(peer, grace_until);
            }
            was_held
        };
        if !was_held {
            return;
        }
        {
            let mut backoff = lock(&self.backoff);
            if code == Some(close::NOT_A_FRIEND) {
                // The peer does not take us: no hurry to try again.
                let attempts = backoff.get(&peer).map_or(0, |b| b.0).saturating_add(1);
                let wait = self.link_backoff(attempts);
                backoff.insert(peer, (attempts, Instant::now() + wait));
            } else if code == Some(close::DUPLICATE) {
                // The peer keeps another link: no dial of ours during the grace, or it would
                // start one more race.
                backoff.insert(peer, (0, Instant::now() + DUPLICATE_GRACE));
            } else {
                backoff.remove(&peer);
            }
        }
        if code == Some(close::DUPLICATE) {
            // The peer keeps the other link of a race: it is usually a handshake away. Until
            // then the friend counts as connected, for every refresh.
            tokio::time::sleep_until(grace_until.into()).await;
        }
        self.refresh_online(peer);
        self.connect_wake.notify_one();
    }

    /// Reports `peer` connected or disconnected if that changed: connected means a friend
    /// with a link (or, for a moment, one its peer closed as a duplicate; see
    /// [`LiveLinks::await_successor`]). A friend that comes online gets its waiting outbox
    /// items at once.
    fn refresh_online(&self, peer: CarrierId) {
        // Decided under the lock of `online`, so two refreshes cannot report what they saw
        // in the opposite order.
        let mut online = lock(&self.online);
        let now_online = read(&self.state).friends.contains_key(&peer)
            && lock(&self.live).linked(&peer, Instant::now());
        if now_online && online.insert(peer) {
            self.emit(FriendEvent::Connected(peer));
            let now = unix_ms();
            let store = self.store.clone();
            let wake = self.wake.clone();
            self.spawn(async move {
                // A failed write leaves the items on their schedule.
                let _ = store
                    .write(move |txn| OUTBOX.make_due(txn, &peer, now).map(drop))
                    .await;
                wake.notify_one();
            });
        } else if !now_online && online.remove(&peer) {
            self.emit(FriendEvent::Disconnected(peer));
        }
    }

    /// The wait after `attempts` failed attempts to reach a friend.
    fn link_backoff(&self, attempts: u32) -> Duration {
        let doubled = self
            .config
            .link_retry_initial
            .saturating_mul(1u32 << attempts.saturating_sub(1).min(16));
        doubled.min(self.config.link_retry_max)
    }

    /// Finds `peer`'s record and dials its first addresses; with `unless_held`, gives up as
    /// soon as a link to `peer` is held (the peer dialled us meanwhile).
    async fn find_and_dial(&self, peer: CarrierId, unless_held: bool) -> Option<Link> {
        let found = tokio::time::timeout(self.config.dial_timeout, self.dht.find_peer(&peer));
        let Ok(Ok(Some(record))) = found.await else {
            return None;
        };
        if record.id != peer || record.expires_unix_secs < unix_ms() / 1000 {
            return None;
        }
        for addr in record.addrs.iter().take(ADDRESSES_PER_ATTEMPT) {
            if unless_held && lock(&self.live).get(&peer).is_some() {
                return None;
            }
            let dialling = self.links.dial(peer, Path::Direct(*addr));
            if let Ok(Ok(link)) = tokio::time::timeout(self.config.dial_timeout, dialling).await {
                return Some(link);
            }
        }
        None
    }

    /// Looks friend `peer` up and dials it; on success the link is held.
    async fn dial_friend(self: Arc<Self>, peer: CarrierId) {
        let link = self.find_and_dial(peer, true).await;
        let up = link.is_some();
        if let Some(link) = link {
            self.adopt(link, true);
        }
        {
            let mut backoff = lock(&self.backoff);
            let attempts = backoff.get(&peer).map_or(0, |b| b.0);
            let attempts = if up {
                attempts
            } else {
                attempts.saturating_add(1)
            };
            let wait = self.link_backoff(attempts.max(1));
            backoff.insert(peer, (attempts, Instant::now() + wait));
        }
        lock(&self.dialling).remove(&peer);
        // A slot is free: the next friend waiting may be dialled now.
        self.connect_wake.notify_one();
    }

    async fn serve_stream(
        self: Arc<Self>,
        peer: CarrierId,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
    ) {
        let reading = async {
            let mut head = [0u8; 2];
            recv.read_exact(&mut head).await.ok()?;
            let length = usize::from(u16::from_be_bytes(head));
            if length > MAX_CONTROL_FRAME_BYTES {
                return None;
            }
            let mut frame = vec![0u8; length];
            recv.read_exact(&mut frame).await.ok()?;
            // One frame, then the end of the stream.
            let mut after = [0u8; 1];
            match recv.read(&mut after).await {
                Ok(None) => Some(frame),
                _ => None,
            }
        };
        let Ok(Some(frame)) = tokio::time::timeout(REQUEST_TIMEOUT, reading).await else {
            let _ = send.reset(close::REQUEST_MALFORMED);
            return;
        };
        let taken = match wire::decode(&frame) {
            Ok(Body::Control(control)) => self.take_control(peer, control).await.is_ok(),
            Ok(Body::Ack(ids)) => self.take_acks(peer, ids.into_vec()).await.is_ok(),
            Ok(Body::Profile(profile)) => {
                matches!(self.take_profile(peer, profile).await, Ok(true))
            }
            // Nothing to take in it: taken as it is, so the sender stops sending it.
            Ok(Body::Request(_)) | Err(_) => true,
        };
        let answer = if taken { ANSWER_TAKEN } else { 0 };
        if send.write_all(&[answer]).await.is_ok() {
            let _ = send.finish();
            // Wait until the peer has the answer (or is gone), so dropping the stream does not
            // cut it off.
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, send.stopped()).await;
        }
    }
}

async fn accept_loop(core: Arc<Core>) {
    while let Some(accepted) = core.links.accept().await {
        match accepted {
            Accepted::Request(mut request) => {
                let taker = core.clone();
                core.spawn(async move {
                    let core = taker;
                    let frame = std::mem::take(&mut request.frame);
                    let code = match core.take_request(request.from, &frame).await {
                        Ok(Taken::Full) | Err(_) => close::REQUEST_NOT_TAKEN,
                        Ok(_) => close::REQUEST_RECEIVED,
                    };
                    request.answer(code);
                });
            }
            Accepted::Link(link) => core.adopt(link, false),
        }
    }
}

async fn outbox_loop(core: Arc<Core>) {
    loop {
        let now = unix_ms();
        let mut next = now.saturating_add(millis(core.config.retry.max));
        if let Ok(mut entries) = state::OUTBOX.load(&core.store) {
            // Oldest first, and one delivery per peer at a time: items to a peer arrive in
            // the order they were made (a remove never overtakes the request before it).
            // Made in the same millisecond, requests go before control items before profiles
            // (an accept must arrive before the profile that follows it).
            entries.sort_by_key(|entry| (entry.created_unix_ms, entry.kind));
            for entry in entries {
                if entry.next_attempt_unix_ms > now {
                    next = next.min(entry.next_attempt_unix_ms);
                    continue;
                }
                {
                    let mut in_flight = lock(&core.in_flight);
                    if in_flight.len() >= MAX_DELIVERIES
                        || in_flight.iter().any(|(peer, _)| *peer == entry.peer)
                        || !in_flight.insert((entry.peer, entry.id))
                    {
                        continue;
                    }
                }
                let attempting = core.clone();
                core.spawn(async move { attempting.attempt(entry).await });
            }
        }
        let wait = Duration::from_millis(next.saturating_sub(now)).max(Duration::from_millis(10));
        tokio::select! {
            () = core.wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

async fn poll_loop(core: Arc<Core>) {
    loop {
        core.poll_mailboxes().await;
        tokio::time::sleep(core.config.poll_interval).await;
    }
}

async fn announce_loop(core: Arc<Core>) {
    loop {
        let addrs = core.addresses();
        let wait = match core.announce().await {
            Ok(stored) if stored > 0 => core.config.announce_interval,
            // Not bootstrapped yet, or nobody stored it: soon again.
            _ => core.config.retry.initial,
        };
        // Until the next announce is due, watch for a change of address: friends looking the
        // node up must find where it is now.
        let due = tokio::time::Instant::now() + wait;
        loop {
            let check = core.config.address_check_interval.min(wait);
            tokio::time::sleep_until(due.min(tokio::time::Instant::now() + check)).await;
            if tokio::time::Instant::now() >= due || core.addresses() != addrs {
                break;
            }
        }
    }
}

/// Takes the friend layer's own streams of every link: control items, profiles,
/// acknowledgements. Unidirectional streams and datagrams are not the friend layer's: refused.
async fn friend_inbox_loop(core: Arc<Core>, mut inbox: LayerInbox) {
    while let Some(inbound) = inbox.recv().await {
        match inbound {
            Inbound::Bi { peer, send, recv } => {
                core.spawn(core.clone().serve_stream(peer, send, recv));
            }
            Inbound::Uni { mut recv, .. } => {
                let _ = recv.stop(crate::layer::codes::NO_RECEIVER);
            }
            Inbound::Datagram { .. } => {}
        }
    }
}

/// Dials the friends without a link whose backoff is over, one attempt per friend and at
/// most `max_concurrent_dials` at once, those waiting longest first.
async fn connect_loop(core: Arc<Core>) {
    loop {
        let now = Instant::now();
        let mut due: Vec<(Option<Instant>, CarrierId)> = {
            let friends: Vec<CarrierId> = read(&core.state).friends.keys().copied().collect();
            let unlinked: Vec<CarrierId> = {
                let live = lock(&core.live);
                friends
                    .into_iter()
                    .filter(|peer| live.get(peer).is_none())
                    .collect()
            };
            let backoff = lock(&core.backoff);
            unlinked
                .into_iter()
                .map(|peer| (backoff.get(&peer).map(|b| b.1), peer))
                .filter(|(until, _)| until.is_none_or(|t| t <= now))
                .collect()
        };
        // Never tried first, then by the end of their backoff.
        due.sort_unstable_by_key(|(until, peer)| (*until, *peer.as_bytes()));
        for (_, peer) in due {
            let mut dialling = lock(&core.dialling);
            if dialling.len() >= core.config.max_concurrent_dials.max(1) {
                break;
            }
            if !dialling.insert(peer) {
                continue;
            }
            drop(dialling);
            core.spawn(core.clone().dial_friend(peer));
        }
        tokio::select! {
            () = core.connect_wake.notified() => {}
            () = tokio::time::sleep(CONNECT_TICK) => {}
        }
    }
}

/// Closes every held link that heard nothing for [`SILENCE_LIMIT`] with [`close::SILENT`]:
/// the keep-alives cross every link well within it, so its friend vanished. QUIC's idle
/// timeout alone would see that up to 40 s late on the side that sends the keep-alives
/// ([`crate::transport`] has why).
async fn silence_loop(core: Arc<Core>) {
    loop {
        tokio::time::sleep(SILENCE_CHECK_INTERVAL).await;
        let silent = lock(&core.live).silent(Instant::now(), SILENCE_LIMIT);
        for link in silent {
            link.close(close::SILENT, b"nothing heard");
        }
    }
}
