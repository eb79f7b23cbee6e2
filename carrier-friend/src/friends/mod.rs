//! [`Friends`]: friend requests that survive restarts and offline peers, the friend list, one
//! live link per online friend, and the user info and presence friends tell each other.
//!
//! Links: a node dials every friend it holds no link to (looking its peer record up, with
//! backoff) and accepts friends' dials; when both dial at once one link survives on both sides
//! ([`machine`] decides). Every link is served by the layer's [`ExtensionRouter`], so each
//! layer above receives only its own streams; the friend layer's own travel as
//! [`Extension::FRIEND`] streams.
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

mod announce;
mod commands;
mod config;
mod delivery;
mod error;
mod events;
mod failover;
mod lan;
mod links;
mod machine;
mod mailbox;
mod punch;
mod rules;
mod signal;
mod state;
mod tiebreak;
mod wire;

pub use config::{FriendsConfig, MAX_INCOMING_REQUESTS};
pub use error::FriendError;
pub use events::{Friend, FriendEvent, FriendEvents, FriendRequest, OutgoingRequest};
pub use failover::{keep_relayed_link, FAILOVER_CHECK_INTERVAL, FAILOVER_SILENCE};
pub use wire::{
    InfoError, Presence, UserInfo, MAX_DESCRIPTION_BYTES, MAX_EMAIL_BYTES, MAX_GENDER_BYTES,
    MAX_HELLO_BYTES, MAX_LABEL_BYTES, MAX_NAME_BYTES, MAX_PHONE_BYTES, MAX_REGION_BYTES,
};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use carrier_dht::id::{CarrierId, Keypair};
use carrier_dht::store::{DatabaseError, Store};
use carrier_dht::Dht;
use tokio::sync::{mpsc, Notify};
use tokio::task::{JoinHandle, JoinSet};

use self::announce::announce_loop;
use self::delivery::{friend_inbox_loop, outbox_loop};
use self::links::{accept_loop, machine_loop};
use self::mailbox::poll_loop;
use self::state::{State, Tables};
use crate::link::extension::{Extension, ExtensionRouter};
use crate::link::{FriendGate, LinkConfig, LinkEndpoint};
use crate::outbox::Scheduler;

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
        self.core.closed.store(true, Ordering::SeqCst);
        for task in lock(&self.loops).drain(..) {
            task.abort();
        }
        lock(&self.core.work).abort_all();
    }

    /// Aborts every task and waits until each has ended, so none holds the layer's state (and
    /// through it the node's `Dht` and `Store`) any more.
    async fn stop(&self) {
        // From here on `spawn` starts nothing.
        self.core.closed.store(true, Ordering::SeqCst);
        let loops: Vec<JoinHandle<()>> = lock(&self.loops).drain(..).collect();
        for task in &loops {
            task.abort();
        }
        for task in loops {
            // Cancelled, as asked.
            let _ = task.await;
        }
        loop {
            let mut work = std::mem::take(&mut *lock(&self.core.work));
            if work.is_empty() {
                break;
            }
            work.abort_all();
            while work.join_next().await.is_some() {}
        }
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
    endpoint: LinkEndpoint,
    keypair: Keypair,
    id: CarrierId,
    config: FriendsConfig,
    state: Arc<RwLock<State>>,
    reload: Mutex<()>,
    events: mpsc::UnboundedSender<FriendEvent>,
    /// The layers above that follow the events too ([`Friends::subscribe`]).
    subscribers: Mutex<Vec<mpsc::UnboundedSender<FriendEvent>>>,
    wake: Arc<Notify>,
    /// Which outbox entries are being delivered.
    scheduler: Mutex<Scheduler>,
    /// Work the loops start (deliveries, links, streams, requests), aborted on shutdown.
    work: Mutex<JoinSet<()>>,
    /// Shut down: no more work starts.
    closed: AtomicBool,
    /// Routes every friend link's streams and datagrams to the inbox of their layer.
    router: ExtensionRouter,
    /// The links: which is held per friend, who is online, whom to dial when.
    machine: Mutex<links::Machine>,
    /// Wakes the machine's driver: an input arrived.
    machine_wake: Notify,
    /// Counts the links adopted: a dial the machine started watches it, and gives up once a
    /// link to its peer is held (see [`links`]).
    adopted: tokio::sync::watch::Sender<u64>,
    /// The path each peer's last link ran on: where a dial starts before the lookup returns.
    last_paths: Mutex<std::collections::HashMap<CarrierId, carrier_dht::Path>>,
    /// The links that came up relayed, being punched ([`punch`]).
    punching: Mutex<punch::Punching>,
    /// Wakes the punchers' driver: a link to punch, candidates arrived.
    punch_wake: Notify,
    /// Wakes the mDNS loop: this node's LAN key changed, its token is advertised again.
    lan_wake: Notify,
    /// Friends seen on the LAN ([`lan`]).
    lan_seen: Mutex<lan::Sightings>,
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

impl Friends {
    /// Starts the friend layer on `dht`, one per node. The DHT must have a data directory:
    /// the layer keeps everything in the node's database. Opens the node's QUIC endpoint on
    /// the DHT's socket with a gate that admits friends, and starts the background work:
    /// joining the DHT through its configured bootstrap nodes if nobody bootstrapped it,
    /// taking requests and control items, delivering the outbox, checking the mailboxes,
    /// announcing the node's peer record. Returns the layer and its events.
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
        link_config.liveness = config.liveness;
        let endpoint = LinkEndpoint::new(dht.socket().clone(), &keypair, link_config)?;
        let (events, receiver) = mpsc::unbounded_channel();
        // The layers above hear only friends; a peer this node asked (admitted by the gate
        // so its accept can arrive) reaches the friend layer alone.
        let admitted = state.clone();
        let router = ExtensionRouter::with_admission(move |peer, layer| {
            layer == Extension::FRIEND || read(&admitted).friends.contains_key(peer)
        });
        // Invariant: a fresh router has no inboxes, so the first registration cannot fail.
        #[allow(clippy::expect_used)]
        let inbox = router
            .register(Extension::FRIEND)
            .expect("a fresh router has no inbox");
        let mut machine = links::Machine::new(keypair.id(), links::machine_settings(&config));
        machine.set_friends(read(&state).friends.keys().copied());
        // LAN keys are exchanged wherever `config.lan` is on; the mDNS service besides only
        // off loopback.
        let mdns_on = config.lan && !dht.local_addr().ip().is_loopback();
        let core = Arc::new(Core {
            lan_wake: Notify::new(),
            lan_seen: Mutex::new(lan::Sightings::default()),
            machine: Mutex::new(machine),
            machine_wake: Notify::new(),
            adopted: tokio::sync::watch::Sender::new(0),
            last_paths: Mutex::new(std::collections::HashMap::new()),
            punching: Mutex::new(punch::Punching::default()),
            punch_wake: Notify::new(),
            router,
            id: keypair.id(),
            dht,
            store,
            endpoint,
            keypair,
            config,
            state,
            reload: Mutex::new(()),
            events,
            subscribers: Mutex::new(Vec::new()),
            wake: Arc::new(Notify::new()),
            scheduler: Mutex::new(Scheduler::default()),
            work: Mutex::new(JoinSet::new()),
            closed: AtomicBool::new(false),
        });
        let (abandoned, late) = mpsc::unbounded_channel();
        core.endpoint.on_abandoned_dial(move |link| {
            // Gone only once the layer is stopped: the link closes as it is dropped.
            let _ = abandoned.send(link);
        });
        let mut tasks = vec![
            tokio::spawn(links::abandoned_loop(core.clone(), late)),
            tokio::spawn(accept_loop(core.clone())),
            tokio::spawn(outbox_loop(core.clone())),
            tokio::spawn(poll_loop(core.clone())),
            tokio::spawn(announce_loop(core.clone())),
            tokio::spawn(friend_inbox_loop(core.clone(), inbox)),
            tokio::spawn(machine_loop(core.clone())),
            tokio::spawn(punch::punch_loop(core.clone())),
        ];
        if mdns_on {
            tasks.push(tokio::spawn(lan::lan_loop(core.clone())));
        }
        let friends = Friends {
            tasks: Arc::new(Tasks {
                loops: Mutex::new(tasks),
                core: core.clone(),
            }),
            core,
        };
        Ok((friends, receiver))
    }
}

impl Core {
    /// Runs `f` on the tables in one committed transaction, then refreshes the in-memory
    /// copy.
    pub(super) async fn change<T, F>(&self, mut f: F) -> Result<T, FriendError>
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
    pub(super) fn reload(&self) -> Result<(), FriendError> {
        let _serial = lock(&self.reload);
        let fresh = State::load(&self.store)?;
        let rotated = {
            let mut state = self
                .state
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let rotated = state.lan_key != fresh.lan_key;
            *state = fresh;
            rotated
        };
        let friends: Vec<CarrierId> = read(&self.state).friends.keys().copied().collect();
        lock(&self.machine).set_friends(friends);
        self.machine_wake.notify_one();
        if rotated {
            self.lan_key_rotated();
        }
        Ok(())
    }

    /// Runs `work` in the background until it ends or the layer shuts down.
    pub(super) fn spawn(&self, work: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut set = lock(&self.work);
        // Read under the lock: work either starts before `Tasks::stop` takes the set, or not.
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        // Finished work is reaped here, so the set holds only what still runs.
        while set.try_join_next().is_some() {}
        set.spawn(work);
    }

    pub(super) fn emit(&self, event: FriendEvent) {
        if let FriendEvent::Added(peer) = &event {
            // A link that came up before the friendship (it carried the accept) had no key.
            let held = lock(&self.machine).link(peer);
            if let Some(link) = held {
                self.send_lan_key(&link);
            }
        }
        // A subscriber that went away is dropped from the list.
        lock(&self.subscribers).retain(|subscriber| subscriber.send(event.clone()).is_ok());
        // Nobody listening is the application's choice.
        let _ = self.events.send(event);
    }
}
