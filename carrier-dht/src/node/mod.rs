//! The DHT node as a state machine without I/O: datagrams, timer ticks and commands go in
//! with the time; datagrams to send, events and the next wake-up come out.

pub(crate) mod config;
pub(crate) mod counters;
pub(crate) mod error;
pub(crate) mod event;
mod lookups;
mod mailbox_commands;
mod mailbox_query;
pub(crate) mod query;
mod reach;
mod requests;
pub(crate) mod rpc;
pub(crate) mod rtt;
mod serve;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use carrier_id::Keypair;

use crate::guard::lru::BoundedLru;
use crate::guard::rate_limit::{IpRateLimit, PerSecondBudget};
use crate::guard::replay::ReplayCache;
use crate::guard::token::TokenIssuer;
use crate::kad::routing::RoutingTable;
use crate::kad::storage::Storage;
use crate::mailbox::storer::MailboxStorage;
use crate::node::config::NodeConfig;
use crate::node::counters::Counters;
use crate::node::event::{Event, QueryId, StorageWrite, Transmit};
use crate::node::query::Query;
use crate::node::rpc::Pending;
use crate::node::rtt::RttEstimator;
use crate::reach::{Observations, Prober, Standing};
use crate::wire::entropy::Entropy;
use crate::wire::error::WireError;
use crate::wire::key::Key;
use crate::wire::message::Contact;
use crate::wire::message::Message;
use crate::wire::packet::{self, Header, PairKey, MAX_DATAGRAM_BYTES};
use crate::wire::path::Path;
use crate::wire::time::Now;
use crate::wire::token::Token;

/// Smallest datagram for a lookup request to an address that has not proved itself: a third
/// of the datagram budget, so any reply fits the 3x amplification limit.
pub const MIN_UNPROVEN_REQUEST_BYTES: usize = MAX_DATAGRAM_BYTES.div_ceil(3);
/// Upper bound of a ping's datagram; a node pings back a new requester only when this fits
/// the amplification budget the request left.
pub const MAX_PING_BYTES: usize = 128;
/// Bootstrap contacts kept to rejoin through when the routing table empties.
pub(crate) const REJOIN_SEEDS: usize = 16;

/// Why no pair key could be had.
enum KeyFailure {
    /// The Diffie-Hellman budget of this second is spent.
    BudgetSpent,
    /// The peer's ID is not a valid Carrier ID, or the agreement is weak.
    BadPeer,
}

/// A Carrier DHT node, without I/O.
///
/// The driver feeds it datagrams ([`Node::handle_datagram`]), wakes it at
/// [`Node::poll_timeout`] ([`Node::handle_timeout`]), gives it commands ([`Node::get`],
/// [`Node::put`], …) and then drains [`Node::poll_transmit`] and [`Node::poll_event`]. Every
/// input carries the time as a [`Now`]; the node reads no clock and does no I/O, so the same
/// code runs on a socket and in the simulator.
///
/// # Example
///
/// A driver in miniature: `a` pings `b`, and the datagrams are carried by hand.
///
/// ```
/// use std::time::Instant;
/// use carrier_dht::id::Keypair;
/// use carrier_dht::{NodeConfig, Contact, Event, Node, Now, Path, QueryOutcome};
///
/// let config = NodeConfig { server: true, ..NodeConfig::default() };
/// let mut a = Node::new(config.clone(), Keypair::from_seed(&[1; 32]), [1; 32]);
/// let mut b = Node::new(config, Keypair::from_seed(&[2; 32]), [2; 32]);
/// let (a_addr, b_addr) = ("10.0.0.1:4000".parse()?, "10.0.0.2:4000".parse()?);
/// let now = Now::new(Instant::now(), 1_767_225_600_000);
///
/// a.ping(now, Contact { id: b.key(), addr: b_addr });
/// loop {
///     let mut quiet = true;
///     while let Some(t) = a.poll_transmit() {
///         b.handle_datagram(now, Path::Direct(a_addr), &t.contents);
///         quiet = false;
///     }
///     while let Some(t) = b.poll_transmit() {
///         a.handle_datagram(now, Path::Direct(b_addr), &t.contents);
///         quiet = false;
///     }
///     if quiet {
///         break;
///     }
/// }
/// let Some(Event::QueryFinished(done)) = a.poll_event() else { panic!("no result") };
/// assert_eq!(done.outcome, QueryOutcome::Pong(true));
/// assert!(a.routing_table().contains(&b.key()));
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
pub struct Node {
    keypair: Keypair,
    own: Key,
    config: NodeConfig,
    server: bool,
    entropy: Entropy,
    table: RoutingTable,
    storage: Storage,
    mailboxes: MailboxStorage,
    token_issuer: TokenIssuer,
    peer_tokens: BoundedLru<Key, Token>,
    pair_keys: BoundedLru<Key, PairKey>,
    rtt: BoundedLru<Key, RttEstimator>,
    /// RTT over all peers: the timeout for a peer not yet measured, instead of a fixed guess.
    rtt_all: Option<RttEstimator>,
    replay: ReplayCache,
    ip_limit: IpRateLimit,
    dh_budget: PerSecondBudget,
    pending: HashMap<u64, Pending>,
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    queries: HashMap<QueryId, Query>,
    next_query: u64,
    verifying: HashSet<Key>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    counters: Counters,
    maintenance_at: Option<Instant>,
    /// A second self-lookup is due at the next maintenance tick.
    rejoin_pending: bool,
    /// When the lookups that settle a join are due: a self-lookup once the nodes that joined
    /// at the same time are in tables, and the near buckets' refresh.
    settle_at: Option<Instant>,
    /// The last bootstrap found fewer than K servers: the network around us is young (its
    /// nodes are joining in the same moment), and settling the join fills the empty far
    /// buckets.
    young: bool,
    /// What peers report of our address.
    observations: Observations,
    /// The reachability check.
    prober: Prober,
    /// Standing as last reported in an event.
    last_standing: Standing,
    /// The contacts of the last bootstrap, to rejoin through if the table empties.
    seeds: Vec<Contact>,
    /// The observed address as last reported in an event.
    last_observed: Option<SocketAddr>,
    /// Traces of finished queries, kept while the simulator asks for them.
    #[cfg(feature = "sim")]
    traces: Option<HashMap<QueryId, crate::node::query::QueryTrace>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.own)
            .field("server", &self.server)
            .field("table", &self.table.len())
            .field("stored", &self.storage.len())
            .finish()
    }
}

impl Node {
    /// A node with `keypair`, in-memory storage, and randomness from `seed` (from the OS in
    /// production; fixed in simulations).
    pub fn new(config: NodeConfig, keypair: Keypair, seed: [u8; 32]) -> Self {
        let storage = Storage::in_memory(config.storage);
        Self::with_storage(config, keypair, seed, storage)
    }

    /// A node over the given storage (a persistent store, later).
    pub fn with_storage(
        config: NodeConfig,
        keypair: Keypair,
        seed: [u8; 32],
        storage: Storage,
    ) -> Self {
        let own = Key::of_node(&keypair.id());
        let mut entropy = Entropy::from_seed(seed);
        let token_issuer = TokenIssuer::new(entropy.bytes32(), config.token_epoch.as_secs());
        Self {
            table: RoutingTable::new(
                own,
                config.max_per_subnet,
                config.replacement_cache,
                config.max_failures,
            )
            .with_near_capacity(config.near_bucket_entries),
            storage,
            mailboxes: MailboxStorage::new(config.mailbox),
            token_issuer,
            peer_tokens: BoundedLru::new(config.pair_key_cache_entries),
            pair_keys: BoundedLru::new(config.pair_key_cache_entries),
            rtt: BoundedLru::new(config.rtt_entries),
            rtt_all: None,
            replay: ReplayCache::new(config.replay_cache_entries),
            ip_limit: IpRateLimit::new(
                config.rate_limit_entries,
                config.ip_packets_per_sec,
                config.ip_burst,
            ),
            dh_budget: PerSecondBudget::new(config.dh_per_sec),
            pending: HashMap::new(),
            timers: BinaryHeap::new(),
            queries: HashMap::new(),
            next_query: 0,
            verifying: HashSet::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            counters: Counters::default(),
            maintenance_at: None,
            rejoin_pending: false,
            settle_at: None,
            young: false,
            observations: Observations::new(
                config.observed_quorum,
                config.max_per_subnet.is_some(),
            ),
            prober: Prober::new(
                !config.server && config.detect_reachability,
                config.probes_per_sec,
            ),
            last_standing: Standing {
                server: config.server,
                ..Standing::default()
            },
            seeds: Vec::new(),
            last_observed: None,
            #[cfg(feature = "sim")]
            traces: None,
            server: config.server,
            keypair,
            own,
            entropy,
            config,
        }
    }

    /// The node with `mailboxes` as the mailbox items it stores for others (a persistent
    /// journal, restored items).
    pub fn with_mailboxes(mut self, mailboxes: MailboxStorage) -> Self {
        self.mailboxes = mailboxes;
        self
    }

    /// The changes to what the node stores for others since the last call, for a driver that
    /// keeps them on disk (none unless its storage is journaled, see [`Storage::journaled`]
    /// and [`MailboxStorage::journaled`]).
    pub fn take_writes(&mut self) -> Vec<StorageWrite> {
        let items = self
            .storage
            .take_writes()
            .into_iter()
            .map(StorageWrite::Item);
        let mailboxes = self
            .mailboxes
            .take_writes()
            .into_iter()
            .map(StorageWrite::Mailbox);
        items.chain(mailboxes).collect()
    }

    /// This node's key (its Carrier ID bytes).
    pub fn key(&self) -> Key {
        self.own
    }

    /// This node's identity.
    pub fn keypair(&self) -> &Keypair {
        &self.keypair
    }

    /// Whether the node acts as a server (enters others' tables and stores for them).
    pub fn is_server(&self) -> bool {
        self.server
    }

    /// Makes the node a server (reachability confirmed) or a client again. A node that checks
    /// its own reachability ([`NodeConfig::detect_reachability`]) may change it again at its
    /// next check.
    pub fn set_server(&mut self, server: bool) {
        self.server = server;
        self.report_standing();
    }

    /// The smoothed round-trip time to the node `key`, if measured (relays are chosen by it).
    pub fn rtt_of(&self, key: &Key) -> Option<std::time::Duration> {
        self.rtt.peek(key).map(|estimate| estimate.srtt())
    }

    /// The routing table.
    pub fn routing_table(&self) -> &RoutingTable {
        &self.table
    }

    /// What the node stores for others.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The mailbox items the node stores for others.
    pub fn mailboxes(&self) -> &MailboxStorage {
        &self.mailboxes
    }

    /// Counters of received, dropped and sent packets.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Sizes of the node's bounded tables against their caps, for tests that check caps
    /// hold under abuse: (replay cache, pair keys, rate-limited IPs, pending requests).
    pub fn table_sizes(&self) -> [(usize, usize); 4] {
        [
            (self.replay.len(), self.config.replay_cache_entries),
            (self.pair_keys.len(), self.pair_keys.capacity()),
            (self.ip_limit.tracked(), self.ip_limit.capacity()),
            (self.pending.len(), self.config.max_pending_rpcs),
        ]
    }

    /// The public address peers agree they see us at, when they also agree on its port (see
    /// [`Node::public_addr`] for a port that varies per peer).
    pub fn observed_addr(&self) -> Option<SocketAddr> {
        self.observations.public().and_then(|p| p.socket_addr())
    }

    /// Starts (or stops and forgets) keeping a trace of every query that finishes, for the
    /// simulator's lookup summary.
    #[cfg(feature = "sim")]
    pub(crate) fn set_tracing(&mut self, on: bool) {
        self.traces = on.then(HashMap::new);
    }

    /// The trace of the finished query `id`, taken out.
    #[cfg(feature = "sim")]
    pub(crate) fn take_trace(&mut self, id: QueryId) -> Option<crate::node::query::QueryTrace> {
        self.traces.as_mut()?.remove(&id)
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Node::handle_timeout`] should next be called.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        while let Some(Reverse((deadline, txid))) = self.timers.peek().copied() {
            if self
                .pending
                .get(&txid)
                .is_some_and(|p| p.deadline == deadline)
            {
                break;
            }
            self.timers.pop();
        }
        let rpc = self.timers.peek().map(|Reverse((d, _))| *d);
        [
            rpc,
            self.maintenance_at,
            self.settle_at,
            self.prober.next_wakeup(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Handles time passing: retransmits or gives up on unanswered requests, runs maintenance
    /// (expiry, republish, bucket refresh) when due.
    pub fn handle_timeout(&mut self, now: Now) {
        while let Some(Reverse((deadline, txid))) = self.timers.peek().copied() {
            if deadline > now.instant {
                break;
            }
            self.timers.pop();
            let due = self
                .pending
                .get(&txid)
                .is_some_and(|p| p.deadline == deadline);
            if !due {
                continue;
            }
            let Some(pending) = self.pending.remove(&txid) else {
                continue;
            };
            if pending.attempts_left > 1 {
                let rto = (pending.rto * 2).min(self.config.max_rto);
                self.send_attempt(
                    now,
                    pending.peer,
                    pending.body,
                    pending.purpose,
                    pending.attempts_left - 1,
                    Some(rto),
                    pending.token_retried,
                );
            } else {
                self.counters.rpc_timeouts += 1;
                self.table.record_failure(&pending.peer.id);
                self.on_rpc_failure(now, pending.purpose, pending.peer);
            }
        }
        if self.settle_at.is_some_and(|at| at <= now.instant) {
            self.settle_at = None;
            self.settle(now);
        }
        match self.maintenance_at {
            Some(at) if at <= now.instant => self.maintain(now),
            None => self.maintenance_at = Some(now.instant + self.maintenance_interval()),
            _ => {}
        }
        self.probe_tick(now);
    }

    pub(crate) fn maintenance_interval(&self) -> Duration {
        (self
            .config
            .refresh_interval
            .min(self.config.republish_interval)
            / 4)
        .clamp(Duration::from_secs(1), Duration::from_secs(60))
    }

    pub(crate) fn allocate_query(&mut self) -> QueryId {
        self.next_query += 1;
        QueryId(self.next_query)
    }

    /// Handles a datagram that arrived from `from`. Anything malformed, oversized, over a
    /// limit, unauthenticated, stale or replayed is counted and dropped.
    pub fn handle_datagram(&mut self, now: Now, from: Path, datagram: &[u8]) {
        self.counters.received += 1;
        let (header, _) = match Header::parse(datagram) {
            Ok(parsed) => parsed,
            Err(WireError::Oversized(_)) => {
                self.counters.dropped_oversized += 1;
                return;
            }
            Err(_) => {
                self.counters.dropped_malformed += 1;
                return;
            }
        };
        if header.sender == self.own {
            self.counters.dropped_malformed += 1;
            return;
        }
        // Limits come before any Diffie-Hellman or decryption.
        if !self.ip_limit.allow(from.ip(), now.instant) {
            self.counters.dropped_rate_limited += 1;
            return;
        }
        let fresh_key;
        let plain = {
            let key = match self.pair_keys.get_mut(&header.sender) {
                Some(key) => {
                    fresh_key = None;
                    key.clone()
                }
                None => match self.agree_key(now, &header.sender) {
                    Ok(key) => {
                        fresh_key = Some(key.clone());
                        key
                    }
                    Err(KeyFailure::BudgetSpent) => {
                        self.counters.dropped_dh_budget += 1;
                        return;
                    }
                    Err(KeyFailure::BadPeer) => {
                        self.counters.dropped_unauthenticated += 1;
                        return;
                    }
                },
            };
            match packet::open(&key, datagram, &header) {
                Ok(plain) => plain,
                Err(_) => {
                    self.counters.dropped_unauthenticated += 1;
                    return;
                }
            }
        };
        // Only a key that authenticated a packet is cached, so forged senders cannot flush
        // the cache.
        if let Some(key) = fresh_key {
            self.pair_keys.insert(header.sender, key);
        }
        match Message::decode(&plain) {
            Ok(Message::Request(request)) => {
                self.serve(now, from, &header, request, datagram.len());
            }
            Ok(Message::Response(response)) => self.handle_response(now, from, &header, response),
            Err(_) => self.counters.dropped_malformed += 1,
        }
    }

    /// Derives a pair key within the Diffie-Hellman budget.
    fn agree_key(&mut self, now: Now, peer: &Key) -> Result<PairKey, KeyFailure> {
        if !self.dh_budget.take(now.instant) {
            return Err(KeyFailure::BudgetSpent);
        }
        self.counters.dh_operations = self.dh_budget.total();
        self.config
            .key_agreement
            .pair_key(&self.keypair, peer)
            .map_err(|_| KeyFailure::BadPeer)
    }

    fn pair_key_for(&mut self, now: Now, peer: &Key) -> Option<PairKey> {
        if let Some(key) = self.pair_keys.get_mut(peer) {
            return Some(key.clone());
        }
        let key = self.agree_key(now, peer).ok()?;
        self.pair_keys.insert(*peer, key.clone());
        Some(key)
    }

    /// Seals an encoded message to `peer` and queues it.
    pub(crate) fn send_encoded(
        &mut self,
        now: Now,
        peer: &Key,
        path: Path,
        encoded: &[u8],
    ) -> Option<usize> {
        let key = self.pair_key_for(now, peer)?;
        let mut nonce = [0u8; packet::NONCE_BYTES];
        self.entropy.fill(&mut nonce);
        let contents = packet::seal(&key, self.own, !self.server, nonce, encoded);
        let len = contents.len();
        self.prober.note_sent(path.ip());
        self.counters.sent += 1;
        self.transmits.push_back(Transmit { path, contents });
        Some(len)
    }

    /// Requests awaiting answers.
    pub fn pending_requests(&self) -> usize {
        self.pending.len()
    }
}
