//! The simulated network: nodes, links with latency and loss, and virtual time.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use carrier_id::Keypair;

use crate::node::config::NodeConfig;
use crate::node::event::{Event, QueryFinished, QueryId, QueryOutcome};
use crate::node::query::QueryTrace;
use crate::node::Node;
use crate::wire::key::{Distance, Key};
use crate::wire::message::Contact;
use crate::wire::packet::KeyAgreement;
use crate::wire::path::Path;
use crate::wire::record::Value;
use crate::wire::time::Now;

/// Unix time at which every simulation starts (2026-01-01), so runs are reproducible.
const SIM_EPOCH_UNIX_MS: u64 = 1_767_225_600_000;
/// UDP port every simulated node listens on.
const SIM_PORT: u16 = 4000;

/// Settings of a [`Simulation`].
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Nodes created (they join when [`Simulation::join_all`] or [`Simulation::join`] says).
    pub nodes: usize,
    /// Seed of everything random: keys, latencies, losses, choices.
    pub seed: u64,
    /// Mean one-way latency of a link, in milliseconds.
    pub latency_ms: u64,
    /// Each link's latency is drawn uniformly within `latency_ms ± latency_spread_ms`.
    pub latency_spread_ms: u64,
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Time between two nodes joining in [`Simulation::join_all`], in milliseconds.
    pub join_spacing_ms: u64,
    /// Real key agreement (slow: X25519 per pair) or the stand-in.
    pub key_agreement: KeyAgreement,
    /// Settings of every node; `server` and `key_agreement` are overridden.
    pub node: NodeConfig,
}

impl Default for SimConfig {
    fn default() -> Self {
        let node = NodeConfig {
            // Simulated memory matters at 10,000 nodes; these caps still exceed what a node
            // uses in the simulation.
            pair_key_cache_entries: 512,
            replay_cache_entries: 8_192,
            rate_limit_entries: 1_024,
            rtt_entries: 512,
            ..NodeConfig::default()
        };
        Self {
            nodes: 100,
            seed: 1,
            latency_ms: 50,
            latency_spread_ms: 20,
            loss: 0.0,
            join_spacing_ms: 5,
            key_agreement: KeyAgreement::Simulated,
            node,
        }
    }
}

/// splitmix64: small, fast and good enough for choosing latencies and nodes.
#[derive(Clone, Debug)]
pub(crate) struct SimRng(u64);

impl SimRng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

enum Action {
    Deliver {
        to: usize,
        from: SocketAddr,
        data: Vec<u8>,
    },
    Wake {
        node: usize,
    },
    /// Joins through `seed`, or through a random node that has finished joining.
    Join {
        node: usize,
        seed: Option<usize>,
    },
}

struct Scheduled {
    at_us: u64,
    seq: u64,
    action: Action,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at_us, self.seq) == (other.at_us, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap and we want the earliest first.
        (other.at_us, other.seq).cmp(&(self.at_us, self.seq))
    }
}

struct SimNode {
    node: Node,
    addr: SocketAddr,
    alive: bool,
    joined: bool,
    /// The bootstrap query, until it finishes.
    joining: Option<QueryId>,
    wake_at_us: Option<u64>,
}

/// A deterministic network of [`Node`]s in virtual time.
///
/// Every datagram a node sends is delivered to the node at its destination address after the
/// link's latency (unless lost); timers fire in virtual time; nothing runs in parallel, so a
/// run depends only on its [`SimConfig`].
pub struct Simulation {
    config: SimConfig,
    nodes: Vec<SimNode>,
    by_addr: HashMap<SocketAddr, usize>,
    queue: BinaryHeap<Scheduled>,
    seq: u64,
    now_us: u64,
    base: Instant,
    pub(crate) rng: SimRng,
    awaiting: HashSet<(usize, QueryId)>,
    finished: HashMap<(usize, QueryId), QueryFinished>,
    /// Nodes whose bootstrap has finished: what new nodes join through.
    ready: Vec<usize>,
    delivered: u64,
}

impl std::fmt::Debug for Simulation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulation")
            .field("nodes", &self.nodes.len())
            .field("now_ms", &(self.now_us / 1000))
            .finish()
    }
}

impl Simulation {
    /// Creates the nodes (not yet joined).
    pub fn new(config: SimConfig) -> Self {
        let mut rng = SimRng::new(config.seed);
        let mut nodes = Vec::with_capacity(config.nodes);
        let mut by_addr = HashMap::with_capacity(config.nodes);
        for i in 0..config.nodes {
            let mut key_seed = [0u8; 32];
            key_seed[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
            key_seed[8..16].copy_from_slice(&(i as u64).to_le_bytes());
            let keypair = Keypair::from_seed(&key_seed);
            let mut node_config = config.node.clone();
            node_config.server = true;
            node_config.key_agreement = config.key_agreement;
            let mut entropy_seed = key_seed;
            entropy_seed[31] ^= 0x5a;
            let node = Node::new(node_config, keypair, entropy_seed);
            // One node per /24, so the per-prefix bucket limit never binds here.
            let ip = Ipv4Addr::new(
                10,
                ((i >> 8) & 0xff) as u8,
                (i & 0xff) as u8,
                1 + (i >> 16) as u8,
            );
            let addr = SocketAddr::from((ip, SIM_PORT));
            by_addr.insert(addr, i);
            nodes.push(SimNode {
                node,
                addr,
                alive: true,
                joined: false,
                joining: None,
                wake_at_us: None,
            });
        }
        Self {
            config,
            nodes,
            by_addr,
            queue: BinaryHeap::new(),
            seq: 0,
            now_us: 0,
            base: Instant::now(),
            rng,
            awaiting: HashSet::new(),
            finished: HashMap::new(),
            ready: Vec::new(),
            delivered: 0,
        }
    }

    /// Number of nodes, alive or not.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node `index`.
    pub fn node(&self, index: usize) -> &Node {
        &self.nodes[index].node
    }

    /// Whether node `index` is alive.
    pub fn is_alive(&self, index: usize) -> bool {
        self.nodes[index].alive
    }

    /// Node `index` as a contact.
    pub fn contact(&self, index: usize) -> Contact {
        Contact {
            id: self.nodes[index].node.key(),
            addr: self.nodes[index].addr,
        }
    }

    /// Virtual time elapsed.
    pub fn elapsed(&self) -> Duration {
        Duration::from_micros(self.now_us)
    }

    /// Datagrams delivered so far.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    pub(crate) fn now(&self) -> Now {
        Now::new(
            self.base + Duration::from_micros(self.now_us),
            SIM_EPOCH_UNIX_MS + self.now_us / 1000,
        )
    }

    fn schedule(&mut self, at_us: u64, action: Action) {
        self.seq += 1;
        self.queue.push(Scheduled {
            at_us,
            seq: self.seq,
            action,
        });
    }

    /// One-way latency of the link `from → to`, fixed per link, around the configured mean.
    fn latency_us(&self, from: usize, to: usize) -> u64 {
        let mut h = SimRng::new(self.config.seed ^ ((from as u64) << 32) ^ to as u64);
        let spread = self.config.latency_spread_ms * 1000;
        let base = self.config.latency_ms * 1000;
        base.saturating_sub(spread) + h.next_u64() % (2 * spread + 1)
    }

    /// Drains what node `index` produced: transmits onto links, events into results, and its
    /// next wake-up onto the queue.
    fn flush(&mut self, index: usize) {
        while let Some(transmit) = self.nodes[index].node.poll_transmit() {
            let dest = transmit.path.socket_addr();
            let Some(&to) = self.by_addr.get(&dest) else {
                continue;
            };
            if self.config.loss > 0.0 && self.rng.unit() < self.config.loss {
                continue;
            }
            let at = self.now_us + self.latency_us(index, to);
            let from = self.nodes[index].addr;
            self.schedule(
                at,
                Action::Deliver {
                    to,
                    from,
                    data: transmit.contents,
                },
            );
        }
        while let Some(event) = self.nodes[index].node.poll_event() {
            let Event::QueryFinished(done) = event else {
                continue;
            };
            self.awaiting.remove(&(index, done.id));
            if self.nodes[index].joining == Some(done.id) {
                self.nodes[index].joining = None;
                self.ready.push(index);
                continue;
            }
            self.finished.insert((index, done.id), done);
        }
        if let Some(at) = self.nodes[index].node.poll_timeout() {
            // Rounded up: a wake-up a fraction of a microsecond early would find nothing due
            // and ask for the same wake-up forever.
            let at_us = at
                .saturating_duration_since(self.base)
                .as_nanos()
                .div_ceil(1000)
                .max(u128::from(self.now_us)) as u64;
            if self.nodes[index].wake_at_us.is_none_or(|w| at_us < w) {
                self.nodes[index].wake_at_us = Some(at_us);
                self.schedule(at_us, Action::Wake { node: index });
            }
        }
    }

    /// Runs one scheduled action. Returns false when nothing is scheduled.
    fn step(&mut self) -> bool {
        let Some(next) = self.queue.pop() else {
            return false;
        };
        self.now_us = self.now_us.max(next.at_us);
        let now = self.now();
        match next.action {
            Action::Deliver { to, from, data } => {
                if !self.nodes[to].alive {
                    return true;
                }
                self.delivered += 1;
                self.nodes[to]
                    .node
                    .handle_datagram(now, Path::Direct(from), &data);
                self.flush(to);
            }
            Action::Wake { node } => {
                if !self.nodes[node].alive || self.nodes[node].wake_at_us != Some(next.at_us) {
                    return true;
                }
                self.nodes[node].wake_at_us = None;
                self.nodes[node].node.handle_timeout(now);
                self.flush(node);
            }
            Action::Join { node, seed } => {
                let seed = seed.or_else(|| {
                    let live: Vec<usize> = self
                        .ready
                        .iter()
                        .copied()
                        .filter(|&i| self.nodes[i].alive)
                        .collect();
                    (!live.is_empty()).then(|| live[self.rng.below(live.len())])
                });
                let Some(seed) = seed else {
                    return true;
                };
                let contact = self.contact(seed);
                self.nodes[node].joined = true;
                if let Ok(id) = self.nodes[node].node.bootstrap(now, &[contact]) {
                    self.awaiting.insert((node, id));
                    self.nodes[node].joining = Some(id);
                }
                self.flush(node);
            }
        }
        true
    }

    /// Runs until every awaited query has finished (or `limit` of virtual time passes).
    pub fn run_until_done(&mut self, limit: Duration) {
        let end = self.now_us + limit.as_micros() as u64;
        while !self.awaiting.is_empty() && self.now_us <= end {
            if !self.step() {
                break;
            }
        }
    }

    /// Runs for `duration` of virtual time.
    pub fn run_for(&mut self, duration: Duration) {
        let end = self.now_us + duration.as_micros() as u64;
        while self.queue.peek().is_some_and(|s| s.at_us <= end) {
            self.step();
        }
        self.now_us = self.now_us.max(end);
    }

    /// Joins node `index` through node `seed` at the current time; returns once scheduled.
    pub fn join(&mut self, index: usize, seed: usize) {
        self.schedule(
            self.now_us,
            Action::Join {
                node: index,
                seed: Some(seed),
            },
        );
    }

    /// Joins every node, one every `join_spacing_ms`, each through a random node that has
    /// finished joining (as a real node bootstraps through established nodes), and runs until
    /// all bootstraps are done.
    pub fn join_all(&mut self) {
        self.join_first(self.nodes.len());
    }

    /// Joins nodes `0..count` as [`Simulation::join_all`] does; the others stay out until
    /// [`Simulation::join_later`].
    pub fn join_first(&mut self, count: usize) {
        let spacing = self.config.join_spacing_ms * 1000;
        let count = count.min(self.nodes.len());
        for i in 1..count {
            self.schedule(
                self.now_us + spacing * i as u64,
                Action::Join {
                    node: i,
                    seed: None,
                },
            );
        }
        if let Some(first) = self.nodes.first_mut() {
            first.joined = true;
            self.ready.push(0);
        }
        self.run_for(Duration::from_micros(spacing * count as u64));
        self.run_until_done(Duration::from_secs(120));
    }

    /// Joins the nodes in `indices`, one every `join_spacing_ms` from now, each through a
    /// random live node that has finished joining, and runs until their bootstraps are done.
    pub fn join_later(&mut self, indices: &[usize]) {
        let spacing = self.config.join_spacing_ms * 1000;
        for (n, &i) in indices.iter().enumerate() {
            self.schedule(
                self.now_us + spacing * n as u64,
                Action::Join {
                    node: i,
                    seed: None,
                },
            );
        }
        self.run_for(Duration::from_micros(spacing * indices.len() as u64));
        self.run_until_done(Duration::from_secs(120));
    }

    /// Kills node `index`: it receives and sends nothing from now on.
    pub fn kill(&mut self, index: usize) {
        self.nodes[index].alive = false;
        self.awaiting.retain(|(n, _)| *n != index);
    }

    /// Starts a command on node `index` and awaits its result; `None` if the node has no
    /// contacts or the command was refused.
    pub fn start<F>(&mut self, index: usize, command: F) -> Option<QueryId>
    where
        F: FnOnce(&mut Node, Now) -> Option<QueryId>,
    {
        let now = self.now();
        let id = command(&mut self.nodes[index].node, now)?;
        self.awaiting.insert((index, id));
        self.flush(index);
        Some(id)
    }

    /// Starts several queries on node `index` at once, as [`Simulation::start`] does one;
    /// each comes back with the tag `command` gave it.
    pub fn start_all<T, F>(&mut self, index: usize, command: F) -> Vec<(T, QueryId)>
    where
        F: FnOnce(&mut Node, Now) -> Vec<(T, QueryId)>,
    {
        let now = self.now();
        let started = command(&mut self.nodes[index].node, now);
        for (_, id) in &started {
            self.awaiting.insert((index, *id));
        }
        self.flush(index);
        started
    }

    /// The result of a finished query, taken out of the simulation.
    pub fn take_result(&mut self, index: usize, id: QueryId) -> Option<QueryFinished> {
        self.finished.remove(&(index, id))
    }

    /// Stores `data` from node `index` and runs until done; the key if any storer acked.
    pub fn put(&mut self, index: usize, data: &[u8]) -> Option<Key> {
        let mut key = None;
        let id = self.start(index, |node, now| {
            let (id, k) = node.put_immutable(now, data).ok()?;
            key = Some(k);
            Some(id)
        })?;
        self.run_until_done(Duration::from_secs(60));
        match self.take_result(index, id)?.outcome {
            QueryOutcome::Stored { acks, .. } if acks > 0 => key,
            _ => None,
        }
    }

    /// Gets the value under `key` from node `index` and runs until done.
    pub fn get(&mut self, index: usize, key: Key) -> Option<Vec<u8>> {
        let id = self.start(index, |node, now| node.get(now, key).ok())?;
        self.run_until_done(Duration::from_secs(60));
        match self.take_result(index, id)?.outcome {
            QueryOutcome::Value(Some(value)) => Some(Value::data(&value).to_vec()),
            _ => None,
        }
    }

    /// Keeps (or stops keeping) a trace of every query that finishes on any node.
    pub(crate) fn set_tracing(&mut self, on: bool) {
        for node in &mut self.nodes {
            node.node.set_tracing(on);
        }
    }

    /// The trace of the finished query `id` of node `index`, taken out.
    pub(crate) fn take_trace(&mut self, index: usize, id: QueryId) -> Option<QueryTrace> {
        self.nodes[index].node.take_trace(id)
    }

    /// Entries of node `index`'s routing table per bucket, beside the ideal: for each bucket
    /// index, the entries held and `min(capacity, live joined servers in that bucket)`.
    pub(crate) fn bucket_fill(&self, index: usize) -> Vec<(usize, usize)> {
        let table = self.nodes[index].node.routing_table();
        let mut fill: Vec<(usize, usize)> = Vec::new();
        let grow = |fill: &mut Vec<(usize, usize)>, b: usize| {
            if fill.len() <= b {
                fill.resize(b + 1, (0, 0));
            }
        };
        for entry in table.entries() {
            let b = table.bucket_index(&entry.contact.id);
            grow(&mut fill, b);
            fill[b].0 += 1;
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if i == index || !n.alive || !n.joined {
                continue;
            }
            let b = table.bucket_index(&n.node.key());
            if b < 256 {
                grow(&mut fill, b);
                fill[b].1 += 1;
            }
        }
        for (b, f) in fill.iter_mut().enumerate() {
            f.1 = f.1.min(table.bucket_capacity(b));
        }
        fill
    }

    /// Nodes alive and joined.
    pub fn live_nodes(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].alive && self.nodes[i].joined)
            .collect()
    }

    /// The true K closest live servers to `target`, excluding node `asker`, closest first.
    pub fn true_closest(&self, target: &Key, asker: usize, k: usize) -> Vec<Key> {
        let mut keys: Vec<(Distance, Key)> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|&(i, n)| n.alive && n.joined && i != asker)
            .map(|(_, n)| (n.node.key().distance(target), n.node.key()))
            .collect();
        if keys.len() > k && k > 0 {
            keys.select_nth_unstable(k - 1);
        }
        keys.truncate(k);
        keys.sort_unstable();
        keys.into_iter().map(|(_, key)| key).collect()
    }
}
