//! The hole-punching figures (issue 20), measured in the network lab as
//! `reach.relay_connect_ms` is (`relay_lab.rs`): a bootstrap server and three relays on the
//! internet, friends' nodes (in-process `Friends`, default settings) on devices behind home
//! routers of the lab's NAT kinds. Where the lab cannot be built the figures are skipped with
//! the reason.
//!
//! - `reach.direct_connect_ms`: two friends behind port-restricted cones (Moderate), befriended
//!   once and stopped, their routers made to forget the flows between them (`forget_flows`:
//!   the befriending's packets would otherwise have left filters open); from starting both
//!   again on their data directories to both holding the link on a direct path. The first
//!   link each side holds must be relayed, and the direct one a QUIC connection seen
//!   relayed (punched, not replaced).
//! - `reach.punch_success`: of the links that started relayed between a dialler and a dialled
//!   node of the five direct-capable pairs of kinds ([`PAIRS`]), the fraction that both sides
//!   held on a direct path, on a connection that had run relayed (punched; when the accept's
//!   two dials both came up relayed, the one the tie-break kept), within [`DIRECT_WITHIN`] of
//!   both holding the link. Each try is a fresh pair of nodes: the dialled node asks, the routers
//!   forget the pair's flows, the dialler accepts and so dials (as in `tests/lab_punch.rs`).
//! - `reach.switch_gap_ms`: two friends behind Moderate routers whose direct path is cut
//!   (`link::cut_peer`) until a paced transfer runs on their relayed link; then it is healed
//!   and the first punching round, still probing, moves the link: the longest time between
//!   two reads at the receiver from a little before the first side moved to a second after
//!   the last did.

use super::friend::{befriend, wait_for};
use super::relay_lab::{friend_node_with, internet, PATIENCE};
use super::scratch::Scratch;
use super::{runs, transfer, Scale};
use carrier_friend::dht::id::CarrierId;
use carrier_friend::dht::{BootstrapNode, Dht};
use carrier_friend::{Extension, FriendEvent, FriendEvents, Friends, FriendsConfig, Inbound};
use carrier_friend::{LinkPath, Topology};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tests::lab::{ipv4, link, Device, NatBehaviour, NetworkLab, Router};

/// The pairs (dialler, dialled) whose links start relayed (the dialled side filters) and can
/// go direct (not both filtering with one mapping per destination).
pub(crate) const PAIRS: [(NatBehaviour, NatBehaviour); 5] = [
    (NatBehaviour::None, NatBehaviour::PortRestrictedCone),
    (NatBehaviour::None, NatBehaviour::Symmetric),
    (NatBehaviour::Open, NatBehaviour::PortRestrictedCone),
    (NatBehaviour::Open, NatBehaviour::Symmetric),
    (
        NatBehaviour::PortRestrictedCone,
        NatBehaviour::PortRestrictedCone,
    ),
];

/// Starts of the pair per run of `reach.direct_connect_ms`, at most, until one is a punch.
const STARTS: usize = 4;

/// How soon after the link comes up a try must be direct to count as punched (the target).
const DIRECT_WITHIN: Duration = Duration::from_secs(2);

/// How long after the dialler the dialled side may take to hold the link of a try.
const ADOPT_WITHIN: Duration = Duration::from_secs(10);

/// Tries of each pair run at once in `reach.punch_success` (fresh nodes, the same routers).
const TRIES_AT_ONCE: usize = 4;

/// How often the links' paths are looked at.
const POLL: Duration = Duration::from_millis(2);

/// The transfer of `reach.switch_gap_ms`: a write of this many bytes every [`PACE`].
const CHUNK: usize = 16 << 10;

/// The transfer's pace: 16 KiB every 2 ms, about 8 MB/s, so the longest gap is the move's,
/// not flow control's.
const PACE: Duration = Duration::from_millis(2);

/// How long the transfer runs relayed before the direct path is healed.
const RELAYED_FOR: Duration = Duration::from_millis(500);

/// The gap window starts this long before the first side moved.
const BEFORE_MOVE: Duration = Duration::from_millis(200);

/// And ends this long after the last side moved.
const AFTER_MOVE: Duration = Duration::from_secs(1);

/// The lab, or the skip with the reason.
async fn open_lab(name: &str) -> Result<NetworkLab, String> {
    NetworkLab::try_open(name)
        .await
        .map_err(|why| format!("{}no network lab here: {why}", runs::SKIPPED))
}

fn lab_error(e: tests::lab::LabError) -> String {
    e.to_string()
}

/// A home router of a kind with one device behind it.
struct Home {
    kind: NatBehaviour,
    router: Router,
    device: Device,
    /// The address the internet sees the device at: its own for None, its router's otherwise.
    public_ip: IpAddr,
}

impl Home {
    async fn build(lab: &NetworkLab, name: &str, kind: NatBehaviour) -> Result<Home, String> {
        let router = lab
            .home(&format!("{name}-home"), kind)
            .await
            .map_err(lab_error)?;
        let device = lab.device_in(&router, name).await.map_err(lab_error)?;
        let public_ip = match kind {
            NatBehaviour::None => IpAddr::V4(ipv4(&device).map_err(lab_error)?),
            _ => IpAddr::V4(
                router
                    .uplink_ip()
                    .ok_or_else(|| format!("{name}'s router has no uplink address"))?,
            ),
        };
        Ok(Home {
            kind,
            router,
            device,
            public_ip,
        })
    }
}

/// Makes `a` and `b`'s routers forget every flow between their public addresses.
async fn forget(lab: &NetworkLab, a: &Home, b: &Home) -> Result<(), String> {
    lab.forget_flows(&a.router, b.public_ip)
        .await
        .map_err(lab_error)?;
    lab.forget_flows(&b.router, a.public_ip)
        .await
        .map_err(lab_error)
}

/// The friend layer's settings of nodes that befriend in the lab: the defaults, but a dial
/// may take 2 s instead of 10. A friend request goes to one path at a time, the stranger's
/// address first, which a filtering NAT drops: the request waits out the dial before it tries
/// the relay. Links dial every path at once, so the measured links are unchanged.
fn befriending_config() -> FriendsConfig {
    let mut config = FriendsConfig::default();
    config.dial_timeout = Duration::from_secs(2);
    config
}

/// Shuts the bootstrap server and the relays down, all at once.
async fn stop_internet(seed: Dht, relays: Vec<Dht>) {
    let mut stopping = tokio::task::JoinSet::new();
    for dht in relays.into_iter().chain([seed]) {
        stopping.spawn(async move {
            let _ = dht.shutdown().await;
        });
    }
    stopping.join_all().await;
}

/// A friend's node and the directory it lives in.
struct Node {
    dht: Dht,
    friends: Friends,
    events: FriendEvents,
    _dir: Scratch,
}

impl Node {
    async fn start(home: &Home, what: &str, contact: &BootstrapNode) -> Result<Node, String> {
        let dir = Scratch::new(what)?;
        let (dht, friends, events) =
            friend_node_with(&home.device, dir.path(), contact, befriending_config()).await?;
        Ok(Node {
            dht,
            friends,
            events,
            _dir: dir,
        })
    }

    fn id(&self) -> CarrierId {
        self.dht.id()
    }

    async fn stop(self) {
        stop(self.dht, self.friends).await;
    }
}

/// How long a node's friend layer may take to shut down before the run moves on: its
/// endpoint waits for every connection to drain, and a dial still in its handshake (a
/// stranger's address that filters) holds it for its whole handshake timeout, about 25 s.
const STOP_WITHIN: Duration = Duration::from_secs(1);

/// Stops a friend's node, within [`STOP_WITHIN`] for its friend layer.
async fn stop(dht: Dht, friends: Friends) {
    let _ = tokio::time::timeout(STOP_WITHIN, friends.shutdown()).await;
    drop(friends);
    let _ = dht.shutdown().await;
}

/// A QUIC connection's name, the same at both its ends (and no other connection's): bytes
/// exported from its TLS session under a label of the bench's own.
type ConnectionName = [u8; 16];

/// Whether this side dialled `friends`' link to `peer` (its QUIC client).
fn dialled(friends: &Friends, peer: &CarrierId) -> bool {
    friends
        .link(peer)
        .is_some_and(|link| link.connection().side().is_client())
}

/// The link to `peer` as `friends` holds it now: its topology and its connection's name.
fn path_of(friends: &Friends, peer: &CarrierId) -> Option<(Topology, ConnectionName)> {
    let link = friends.link(peer)?;
    let LinkPath { topology, .. } = friends.link_path(&link)?;
    let mut name = [0u8; 16];
    link.connection()
        .export_keying_material(&mut name, b"carrier-bench-connection-name", b"")
        .ok()?;
    Some((topology, name))
}

/// One side's link to its friend, as seen by polling.
#[derive(Clone, Copy, Debug, Default)]
struct Sight {
    /// The first link seen: its topology, connection and when.
    first: Option<(Topology, ConnectionName, Instant)>,
    /// When the link was first seen direct, and its connection then.
    direct: Option<(Instant, ConnectionName)>,
    /// Whether this side dialled the first link, and the direct one.
    dialled: (bool, bool),
    /// The connections seen relayed, the first few: the accept's two dials (the outbox's
    /// and the link machine's) may both come up relayed, and the tie-break keep the second
    /// (decision 107); that one is then punched.
    relayed: [Option<ConnectionName>; 4],
}

impl Sight {
    fn look(&mut self, friends: &Friends, peer: &CarrierId) {
        let Some((topology, connection)) = path_of(friends, peer) else {
            return;
        };
        let now = Instant::now();
        if self.first.is_none() {
            self.first = Some((topology, connection, now));
            self.dialled.0 = dialled(friends, peer);
        }
        if topology == Topology::Relayed && !self.relayed.contains(&Some(connection)) {
            if let Some(free) = self.relayed.iter_mut().find(|c| c.is_none()) {
                *free = Some(connection);
            }
        }
        if topology != Topology::Relayed && self.direct.is_none() {
            self.direct = Some((now, connection));
            self.dialled.1 = dialled(friends, peer);
        }
    }

    /// What this side saw first, for messages.
    fn describe(&self, since: Instant) -> String {
        let first = match self.first {
            None => "no link".to_string(),
            Some((topology, _, at)) => format!(
                "first {topology:?} at {} ms ({})",
                at.saturating_duration_since(since).as_millis(),
                if self.dialled.0 {
                    "dialled"
                } else {
                    "accepted"
                }
            ),
        };
        match self.direct {
            None => format!("{first}, never direct"),
            Some((at, connection)) => format!(
                "{first}, direct at {} ms ({}, {} connection)",
                at.saturating_duration_since(since).as_millis(),
                if self.dialled.1 {
                    "dialled"
                } else {
                    "accepted"
                },
                if self.first.is_some_and(|(_, c, _)| c == connection) {
                    "the first"
                } else if self.relayed.contains(&Some(connection)) {
                    "another relayed"
                } else {
                    "another, never relayed,"
                }
            ),
        }
    }
}

/// When both sides held the link direct on a connection that had run relayed, or why not.
/// The link started relayed if either side's first sight of it was relayed (the other may
/// have taken it up only after it moved: the accepter of a new friend's link holds it once
/// the accept has crossed it); each side's direct connection must be one that either side
/// saw relayed (the same TLS session at both ends: punched, not replaced by a second
/// connection that came up direct). Usually the first link; when the accept's two dials
/// both came up relayed, the one the tie-break kept.
fn punched(sights: &[Sight; 2], names: [&str; 2]) -> Result<Instant, String> {
    if !sights
        .iter()
        .filter_map(|s| s.first)
        .any(|(topology, ..)| topology == Topology::Relayed)
    {
        return Err("the link was direct from the start: a filter was open".to_string());
    }
    let was_relayed =
        |connection: ConnectionName| sights.iter().any(|s| s.relayed.contains(&Some(connection)));
    let mut last = None;
    for (sight, name) in sights.iter().zip(names) {
        let (at, connection) = sight
            .direct
            .ok_or_else(|| format!("{name}'s link never went direct"))?;
        if !was_relayed(connection) {
            return Err(format!(
                "{name}'s direct link is a connection never seen relayed (not punched)"
            ));
        }
        last = last.max(Some(at));
    }
    last.ok_or_else(|| "no side".to_string())
}

/// Polls both sides' links until `done` or `deadline`.
async fn watch(
    sides: [(&Friends, CarrierId); 2],
    deadline: Instant,
    done: impl Fn(&[Sight; 2]) -> bool,
) -> [Sight; 2] {
    let mut sights = [Sight::default(); 2];
    loop {
        for (sight, (friends, peer)) in sights.iter_mut().zip(&sides) {
            sight.look(friends, peer);
        }
        if done(&sights) || Instant::now() >= deadline {
            return sights;
        }
        tokio::time::sleep(POLL).await;
    }
}

fn both_direct(sights: &[Sight; 2]) -> bool {
    sights.iter().all(|s| s.direct.is_some())
}

/// One run of `reach.direct_connect_ms`, in milliseconds.
pub(crate) fn direct_connect(_scale: &Scale) -> Result<f64, String> {
    transfer::on_runtime_within(Duration::from_secs(300), async {
        let began = Instant::now();
        let lab = open_lab("bench_direct_connect").await?;
        let (seed, contact, relays) = internet(&lab).await?;
        let moderate = NatBehaviour::PortRestrictedCone;
        let homes = [
            Home::build(&lab, "alice", moderate).await?,
            Home::build(&lab, "bob", moderate).await?,
        ];
        let dirs = [Scratch::new("punch-alice")?, Scratch::new("punch-bob")?];
        let start_with = |i: usize, config: FriendsConfig| {
            friend_node_with(&homes[i].device, dirs[i].path(), &contact, config)
        };
        let start = |i: usize| start_with(i, FriendsConfig::default());

        // Befriend the pair and let them link once; then they are strangers to the routers.
        let (alice_dht, alice, mut alice_events) = start_with(0, befriending_config()).await?;
        let (bob_dht, bob, mut bob_events) = start_with(1, befriending_config()).await?;
        befriend(
            (&alice, &mut alice_events),
            (&bob, &mut bob_events),
            PATIENCE,
        )
        .await?;
        let (alice_id, bob_id) = (alice_dht.id(), bob_dht.id());
        tokio::join!(stop(alice_dht, alice), stop(bob_dht, bob));

        // The measured part: both start; until both hold the link direct. A start whose link
        // went direct without punching (the two nodes' dials crossed, each opening its own
        // filter for the other's) measures no punching: it is told and started again.
        let mut value = None;
        for attempt in 1..=STARTS {
            forget(&lab, &homes[0], &homes[1]).await?;
            let started = Instant::now();
            let (alice_start, bob_start) = tokio::join!(start(0), start(1));
            let (alice_dht, alice, _alice_events) = alice_start?;
            let (bob_dht, bob, _bob_events) = bob_start?;
            let sights = watch(
                [(&alice, bob_id), (&bob, alice_id)],
                started + PATIENCE,
                both_direct,
            )
            .await;
            tokio::join!(stop(alice_dht, alice), stop(bob_dht, bob));
            let seen = format!(
                "alice: {}; bob: {}",
                sights[0].describe(started),
                sights[1].describe(started)
            );
            match punched(&sights, ["alice", "bob"]) {
                Ok(direct) => {
                    eprintln!("bench: reach.direct_connect_ms: start {attempt}: {seen}");
                    value = Some(direct.duration_since(started).as_secs_f64() * 1000.0);
                    break;
                }
                Err(why) if both_direct(&sights) => {
                    eprintln!(
                        "bench: reach.direct_connect_ms: start {attempt} is not a punch, \
                         started again: {why} ({seen})"
                    );
                }
                Err(why) => {
                    stop_internet(seed, relays).await;
                    return Err(format!("{why} ({seen})"));
                }
            }
        }
        stop_internet(seed, relays).await;
        eprintln!(
            "bench: reach.direct_connect_ms: run took {:.1} s",
            began.elapsed().as_secs_f64()
        );
        value.ok_or_else(|| format!("none of {STARTS} starts was a punch"))
    })
}

/// How one try of `reach.punch_success` went.
#[derive(Debug)]
enum Try {
    /// Both sides direct on the relayed link's connection, this long after the link was up.
    Punched(Duration),
    /// Started relayed, not direct on both sides within [`DIRECT_WITHIN`] (or not on the
    /// same connection): why.
    Missed(String),
    /// The first link was not relayed (excluded from the fraction): why.
    NotRelayed(String),
    /// No link at all (a failure of the run, not of punching).
    NoLink,
}

/// `reach.punch_success` (a joint measurement of one figure, for its runs: one per
/// invocation, of `Scale::punch_tries` tries of each pair).
pub(crate) fn punch_success(
    scale: &Scale,
    _run: usize,
) -> Result<Vec<(&'static str, f64)>, String> {
    let tries = scale.punch_tries;
    init_log();
    transfer::on_runtime_within(Duration::from_secs(900), async move {
        let started = Instant::now();
        let lab = open_lab("bench_punch_success").await?;
        let (seed, contact, relays) = internet(&lab).await?;
        eprintln!(
            "bench: reach.punch_success: lab and relays up in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        // A home per kind and role; pairs that share a kind share its home.
        let mut diallers = Vec::new();
        let mut dialled = Vec::new();
        for (x, y) in PAIRS {
            if !diallers.iter().any(|h: &Home| h.kind == x) {
                let name = format!("dialler-{}", x.short_name().to_lowercase());
                diallers.push(Home::build(&lab, &name, x).await?);
            }
            if !dialled.iter().any(|h: &Home| h.kind == y) {
                let name = format!("dialled-{}", y.short_name().to_lowercase());
                dialled.push(Home::build(&lab, &name, y).await?);
            }
        }
        let home_of = |homes: &[Home], kind| homes.iter().position(|h: &Home| h.kind == kind);
        let pairs: Vec<(usize, usize)> = PAIRS
            .iter()
            .filter_map(|&(x, y)| Some((home_of(&diallers, x)?, home_of(&dialled, y)?)))
            .collect();

        let mut outcomes: Vec<(usize, Try)> = Vec::new();
        let mut left = tries;
        while left > 0 {
            let at_once = left.min(TRIES_AT_ONCE);
            let wave = punch_wave(&lab, &seed, &contact, &diallers, &dialled, &pairs, at_once);
            outcomes.extend(wave.await?);
            left -= at_once;
        }
        stop_internet(seed, relays).await;

        // Per pair, then the figure.
        let (mut relayed, mut punched, mut no_link) = (0usize, 0usize, 0usize);
        for (p, (x, y)) in PAIRS.iter().enumerate() {
            let of_pair: Vec<&Try> = outcomes
                .iter()
                .filter(|(q, _)| *q == p)
                .map(|(_, t)| t)
                .collect();
            let mut times: Vec<Duration> = of_pair
                .iter()
                .filter_map(|t| match t {
                    Try::Punched(d) => Some(*d),
                    _ => None,
                })
                .collect();
            times.sort();
            let started_relayed = of_pair
                .iter()
                .filter(|t| matches!(t, Try::Punched(_) | Try::Missed(_)))
                .count();
            relayed += started_relayed;
            punched += times.len();
            eprintln!(
                "bench: reach.punch_success: {} -> {}: {}/{} started relayed went direct \
                 (median {} ms, max {} ms); {} not relayed first, {} no link",
                x.short_name(),
                y.short_name(),
                times.len(),
                started_relayed,
                times.get(times.len() / 2).map_or(0, Duration::as_millis),
                times.last().map_or(0, Duration::as_millis),
                of_pair
                    .iter()
                    .filter(|t| matches!(t, Try::NotRelayed(_)))
                    .count(),
                of_pair.iter().filter(|t| matches!(t, Try::NoLink)).count(),
            );
            for t in &of_pair {
                if let Try::Missed(why) | Try::NotRelayed(why) = t {
                    eprintln!("bench:   {} -> {}: {why}", x.short_name(), y.short_name());
                }
            }
            no_link += of_pair.iter().filter(|t| matches!(t, Try::NoLink)).count();
        }
        eprintln!(
            "bench: reach.punch_success: {} tries in {:.1} s",
            outcomes.len(),
            started.elapsed().as_secs_f64()
        );
        if no_link > 0 {
            return Err(format!("{no_link} tries got no link at all"));
        }
        if relayed == 0 {
            return Err("no link started relayed".into());
        }
        Ok(vec![(
            "reach.punch_success",
            punched as f64 / relayed as f64,
        )])
    })
}

/// The friend layer's debug log on stderr when `CARRIER_BENCH_LOG` is set: each node's
/// lines name its peer, and a miss names both nodes of its try.
fn init_log() {
    if std::env::var_os("CARRIER_BENCH_LOG").is_none() {
        return;
    }
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let only = tracing_subscriber::filter::Targets::new().with_target(
        "carrier_friend",
        tracing_subscriber::filter::LevelFilter::DEBUG,
    );
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(only)
        .try_init();
}

/// `at_once` tries of every pair, at once: fresh nodes, announced; each dialled node asks
/// its dialler; the routers forget the pair's flows; each dialler accepts (and so dials).
async fn punch_wave(
    lab: &NetworkLab,
    seed: &Dht,
    contact: &BootstrapNode,
    diallers: &[Home],
    dialled: &[Home],
    pairs: &[(usize, usize)],
    at_once: usize,
) -> Result<Vec<(usize, Try)>, String> {
    // Every node of the wave starts at once.
    let mut starting = tokio::task::JoinSet::new();
    for (p, &(x, y)) in pairs.iter().enumerate() {
        for t in 0..at_once {
            for (side, home) in [(0, &diallers[x]), (1, &dialled[y])] {
                let (device, kind, public_ip) = (home.device.clone(), home.kind, home.public_ip);
                let contact = contact.clone();
                let what = format!("punch-{p}-{t}-{side}");
                starting.spawn(async move {
                    let dir = Scratch::new(&what)?;
                    let (dht, friends, events) =
                        friend_node_with(&device, dir.path(), &contact, befriending_config())
                            .await?;
                    let node = Node {
                        dht,
                        friends,
                        events,
                        _dir: dir,
                    };
                    Ok::<_, String>(((p, t, side), kind, public_ip, node))
                });
            }
        }
    }
    let wave_start = Instant::now();
    let phase = |what: &str| {
        eprintln!(
            "bench: reach.punch_success: wave at {:.1} s: {what}",
            wave_start.elapsed().as_secs_f64()
        )
    };
    let mut started = Vec::new();
    for result in starting.join_all().await {
        started.push(result?);
    }
    started.sort_by_key(|(key, ..)| *key);

    phase("nodes started");
    // Every node announced with its address (unless it maps per destination) and relays.
    let mut announcing = tokio::task::JoinSet::new();
    for (key, kind, public_ip, node) in &started {
        let (key, kind, public_ip) = (*key, *kind, *public_ip);
        let (friends, id, seed) = (node.friends.clone(), node.id(), seed.clone());
        announcing.spawn(async move {
            let deadline = Instant::now() + PATIENCE;
            let _ = friends.announce().await;
            loop {
                if let Ok(Some(record)) = seed.find_peer(&id).await {
                    let addressed = kind == NatBehaviour::Symmetric
                        || record.addrs.iter().any(|a| a.ip() == public_ip);
                    if addressed && record.relays.len() >= 2 {
                        return Ok(());
                    }
                }
                if Instant::now() > deadline {
                    return Err(format!("node {key:?} was never announced"));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }
    for announced in announcing.join_all().await {
        announced?;
    }
    phase("nodes started and announced");
    let mut nodes: Vec<Node> = started.into_iter().map(|(.., node)| node).collect();
    // Nodes come in (pair, try, side) order: dialler then dialled.
    let tries = nodes.len() / 2;

    // Each dialled node asks its dialler.
    let mut asking = tokio::task::JoinSet::new();
    for i in 0..tries {
        let address = nodes[2 * i].friends.address().to_string();
        let asker = nodes[2 * i + 1].friends.clone();
        asking.spawn(async move {
            asker
                .add_friend(&address, b"dial me")
                .await
                .map_err(|e| format!("the friend request failed: {e}"))
        });
    }
    for asked in asking.join_all().await {
        asked?;
    }
    for i in 0..tries {
        let from = nodes[2 * i + 1].id();
        wait_for(&mut nodes[2 * i].events, PATIENCE, "the request", |e| {
            matches!(e, FriendEvent::Request(r) if r.from == from).then_some(())
        })
        .await?;
        phase(&format!("request {i} in"));
    }

    phase("requests in");
    // The request's last packets pass; the routers forget each pair's flows; the accepts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for &(x, y) in pairs {
        forget(lab, &diallers[x], &dialled[y]).await?;
    }
    let mut accepted = Vec::new();
    for i in 0..tries {
        let from = nodes[2 * i + 1].id();
        accepted.push(Instant::now());
        nodes[2 * i]
            .friends
            .accept_friend(&from)
            .await
            .map_err(|e| format!("the accept failed: {e}"))?;
    }

    // Watch every try until it is decided.
    let mut sights = vec![[Sight::default(); 2]; tries];
    let mut decided: Vec<Option<Try>> = (0..tries).map(|_| None).collect();
    while decided.iter().any(Option::is_none) {
        for i in 0..tries {
            if decided[i].is_some() {
                continue;
            }
            let (dialler_id, dialled_id) = (nodes[2 * i].id(), nodes[2 * i + 1].id());
            sights[i][0].look(&nodes[2 * i].friends, &dialled_id);
            sights[i][1].look(&nodes[2 * i + 1].friends, &dialler_id);
            // A miss names the nodes, for their story in the log (`CARRIER_BENCH_LOG`).
            decided[i] = decide(&sights[i], accepted[i]).map(|t| match t {
                Try::Missed(why) => Try::Missed(format!(
                    "{why} [dialler {dialler_id}, dialled {dialled_id}]"
                )),
                other => other,
            });
        }
        tokio::time::sleep(POLL).await;
    }

    phase("tries decided");
    let mut stopping = tokio::task::JoinSet::new();
    for node in nodes {
        stopping.spawn(node.stop());
    }
    stopping.join_all().await;
    phase("nodes stopped");
    Ok(decided
        .into_iter()
        .enumerate()
        .map(|(i, t)| (i / at_once, t.unwrap_or(Try::NoLink)))
        .collect())
}

/// A try's outcome once it is known, from the dialler's and the dialled side's sights.
fn decide(sights: &[Sight; 2], accepted: Instant) -> Option<Try> {
    let Some((topology, _, up)) = sights[0].first else {
        return (accepted.elapsed() > PATIENCE).then_some(Try::NoLink);
    };
    if topology != Topology::Relayed {
        return Some(Try::NotRelayed(format!(
            "the dialler's first link was {topology:?} (dialler: {}; dialled: {})",
            sights[0].describe(up),
            sights[1].describe(up)
        )));
    }
    // The link is up once both hold it: the dialled side takes it up when the accept has
    // crossed it, and punches only then.
    let up = match sights[1].first {
        Some((_, _, at)) => up.max(at),
        None if up.elapsed() > ADOPT_WITHIN => {
            return Some(Try::Missed(format!(
                "the dialled side did not take the link up within {} s",
                ADOPT_WITHIN.as_secs()
            )))
        }
        None => return None,
    };
    let describe = || {
        format!(
            "dialler: {}; dialled: {}",
            sights[0].describe(up),
            sights[1].describe(up)
        )
    };
    if both_direct(sights) {
        return Some(match punched(sights, ["the dialler", "the dialled side"]) {
            Ok(at) if at.duration_since(up) <= DIRECT_WITHIN => Try::Punched(at.duration_since(up)),
            Ok(at) => Try::Missed(format!(
                "direct only after {} ms ({})",
                at.duration_since(up).as_millis(),
                describe()
            )),
            Err(why) => Try::Missed(format!("{why} ({})", describe())),
        });
    }
    (up.elapsed() > DIRECT_WITHIN).then(|| {
        Try::Missed(format!(
            "not direct on both sides {} ms after the link came up ({})",
            DIRECT_WITHIN.as_millis(),
            describe()
        ))
    })
}

/// One run of `reach.switch_gap_ms`, in milliseconds.
pub(crate) fn switch_gap(_scale: &Scale) -> Result<f64, String> {
    transfer::on_runtime_within(Duration::from_secs(300), async {
        let began = Instant::now();
        let lab = open_lab("bench_switch_gap").await?;
        let (seed, contact, relays) = internet(&lab).await?;
        let moderate = NatBehaviour::PortRestrictedCone;
        let homes = [
            Home::build(&lab, "alice", moderate).await?,
            Home::build(&lab, "bob", moderate).await?,
        ];
        // No direct packet between them until the transfer runs.
        link::cut_peer(&homes[0].router, homes[1].public_ip)
            .await
            .map_err(lab_error)?;
        let mut alice = Node::start(&homes[0], "switch-alice", &contact).await?;
        let mut bob = Node::start(&homes[1], "switch-bob", &contact).await?;
        let extension = Extension::new(Extension::FIRST_FREE).map_err(|e| e.to_string())?;
        let mut inbox = bob.friends.register(extension).map_err(|e| e.to_string())?;
        befriend(
            (&alice.friends, &mut alice.events),
            (&bob.friends, &mut bob.events),
            PATIENCE,
        )
        .await?;
        let (alice_id, bob_id) = (alice.id(), bob.id());
        let link = alice
            .friends
            .link(&bob_id)
            .ok_or("alice holds no link to bob")?;
        for (node, peer, who) in [(&alice, bob_id, "alice"), (&bob, alice_id, "bob")] {
            match path_of(&node.friends, &peer) {
                Some((Topology::Relayed, _)) => {}
                other => return Err(format!("{who}'s link is not relayed: {other:?}")),
            }
        }
        let before = path_of(&alice.friends, &bob_id).map(|(_, c)| c);

        // The paced transfer, Alice to Bob, until told to stop.
        let stop = Arc::new(AtomicBool::new(false));
        let sender = {
            let (link, stop) = (link.clone(), stop.clone());
            tokio::spawn(async move {
                let mut stream = link.open_uni(extension).await.map_err(|e| e.to_string())?;
                let chunk = vec![0x5au8; CHUNK];
                let mut sent = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    stream.write_all(&chunk).await.map_err(|e| e.to_string())?;
                    sent += CHUNK as u64;
                    tokio::time::sleep(PACE).await;
                }
                stream.finish().map_err(|e| e.to_string())?;
                let _ = stream.stopped().await;
                Ok::<u64, String>(sent)
            })
        };
        let mut recv = match tokio::time::timeout(PATIENCE, inbox.recv()).await {
            Ok(Some(Inbound::Uni { recv, .. })) => recv,
            _ => return Err("no stream came".into()),
        };
        let reads = Arc::new(Mutex::new(Vec::<Instant>::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let receiver = {
            let (reads, count) = (reads.clone(), count.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 << 10];
                let mut received = 0u64;
                loop {
                    let read = tokio::time::timeout(PATIENCE, recv.read(&mut buf))
                        .await
                        .map_err(|_| "the transfer stalled".to_string())?
                        .map_err(|e| e.to_string())?;
                    let Some(n) = read else { break };
                    received += n as u64;
                    reads
                        .lock()
                        .map_err(|e| e.to_string())?
                        .push(Instant::now());
                    count.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<u64, String>(received)
            })
        };

        // Relayed for a while, then the direct path opens while the first round probes.
        let flowing = Instant::now() + PATIENCE;
        while count.load(Ordering::Relaxed) == 0 && Instant::now() < flowing {
            tokio::time::sleep(POLL).await;
        }
        tokio::time::sleep(RELAYED_FOR).await;
        let healed = Instant::now();
        link::heal_peer(&homes[0].router).await.map_err(lab_error)?;
        let sights = watch(
            [(&alice.friends, bob_id), (&bob.friends, alice_id)],
            healed + PATIENCE,
            both_direct,
        )
        .await;
        tokio::time::sleep(AFTER_MOVE + Duration::from_millis(100)).await;
        stop.store(true, Ordering::Relaxed);
        let sent = sender.await.map_err(|e| e.to_string())??;
        let received = receiver.await.map_err(|e| e.to_string())??;
        let same = [
            path_of(&alice.friends, &bob_id).map(|(_, c)| c),
            path_of(&bob.friends, &alice_id).map(|(_, c)| c),
        ] == [before, before];
        tokio::join!(alice.stop(), bob.stop());
        stop_internet(seed, relays).await;

        if received != sent {
            return Err(format!("{received} bytes arrived of {sent}"));
        }
        let (Some((alice_moved, _)), Some((bob_moved, _))) = (sights[0].direct, sights[1].direct)
        else {
            return Err("the link did not move to the direct path".into());
        };
        if !same {
            return Err("the direct link is not the relayed link's connection".into());
        }
        let reads = reads.lock().map_err(|e| e.to_string())?.clone();
        let (first_move, last_move) = (alice_moved.min(bob_moved), alice_moved.max(bob_moved));
        let (from, to) = (first_move - BEFORE_MOVE, last_move + AFTER_MOVE);
        match (reads.first(), reads.last()) {
            (Some(first), Some(last)) if *first < from && *last > to => {}
            _ => return Err("the transfer did not run through the move".into()),
        }
        let gaps: Vec<Duration> = reads
            .windows(2)
            .filter(|w| w[1] >= from && w[0] <= to)
            .map(|w| w[1] - w[0])
            .collect();
        let longest = gaps.iter().max().copied().unwrap_or_default();
        let mut all: Vec<Duration> = reads.windows(2).map(|w| w[1] - w[0]).collect();
        all.sort();
        eprintln!(
            "bench: reach.switch_gap_ms: run took {:.1} s; moved {} ms (alice) and {} ms (bob) \
             after the heal; longest gap {:.1} ms around the move, median gap {:.2} ms over {} \
             reads",
            began.elapsed().as_secs_f64(),
            alice_moved.duration_since(healed).as_millis(),
            bob_moved.duration_since(healed).as_millis(),
            longest.as_secs_f64() * 1000.0,
            all.get(all.len() / 2)
                .copied()
                .unwrap_or_default()
                .as_secs_f64()
                * 1000.0,
            reads.len()
        );
        Ok(longest.as_secs_f64() * 1000.0)
    })
}
