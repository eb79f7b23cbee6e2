//! [`Dht`]: the protocol core on a real UDP socket, run by a tokio task.
//!
//! The driver is thin: it feeds the [`Node`] every Carrier-class datagram the socket receives
//! and every timer that falls due, sends what the node wants sent, and hands finished queries
//! back to the callers waiting for them. All protocol decisions stay in the core.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

use carrier_id::{key_file, CarrierId, Keypair};
use tokio::sync::{broadcast, oneshot, Notify};

use crate::io::bootstrap::BootstrapNode;
use crate::io::error::DhtError;
use crate::io::persist;
use crate::io::relaying;
use crate::io::socket::NodeSocket;
use crate::io::store::Store;
use crate::io::{lock, now_from};
use crate::kad::storage::Storage;
use crate::node::config::NodeConfig;
use crate::node::counters::Counters;
use crate::node::error::CommandError;
use crate::node::event::{Event, QueryFinished, QueryId, QueryOutcome};
use crate::node::Node;
use crate::reach::{NatMapping, PublicAddr, Reachability, Standing};
use crate::relay::client::RelayCandidate;
use crate::relay::limits::RelayLimits;
use crate::relay::table::{RelayCounters, RelayTable};
use crate::wire::key::Key;
use crate::wire::message::Contact;
use crate::wire::path::Path;
use crate::wire::record::{ImmutableValue, MutableValue, PeerRecord, RelayHint, Value};
use crate::wire::time::Now;

/// The key file's name in the data directory.
pub const KEY_FILE: &str = "node.key";

/// Settings of a [`Dht`]: [`DhtConfig::new`] (the internet) or [`DhtConfig::local`] (a
/// network on one machine), then `with_*` or the fields. Not built with a struct literal
/// outside this crate (`#[non_exhaustive]`), so a setting can be added without breaking users.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DhtConfig {
    /// Where to bind the node's UDP socket. `[::]:port` binds dual-stack where the OS allows.
    pub bind: SocketAddr,
    /// The node's data directory: its key file, database, stored values and routing table.
    /// `None` keeps everything in memory.
    pub data_dir: Option<PathBuf>,
    /// The node's identity. `None` loads (or creates) `node.key` in the data directory, or
    /// makes a fresh one when there is no data directory.
    pub keypair: Option<Keypair>,
    /// Nodes to join the network through. A node with saved contacts rejoins through those
    /// when this is empty.
    pub bootstrap: Vec<BootstrapNode>,
    /// The protocol core's settings.
    pub node: NodeConfig,
    /// How long a query ([`Dht::find_node`], [`Dht::get`], …) may take before it fails with
    /// [`DhtError::Timeout`].
    pub query_timeout: Duration,
    /// How often the routing table's contacts are saved to the data directory.
    pub save_interval: Duration,
    /// The relay side's limits, or `None` for a node that never relays. On by default: a
    /// node relays for the NATed nodes that register with it, and those choose only servers.
    pub relay: Option<RelayLimits>,
    /// Whether the node, while it is not a server, registers with relays (3, chosen among the
    /// servers it knows) so that peers can reach it through them. On by default.
    pub relay_client: bool,
}

impl Default for DhtConfig {
    fn default() -> Self {
        DhtConfig {
            bind: SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 0], 0)),
            data_dir: None,
            keypair: None,
            bootstrap: Vec::new(),
            node: NodeConfig::default(),
            query_timeout: Duration::from_secs(30),
            save_interval: Duration::from_secs(60),
            relay: Some(RelayLimits::default()),
            relay_client: true,
        }
    }
}

impl DhtConfig {
    /// Production settings on `bind`: the node starts as a client and takes the server role
    /// once a probe shows it is reachable.
    pub fn new(bind: SocketAddr) -> Self {
        DhtConfig {
            bind,
            ..DhtConfig::default()
        }
    }

    /// A node of a network that lives on one machine (loopback tests, demos, benchmarks):
    /// declared a server from the start, since every node there is reachable, and with no
    /// limit of entries per subnet, since every node shares 127.0.0.0/8. Never inferred from
    /// the address: a public node says so with [`NodeConfig::server`](crate::NodeConfig::server).
    pub fn local(bind: SocketAddr) -> Self {
        let mut config = DhtConfig::new(bind);
        config.node.server = true;
        config.node.max_per_subnet = None;
        config
    }

    /// Keeps the key, the database and the routing table in `dir`.
    pub fn with_data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Joins the network through `nodes`.
    pub fn with_bootstrap(mut self, nodes: impl IntoIterator<Item = BootstrapNode>) -> Self {
        self.bootstrap = nodes.into_iter().collect();
        self
    }

    /// Runs the node with this identity instead of the data directory's key file.
    pub fn with_keypair(mut self, keypair: Keypair) -> Self {
        self.keypair = Some(keypair);
        self
    }
}

/// Something the node reports while it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DhtEvent {
    /// The address several peers agree they see us at changed.
    ObservedAddr(SocketAddr),
    /// A bootstrap finished with this many servers in the routing table.
    Bootstrapped {
        /// Routing table entries.
        routing_entries: usize,
    },
    /// Where the node stands changed: public address, NAT mapping, reachability or role.
    Standing(Standing),
}

pub(crate) struct Shared {
    pub(crate) node: Mutex<Node>,
    socket: NodeSocket,
    /// Taken (and so released) by [`Dht::shutdown`].
    store: Mutex<Option<Store>>,
    id: CarrierId,
    local_addr: SocketAddr,
    config: DhtConfig,
    waiting: Mutex<HashMap<QueryId, oneshot::Sender<QueryFinished>>>,
    wake: Notify,
    closed: Notify,
    is_closed: std::sync::atomic::AtomicBool,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    events: broadcast::Sender<DhtEvent>,
    /// Monotonic instants are paired with Unix time once, so the two never disagree.
    pub(crate) epoch: (Instant, SystemTime),
    /// The relays this node is registered with (none while it is a server).
    relay_hints: Arc<Mutex<Vec<RelayHint>>>,
    /// Stops the relay client's task (which holds the socket) on shutdown.
    relay_stop: Arc<Notify>,
    relay_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// A DHT node on a real UDP socket: cheap to clone; every clone is the same node.
///
/// See the crate documentation for an example.
#[derive(Clone)]
pub struct Dht {
    pub(crate) shared: Arc<Shared>,
    _stop: Arc<StopOnDrop>,
}

impl std::fmt::Debug for Dht {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dht")
            .field("id", &self.shared.id)
            .field("local_addr", &self.shared.local_addr)
            .finish()
    }
}

impl Dht {
    /// Binds the socket, opens the data directory (if any) and starts the node. Call
    /// [`Dht::bootstrap`] to join the network. Must be called inside a tokio runtime.
    pub async fn bind(config: DhtConfig) -> Result<Dht, DhtError> {
        let store = match &config.data_dir {
            Some(dir) => {
                let store = Store::open(dir)?;
                persist::ensure_schema(&store).await?;
                Some(store)
            }
            None => None,
        };
        let keypair = match (&config.keypair, &config.data_dir) {
            (Some(keypair), _) => keypair.clone(),
            (None, Some(dir)) => key_file::load_or_create(&dir.join(KEY_FILE))?,
            (None, None) => Keypair::generate(),
        };
        let socket = NodeSocket::bind(config.bind)?;
        let local_addr = socket.local_addr()?;
        let epoch = (Instant::now(), SystemTime::now());
        let now = now_from(epoch, Instant::now());
        let storage = match &store {
            Some(store) => Storage::new(
                Box::new(persist::load_items(store, now.unix_ms)?),
                config.node.storage,
            )
            .journaled(),
            None => Storage::in_memory(config.node.storage),
        };
        let mut seed = [0u8; 32];
        rand_seed(&mut seed);
        let id = keypair.id();
        if let Some(limits) = &config.relay {
            let mut relay_seed = [0u8; 32];
            rand_seed(&mut relay_seed);
            socket.set_relay(Some(RelayTable::new(
                Key::of_node(&id),
                relay_seed,
                limits.clone(),
            )));
        }
        let mut node = Node::with_storage(config.node.clone(), keypair, seed, storage);
        if let Some(store) = &store {
            let restored = persist::load_mailboxes(store, now.unix_ms)?;
            let tombstones = persist::load_tombstones(store, now.unix_ms)?;
            node = node.with_mailboxes(
                crate::mailbox::storer::MailboxStorage::journaled(
                    config.node.mailbox,
                    restored,
                    now.unix_ms,
                )
                .with_tombstones(tombstones, now.unix_ms),
            );
        }
        let (events, _) = broadcast::channel(64);
        let shared = Arc::new(Shared {
            node: Mutex::new(node),
            socket,
            store: Mutex::new(store),
            id,
            local_addr,
            config,
            waiting: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            closed: Notify::new(),
            is_closed: std::sync::atomic::AtomicBool::new(false),
            task: Mutex::new(None),
            events,
            epoch,
            relay_hints: Arc::new(Mutex::new(Vec::new())),
            relay_stop: Arc::new(Notify::new()),
            relay_task: Mutex::new(None),
        });
        let task = tokio::spawn(drive(shared.clone()));
        // The relay task registers with relays (`relay_client`) and is the relay side's timer
        // (`relay`); without the client it acts as a server would, registering nowhere.
        let registers = shared.config.relay_client;
        if registers || shared.config.relay.is_some() {
            let mut relay_seed = [0u8; 32];
            rand_seed(&mut relay_seed);
            let weak = Arc::downgrade(&shared);
            let keypair = lock(&shared.node).keypair().clone();
            let client = tokio::spawn(relaying::run_client(
                shared.socket.clone(),
                keypair,
                shared.relay_hints.clone(),
                relay_seed,
                shared.relay_stop.clone(),
                move || {
                    relay_candidates(&weak)
                        .map(|(server, candidates)| (server || !registers, candidates))
                },
            ));
            *lock(&shared.relay_task) = Some(client);
        }
        *lock(&shared.task) = Some(task);
        Ok(Dht {
            _stop: Arc::new(StopOnDrop(shared.clone())),
            shared,
        })
    }

    /// The relays this node is registered with now, for its peer record (at most 3; none
    /// while it is a server or [`DhtConfig::relay_client`] is off).
    pub fn relay_hints(&self) -> Vec<RelayHint> {
        lock(&self.shared.relay_hints).clone()
    }

    /// What the node's relay side did so far (`None` when [`DhtConfig::relay`] is off), with
    /// the registrations and sessions it holds now.
    pub fn relay_status(&self) -> Option<(RelayCounters, usize, usize)> {
        self.shared
            .socket
            .with_relay(|relay| (relay.counters(), relay.registrations(), relay.sessions()))
    }

    /// This node's Carrier ID.
    pub fn id(&self) -> CarrierId {
        self.shared.id
    }

    /// This node's key pair: the secret behind its Carrier ID, which the layers above use to
    /// prove that ID (TLS, signatures).
    pub fn keypair(&self) -> Keypair {
        lock(&self.shared.node).keypair().clone()
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// The node's socket, which QUIC shares (see [`NodeSocket`]).
    pub fn socket(&self) -> &NodeSocket {
        &self.shared.socket
    }

    /// The node's database, shared by every layer; `None` when the node keeps nothing on disk,
    /// or after [`Dht::shutdown`].
    pub fn store(&self) -> Option<Store> {
        lock(&self.shared.store).clone()
    }

    /// The public address several peers agree they see us at, once they do.
    pub fn observed_addr(&self) -> Option<SocketAddr> {
        lock(&self.shared.node).observed_addr()
    }

    /// Where the node stands: public address, NAT mapping, reachability and role.
    pub fn standing(&self) -> Standing {
        lock(&self.shared.node).standing()
    }

    /// The public IP peers agree on, with its port or a note that it varies per peer.
    pub fn public_addr(&self) -> Option<PublicAddr> {
        lock(&self.shared.node).public_addr()
    }

    /// The NAT's mapping behaviour, as peers' reports show it.
    pub fn nat_mapping(&self) -> NatMapping {
        lock(&self.shared.node).nat_mapping()
    }

    /// Reachability from outside, as probes show it.
    pub fn reachability(&self) -> Reachability {
        lock(&self.shared.node).reachability()
    }

    /// Whether the node acts as a server: it enters routing tables and stores for others.
    pub fn is_server(&self) -> bool {
        lock(&self.shared.node).is_server()
    }

    /// Counters of what the node received, dropped and sent.
    pub fn counters(&self) -> Counters {
        lock(&self.shared.node).counters().clone()
    }

    /// Servers in the routing table.
    pub fn routing_entries(&self) -> usize {
        lock(&self.shared.node).routing_table().len()
    }

    /// When a server of the routing table was last heard from, if any is there: whether
    /// the node is still in touch with the network.
    pub fn last_heard(&self) -> Option<Instant> {
        lock(&self.shared.node)
            .routing_table()
            .entries()
            .map(|entry| entry.last_seen)
            .max()
    }

    /// Sizes of the node's bounded tables against their caps: (replay cache, pair keys,
    /// rate-limited IPs, pending requests).
    pub fn table_sizes(&self) -> [(usize, usize); 4] {
        lock(&self.shared.node).table_sizes()
    }

    /// Runs `f` on the protocol core, for carrier-dht's own tests and diagnostics; not part of
    /// the API the layers above build on (everything they need has its own method).
    #[doc(hidden)]
    pub fn with_node<T>(&self, f: impl FnOnce(&Node) -> T) -> T {
        f(&lock(&self.shared.node))
    }

    /// Events from now on. A receiver that falls more than 64 events behind misses the oldest.
    pub fn events(&self) -> broadcast::Receiver<DhtEvent> {
        self.shared.events.subscribe()
    }

    /// Joins the network through the configured bootstrap nodes, or, when there are none,
    /// through the contacts saved by an earlier run. Returns the routing table's size.
    pub async fn bootstrap(&self) -> Result<usize, DhtError> {
        let mut seeds = Vec::new();
        for node in &self.shared.config.bootstrap {
            seeds.extend(node.lookup().await?);
        }
        if seeds.is_empty() {
            if let Some(store) = self.store() {
                seeds = persist::load_contacts(&store)?;
            }
        }
        if seeds.is_empty() {
            return Err(DhtError::NotBootstrapped);
        }
        let tried = seeds.len();
        // The core starts the lookup over (up to BOOTSTRAP_ROUNDS times) while nobody answers.
        let finished = self.query(|node, now| node.bootstrap(now, &seeds)).await?;
        if finished.closest.is_empty() {
            return Err(DhtError::BootstrapFailed { tried });
        }
        let routing_entries = self.routing_entries();
        let _ = self
            .shared
            .events
            .send(DhtEvent::Bootstrapped { routing_entries });
        self.save_contacts().await?;
        Ok(routing_entries)
    }

    /// The K closest servers to `target` that answered, closest first.
    pub async fn find_node(&self, target: Key) -> Result<Vec<Contact>, DhtError> {
        self.require_contacts()?;
        Ok(self
            .query(|node, now| node.find_node(now, target))
            .await?
            .closest)
    }

    /// The value stored under `key` (the highest sequence for mutable values), if any.
    pub async fn get(&self, key: Key) -> Result<Option<Value>, DhtError> {
        self.require_contacts()?;
        match self.query(|node, now| node.get(now, key)).await?.outcome {
            QueryOutcome::Value(value) => Ok(value),
            _ => Ok(None),
        }
    }

    /// Stores an immutable value (its key is the blake3 hash of `data`) at the K closest
    /// servers. Returns the key and how many servers stored it.
    pub async fn put_immutable(&self, data: &[u8]) -> Result<(Key, usize), DhtError> {
        let value = ImmutableValue::new(data).map_err(|_| DhtError::TooLarge {
            len: data.len(),
            max: crate::wire::record::MAX_VALUE_BYTES,
        })?;
        let key = value.key();
        let acks = self.put(Value::Immutable(value)).await?;
        Ok((key, acks))
    }

    /// Signs and stores a mutable value owned by this node under `salt`, with sequence `seq`
    /// (storers keep only the highest). Returns its key and how many servers stored it.
    pub async fn put_mutable(
        &self,
        salt: &[u8],
        seq: u64,
        data: &[u8],
    ) -> Result<(Key, usize), DhtError> {
        let value = {
            let node = lock(&self.shared.node);
            MutableValue::sign(node.keypair(), salt, seq, data).map_err(|_| DhtError::TooLarge {
                len: data.len(),
                max: crate::wire::record::MAX_VALUE_BYTES,
            })?
        };
        let key = value.key();
        let acks = self.put(Value::Mutable(value)).await?;
        Ok((key, acks))
    }

    /// Stores a value at the K closest servers to its key; returns how many stored it.
    pub async fn put(&self, value: Value) -> Result<usize, DhtError> {
        self.put_cas(value, None).await
    }

    /// Stores a mutable value only where the stored sequence is `expected_seq`
    /// (compare-and-swap; `None` stores unconditionally). Returns how many stored it.
    pub async fn put_cas(
        &self,
        value: Value,
        expected_seq: Option<u64>,
    ) -> Result<usize, DhtError> {
        self.require_contacts()?;
        let finished = self
            .query(|node, now| node.put(now, value.clone(), expected_seq))
            .await?;
        stored(finished.outcome)
    }

    /// Publishes this node's signed peer record at the K closest servers to its ID; returns
    /// how many stored it.
    pub async fn announce(&self, record: PeerRecord) -> Result<usize, DhtError> {
        self.require_contacts()?;
        let finished = self
            .query(|node, now| node.announce(now, record.clone()))
            .await?;
        stored(finished.outcome)
    }

    /// The newest valid peer record of `id`, if any server has it.
    pub async fn find_peer(&self, id: &CarrierId) -> Result<Option<PeerRecord>, DhtError> {
        self.require_contacts()?;
        let key = Key::of_node(id);
        match self
            .query(|node, now| node.find_peer(now, key))
            .await?
            .outcome
        {
            QueryOutcome::Peer(record) => Ok(record),
            _ => Ok(None),
        }
    }

    /// Whether the node `id` answers a ping at `addr` (with the usual retries).
    pub async fn ping(&self, id: &CarrierId, addr: SocketAddr) -> Result<bool, DhtError> {
        let contact = Contact {
            id: Key::of_node(id),
            addr,
        };
        match self
            .query(|node, now| Ok(node.ping(now, contact)))
            .await?
            .outcome
        {
            QueryOutcome::Pong(answered) => Ok(answered),
            _ => Ok(false),
        }
    }

    /// Saves the routing table's contacts so a restart can rejoin without bootstrap nodes.
    pub async fn save_contacts(&self) -> Result<(), DhtError> {
        if let Some(store) = self.store() {
            let contacts: Vec<Contact> = lock(&self.shared.node)
                .routing_table()
                .entries()
                .map(|e| e.contact)
                .collect();
            persist::save_contacts(&store, contacts).await?;
        }
        Ok(())
    }

    /// Saves the routing table, stops the node's task, waits until it has stopped, and closes
    /// the database ([`Store::close`]) for every layer that holds a clone of it: once this
    /// returns, a node started on the same data directory opens it at once. Queries on other
    /// clones fail with [`DhtError::Closed`] from then on, and the layers' reads and writes
    /// with a closed store; the socket closes when the last clone is dropped.
    pub async fn shutdown(self) -> Result<(), DhtError> {
        let saved = self.save_contacts().await;
        self.shared
            .is_closed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.shared.closed.notify_one();
        self.shared.relay_stop.notify_one();
        let relay_task = lock(&self.shared.relay_task).take();
        if let Some(task) = relay_task {
            let _ = task.await;
        }
        lock(&self.shared.waiting).clear();
        let task = lock(&self.shared.task).take();
        if let Some(task) = task {
            let _ = task.await;
        }
        let store = lock(&self.shared.store).take();
        if let Some(store) = store {
            // For every layer that holds a clone: the node's data directory is free once this
            // returns, whatever handles of the layers above an application still holds.
            store.close().await;
        }
        saved
    }

    pub(crate) fn require_contacts(&self) -> Result<(), DhtError> {
        if lock(&self.shared.node).routing_table().is_empty() {
            Err(DhtError::NotBootstrapped)
        } else {
            Ok(())
        }
    }

    /// Starts a query on the core and waits for its result.
    pub(crate) async fn query(
        &self,
        start: impl FnOnce(&mut Node, Now) -> Result<QueryId, CommandError>,
    ) -> Result<QueryFinished, DhtError> {
        if self
            .shared
            .is_closed
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Err(DhtError::Closed);
        }
        let (sender, receiver) = oneshot::channel();
        {
            let mut node = lock(&self.shared.node);
            let now = now_from(self.shared.epoch, Instant::now());
            let id = start(&mut node, now)?;
            lock(&self.shared.waiting).insert(id, sender);
        }
        self.shared.wake.notify_one();
        let timeout = self.shared.config.query_timeout;
        match tokio::time::timeout(timeout, receiver).await {
            Ok(Ok(finished)) => Ok(finished),
            Ok(Err(_)) => Err(DhtError::Closed),
            Err(_) => Err(DhtError::Timeout(timeout)),
        }
    }

    /// Starts several queries on the core at once and waits for all of them (within one
    /// query timeout); each result comes with the tag `start` gave its query.
    pub(crate) async fn queries<T>(
        &self,
        start: impl FnOnce(&mut Node, Now) -> Result<Vec<(T, QueryId)>, CommandError>,
    ) -> Result<Vec<(T, QueryFinished)>, DhtError> {
        if self
            .shared
            .is_closed
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Err(DhtError::Closed);
        }
        let mut receivers = Vec::new();
        {
            let mut node = lock(&self.shared.node);
            let now = now_from(self.shared.epoch, Instant::now());
            let started = start(&mut node, now)?;
            let mut waiting = lock(&self.shared.waiting);
            for (tag, id) in started {
                let (sender, receiver) = oneshot::channel();
                waiting.insert(id, sender);
                receivers.push((tag, receiver));
            }
        }
        self.shared.wake.notify_one();
        let timeout = self.shared.config.query_timeout;
        let all = async {
            let mut done = Vec::with_capacity(receivers.len());
            for (tag, receiver) in receivers {
                done.push((tag, receiver.await.map_err(|_| DhtError::Closed)?));
            }
            Ok(done)
        };
        tokio::time::timeout(timeout, all)
            .await
            .unwrap_or(Err(DhtError::Timeout(timeout)))
    }
}

fn stored(outcome: QueryOutcome) -> Result<usize, DhtError> {
    match outcome {
        QueryOutcome::Stored { acks: 0, refusals } => Err(DhtError::Rejected { refusals }),
        QueryOutcome::Stored { acks, .. } => Ok(acks),
        _ => Err(DhtError::Rejected {
            refusals: Vec::new(),
        }),
    }
}

fn rand_seed(seed: &mut [u8; 32]) {
    use rand_core::RngCore;
    rand_core::OsRng.fill_bytes(seed);
}

/// What woke the driver.
enum Wake {
    Datagram(std::io::Result<crate::io::socket::Datagram>),
    Timer,
    Command,
    Closed,
}

/// Where the node stands and the servers it could register with (those in its routing
/// table), for the relay client; `None` once the node has stopped.
fn relay_candidates(shared: &std::sync::Weak<Shared>) -> Option<(bool, Vec<RelayCandidate>)> {
    let shared = shared.upgrade()?;
    if shared.is_closed.load(std::sync::atomic::Ordering::Acquire) {
        return None;
    }
    let bootstrap: Vec<Key> = shared
        .config
        .bootstrap
        .iter()
        .map(|node| Key::of_node(&node.id))
        .collect();
    let node = lock(&shared.node);
    let candidates = node
        .routing_table()
        .entries()
        .map(|entry| RelayCandidate {
            id: entry.contact.id,
            addr: entry.contact.addr,
            rtt: node.rtt_of(&entry.contact.id),
            bootstrap: bootstrap.contains(&entry.contact.id),
        })
        .collect();
    Some((node.is_server(), candidates))
}

/// Tells the node's task to stop when the last [`Dht`] handle is dropped.
struct StopOnDrop(Arc<Shared>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.closed.notify_one();
        self.0.relay_stop.notify_one();
    }
}

/// The node's task: runs until [`Dht::shutdown`] or until every handle is dropped.
async fn drive(shared: Arc<Shared>) {
    let save_interval = shared.config.save_interval;
    let mut next_save = Instant::now() + save_interval;
    // The core arms its maintenance timer on its first timeout. A node whose every request
    // is answered would otherwise never get one (answered requests leave no deadline), and
    // never refresh its buckets, republish, or notice that its contacts went silent.
    lock(&shared.node).handle_timeout(now_from(shared.epoch, Instant::now()));
    loop {
        let deadline = flush(&shared).await;
        if Instant::now() >= next_save {
            next_save = Instant::now() + save_interval;
            save_contacts_detached(&shared);
        }
        let wake_at = deadline.map_or(next_save, |d| d.min(next_save));
        let wake = {
            let mut datagram = std::pin::pin!(shared.socket.recv_carrier());
            let mut timer = std::pin::pin!(tokio::time::sleep_until(wake_at.into()));
            let mut command = std::pin::pin!(shared.wake.notified());
            let mut closed = std::pin::pin!(shared.closed.notified());
            std::future::poll_fn(|cx| {
                if closed.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wake::Closed);
                }
                if let Poll::Ready(d) = datagram.as_mut().poll(cx) {
                    return Poll::Ready(Wake::Datagram(d));
                }
                if command.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wake::Command);
                }
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wake::Timer);
                }
                Poll::Pending
            })
            .await
        };
        match wake {
            Wake::Closed => {
                let writes = lock(&shared.node).take_writes();
                if let Some(store) = lock(&shared.store).as_ref() {
                    persist::commit_writes(store, writes);
                }
                save_contacts_detached(&shared);
                return;
            }
            Wake::Datagram(Ok(first)) => {
                let mut node = lock(&shared.node);
                let now = now_from(shared.epoch, Instant::now());
                node.handle_datagram(now, Path::Direct(first.from), &first.data);
                // Take everything already queued in one go: one flush for a burst.
                while let Some(datagram) = shared.socket.try_recv_carrier() {
                    node.handle_datagram(now, Path::Direct(datagram.from), &datagram.data);
                }
            }
            Wake::Datagram(Err(_)) => {
                // Not a per-datagram error (those are skipped by the socket): back off rather
                // than spin, and try again.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Wake::Timer | Wake::Command => {}
        }
        if deadline.is_some_and(|d| d <= Instant::now()) {
            let now = now_from(shared.epoch, Instant::now());
            lock(&shared.node).handle_timeout(now);
        }
    }
}

/// Sends what the core wants sent, hands finished queries to their callers, reports events,
/// and returns when the core next wants [`Node::handle_timeout`].
async fn flush(shared: &Shared) -> Option<Instant> {
    let mut transmits = Vec::new();
    let mut finished = Vec::new();
    let mut standings = Vec::new();
    let mut observed = Vec::new();
    let deadline = {
        let mut node = lock(&shared.node);
        while let Some(transmit) = node.poll_transmit() {
            transmits.push(transmit);
        }
        while let Some(event) = node.poll_event() {
            match event {
                Event::QueryFinished(done) => finished.push(done),
                Event::Standing(standing) => standings.push(standing),
                Event::ObservedAddr(addr) => observed.push(addr),
            }
        }
        let writes = node.take_writes();
        if !writes.is_empty() {
            if let Some(store) = lock(&shared.store).as_ref() {
                persist::commit_writes(store, writes);
            }
        }
        node.poll_timeout()
    };
    for transmit in transmits {
        let to = transmit.path.socket_addr();
        match shared.socket.try_send(to, &transmit.contents) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let _ = shared.socket.send(to, &transmit.contents).await;
            }
            // A datagram that cannot be sent is lost, as on any network; the core retries.
            Err(_) => {}
        }
    }
    if !finished.is_empty() {
        let mut waiting = lock(&shared.waiting);
        for done in finished {
            if let Some(sender) = waiting.remove(&done.id) {
                let _ = sender.send(done);
            }
        }
    }
    for standing in standings {
        let _ = shared.events.send(DhtEvent::Standing(standing));
    }
    for addr in observed {
        let _ = shared.events.send(DhtEvent::ObservedAddr(addr));
    }
    deadline
}

fn save_contacts_detached(shared: &Shared) {
    let Some(store) = lock(&shared.store).clone() else {
        return;
    };
    let contacts: Vec<Contact> = lock(&shared.node)
        .routing_table()
        .entries()
        .map(|e| e.contact)
        .collect();
    if !contacts.is_empty() {
        let _ = store.write_detached(move |txn| persist::replace_contacts(txn, &contacts));
    }
}
