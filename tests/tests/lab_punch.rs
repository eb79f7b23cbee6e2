//! Hole punching in the lab (issue 20): the 16 ordered pairs (dialler, dialled) of NAT kinds
//! None (public), Open (full cone), Moderate (port-restricted cone) and Strict (symmetric), in
//! one shared lab, all at once.
//!
//! The lab: a bootstrap server on the internet that relays for nobody, four relays (DHT
//! servers, each on a network of its own, so a NATed node can register with three), and eight
//! `carrier daemon`s, each behind a home router of its own: a dialler and a dialled daemon of
//! each kind (None is a router without NAT: its device has a public address). Each of the four
//! diallers befriends each of the four dialled daemons: 16 links, one per ordered pair.
//!
//! **Who dials.** The dialler is the side whose QUIC connection the pair's first link is: the
//! dialled daemons start first and are announced (their records name their public address
//! where they have one, and their relays) before the diallers start. Each dialled daemon then
//! sends each dialler a friend request, and the dialler accepts it: the accept is delivered
//! over a link the dialler dials (its outbox and its link machine both dial the new friend),
//! and the dialled side, a friend only once that accept arrives over that link, finds the
//! link already held and dials nothing (decision 96). The test checks it: the first link the
//! dialler holds is one it dialled (`links`' `dialled`). The other way round (the dialler
//! requests, the dialled accepts) the accept's delivery would make the dialled side dial.
//!
//! The request itself is a contact: the dialled side's packets to the dialler (directly, or
//! to its public mapping while the relay carries the request) leave conntrack entries in
//! both routers that would let the dialler's dial in. So before each accept, both routers
//! forget the flows between the pair's public addresses (`NetworkLab::forget_flows`): the
//! pair is as strangers that befriended each other long ago.
//!
//! **What is asserted, per pair** (the pair named in every failure):
//! (a) the first link is relayed exactly when the dialled side is behind Moderate or Strict;
//! (b) within [`PUNCH_BOUND`] of the accept the link is direct (`p2p`: lab addresses are
//! public), unless both sides are in {Moderate, Strict} with at least one Strict, where it is
//! still relayed, and a link that went from relayed to direct is the same QUIC connection
//! (`links`' `connection`: hole punching moved it, no second link replaced it); (c) a message
//! round-trips over the link (not through a mailbox).
//! A link's topology is the `links` result's `topology` where the daemon reports it, else it
//! is derived from `remote`: the friend's public IP is direct, a relay's is relayed.
//! A table of the 16 outcomes goes to stderr.
#![allow(clippy::unwrap_used)]
#![cfg(target_os = "linux")]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use carrier::dht::id::CarrierId;
use carrier::dht::{BootstrapNode, Dht};
use serde_json::{json, Value};
use tests::lab::daemon::{DaemonOptions, LabDaemon};
use tests::lab::nodes::{lab_config, node_in, public_node, seed};
use tests::lab::{ipv4, Device, NatBehaviour, NetworkLab, Router};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// Relays, each on a network of its own (a NATed node takes one relay per /24).
const RELAYS: usize = 4;

/// How long after the accept a pair's link must have gone direct: a generous bound.
const PUNCH_BOUND: Duration = Duration::from_secs(20);

/// How long a pair that must stay relayed is watched after its accept, at least.
const RELAYED_WATCH: Duration = Duration::from_secs(5);

/// How long the daemons may take to be announced, and the requests to arrive.
const SETUP_BOUND: Duration = Duration::from_secs(40);

/// How often each daemon's links are looked at.
const POLL: Duration = Duration::from_millis(30);

/// A link's topology as `links` reports it: `lan`, `p2p` or `relayed`.
type Topology = String;

/// One side of the matrix: a daemon behind a router of a kind.
struct Side {
    kind: NatBehaviour,
    router: Router,
    device: Device,
    /// The address the internet sees it at: its own for None, its router's otherwise.
    public_ip: IpAddr,
}

impl Side {
    async fn build(lab: &NetworkLab, role: &str, kind: NatBehaviour) -> Side {
        let name = format!("{role}-{}", kind.short_name().to_lowercase());
        let router = lab.home(&format!("{name}-home"), kind).await.unwrap();
        let device = lab.device_in(&router, &name).await.unwrap();
        let public_ip = match kind {
            NatBehaviour::None => IpAddr::V4(ipv4(&device).unwrap()),
            _ => IpAddr::V4(router.uplink_ip().unwrap()),
        };
        Side {
            kind,
            router,
            device,
            public_ip,
        }
    }
}

/// What a daemon's `links` said about one friend, when it changed.
#[derive(Clone, Debug)]
struct Seen {
    at: Instant,
    /// The address the link runs to; `None`: no link held.
    remote: Option<SocketAddr>,
    /// The daemon's own `topology` for it, where it reports one.
    topology: Option<Topology>,
    /// Whether this side dialled the link.
    dialled: bool,
    /// The daemon's number for the link's QUIC connection, where it reports one.
    connection: Option<u64>,
}

/// Every change of every friend's link, per friend ID, as one daemon's `links` shows them.
type History = Arc<Mutex<HashMap<String, Vec<Seen>>>>;

/// Polls `links` on a control connection of its own to the daemon on `data` every [`POLL`]
/// until `stop`, recording each change per friend into `history`.
async fn watch_links(data: PathBuf, history: History, stop: Arc<AtomicBool>) {
    let (read, mut write) = UnixStream::connect(data.join("control.sock"))
        .await
        .unwrap()
        .into_split();
    let mut lines = BufReader::new(read).lines();
    let mut id = 0u64;
    while !stop.load(Ordering::Relaxed) {
        id += 1;
        let request = json!({ "id": id, "request": "links" });
        write
            .write_all(format!("{request}\n").as_bytes())
            .await
            .unwrap();
        let reply: Value =
            serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        let at = Instant::now();
        let links = &reply["result"];
        let dialled: Vec<&str> = links["dialled"]
            .as_array()
            .map(|ids| ids.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        record(&history, links, &dialled, at);
        tokio::time::sleep(POLL).await;
    }
}

/// Records in `history` each friend whose link changed in `links` (a `links` result).
fn record(history: &History, links: &Value, dialled: &[&str], at: Instant) {
    let mut history = history.lock().unwrap();
    // Friends with a link now, and those that had one (now gone).
    let mut friends: Vec<String> = links["remote"]
        .as_object()
        .map(|remote| remote.keys().cloned().collect())
        .unwrap_or_default();
    friends.extend(history.keys().cloned());
    for friend in friends {
        let seen = Seen {
            at,
            remote: links["remote"][&friend]
                .as_str()
                .and_then(|addr| addr.parse().ok()),
            topology: links["topology"][&friend].as_str().map(str::to_string),
            dialled: dialled.contains(&friend.as_str()),
            connection: links["connection"][&friend].as_u64(),
        };
        let changes = history.entry(friend).or_default();
        let changed = changes.last().is_none_or(|last| {
            (last.remote, &last.topology, last.dialled, last.connection)
                != (seen.remote, &seen.topology, seen.dialled, seen.connection)
        });
        if changed {
            changes.push(seen);
        }
    }
}

/// The topology of a link to a friend at `friend_ip` running to `remote`: the daemon's own
/// word if it gives one, else direct to the friend's public IP (`lan` for a private,
/// link-local or loopback address, `p2p` otherwise), relayed through a relay's.
fn topology_of(seen: &Seen, friend_ip: IpAddr, relays: &[IpAddr]) -> Topology {
    if let Some(topology) = &seen.topology {
        return topology.clone();
    }
    let Some(remote) = seen.remote else {
        return "none".to_string();
    };
    let ip = remote.ip();
    if relays.contains(&ip) {
        "relayed".to_string()
    } else if ip == friend_ip {
        let local = match ip {
            IpAddr::V4(v4) => v4.is_private() || v4.is_link_local() || v4.is_loopback(),
            IpAddr::V6(v6) => v6.is_loopback() || v6.is_unicast_link_local(),
        };
        if local { "lan" } else { "p2p" }.to_string()
    } else {
        format!("unknown({remote})")
    }
}

/// Whether the kind filters what it was not sent to: a link to a node behind it starts
/// relayed.
fn filters(kind: NatBehaviour) -> bool {
    matches!(
        kind,
        NatBehaviour::PortRestrictedCone | NatBehaviour::Symmetric
    )
}

/// Whether a pair must stay relayed: both filter and one maps per destination.
fn stays_relayed(dialler: NatBehaviour, dialled: NatBehaviour) -> bool {
    filters(dialler)
        && filters(dialled)
        && (dialler == NatBehaviour::Symmetric || dialled == NatBehaviour::Symmetric)
}

/// Whether `id`'s record, as `finder` finds it, names `public_ip` (unless `kind` maps per
/// destination, where no address would do) and at least two relays.
async fn announced(finder: &Dht, id: &CarrierId, kind: NatBehaviour, public_ip: IpAddr) -> bool {
    let Ok(Some(record)) = finder.find_peer(id).await else {
        return false;
    };
    let addressed =
        kind == NatBehaviour::Symmetric || record.addrs.iter().any(|a| a.ip() == public_ip);
    addressed && record.relays.len() >= 2
}

/// Starts a daemon in each of `sides` at once; they come back in order.
async fn start_daemons(
    sides: &[Side],
    dir: &std::path::Path,
    seeds: &[BootstrapNode],
) -> Vec<LabDaemon> {
    let options = DaemonOptions {
        // Relayed links under the load of sixteen pairs need the usual margin of silence.
        silence_secs: Some(20),
        ..DaemonOptions::default()
    };
    let mut starting = tokio::task::JoinSet::new();
    for (i, side) in sides.iter().enumerate() {
        let (device, dir, seeds, options) = (
            side.device.clone(),
            dir.to_path_buf(),
            seeds.to_vec(),
            options.clone(),
        );
        starting.spawn(async move { (i, LabDaemon::start(&device, &dir, &seeds, &options).await) });
    }
    let mut daemons: Vec<(usize, LabDaemon)> = starting.join_all().await;
    daemons.sort_by_key(|(i, _)| *i);
    daemons.into_iter().map(|(_, daemon)| daemon).collect()
}

/// Waits until every daemon of `sides` is announced (see [`announced`]).
async fn wait_announced(finder: &Dht, sides: &[Side], daemons: &[LabDaemon]) {
    let deadline = Instant::now() + SETUP_BOUND;
    for (side, daemon) in sides.iter().zip(daemons) {
        while !announced(finder, &daemon.id(), side.kind, side.public_ip).await {
            assert!(
                Instant::now() < deadline,
                "the {} daemon {} was never announced with its address and relays: {:?}",
                side.kind.short_name(),
                side.device.name(),
                finder.find_peer(&daemon.id()).await
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// The outcome of one ordered pair.
struct Outcome {
    dialler: NatBehaviour,
    dialled: NatBehaviour,
    accepted: Instant,
    /// The dialler's first link: its topology, when, and whether the dialler dialled it.
    first: Option<(Topology, Duration, bool)>,
    /// When the dialler's link was first direct, after the accept, and whether the dialler
    /// dialled that link (a link the dialled side dialled is another connection).
    direct: Option<(Duration, bool)>,
    /// The dialler's topology at the end of the watch, and the dialled side's.
    last: (Topology, Topology),
    /// How many times the dialler's link changed (address, topology or who dialled it).
    changes: usize,
    /// Whether the first link and the first direct one are the same QUIC connection.
    same_connection: Option<bool>,
}

impl Outcome {
    fn name(&self) -> String {
        format!(
            "dialler {} -> dialled {}",
            self.dialler.short_name(),
            self.dialled.short_name()
        )
    }

    fn first_should_be_relayed(&self) -> bool {
        filters(self.dialled)
    }

    fn should_stay_relayed(&self) -> bool {
        stays_relayed(self.dialler, self.dialled)
    }
}

fn millis(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".to_string(), |d| format!("{} ms", d.as_millis()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "network lab: runs in the `lab` step of `cargo xtask ci`"]
async fn every_pair_of_nat_kinds_links_relayed_first_where_it_must_and_direct_where_it_can() {
    let Some(lab) = NetworkLab::open("punch_matrix").await else {
        return;
    };
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();

    // The DHT: a bootstrap server that relays for nobody, and relays on networks of their own.
    let bootstrap_host = lab.public_host("bootstrap").await.unwrap();
    let bind = SocketAddr::new(IpAddr::V4(ipv4(&bootstrap_host).unwrap()), 0);
    let mut config = lab_config(bind, true, Vec::new());
    config.relay = None;
    let bootstrap = node_in(&bootstrap_host, config).await.unwrap();
    let mut relays = Vec::new();
    let mut relay_ips = Vec::new();
    for i in 0..RELAYS {
        let network = lab.isp(&format!("isp{i}")).await.unwrap();
        let host = lab.device_in(&network, &format!("relay{i}")).await.unwrap();
        relay_ips.push(IpAddr::V4(ipv4(&host).unwrap()));
        let relay = public_node(&host, true, vec![seed(&bootstrap)])
            .await
            .unwrap();
        relay.bootstrap().await.unwrap();
        relays.push(relay);
    }
    let seeds = vec![seed(&bootstrap), seed(&relays[0])];

    // The dialled daemons first, announced; then the diallers.
    let mut dialled_sides = Vec::new();
    let mut dialler_sides = Vec::new();
    for kind in NatBehaviour::ALL {
        dialled_sides.push(Side::build(&lab, "dialled", kind).await);
        dialler_sides.push(Side::build(&lab, "dialler", kind).await);
    }
    let built = started.elapsed();
    let mut dialled = start_daemons(&dialled_sides, dir.path(), &seeds).await;
    wait_announced(&bootstrap, &dialled_sides, &dialled).await;
    let mut diallers = start_daemons(&dialler_sides, dir.path(), &seeds).await;
    wait_announced(&bootstrap, &dialler_sides, &diallers).await;
    let announced_at = started.elapsed();

    // Each dialled daemon asks each dialler to be friends.
    let mut addresses = Vec::new();
    for dialler in &mut diallers {
        addresses.push(dialler.ok("address", json!({})).await["address"].clone());
    }
    for daemon in &mut dialled {
        for address in &addresses {
            daemon
                .ok(
                    "friend_add",
                    json!({ "address": address, "hello": "dial me" }),
                )
                .await;
        }
    }
    for dialler in &mut diallers {
        for daemon in &dialled {
            dialler.events_at_least("request", &daemon.id(), 1).await;
        }
    }
    let requested_at = started.elapsed();

    // Watch every daemon's links from now on.
    let stop = Arc::new(AtomicBool::new(false));
    let mut watchers = Vec::new();
    let watch = |daemon: &LabDaemon, watchers: &mut Vec<_>| {
        let history = History::default();
        watchers.push(tokio::spawn(watch_links(
            daemon.data().to_path_buf(),
            history.clone(),
            stop.clone(),
        )));
        history
    };
    let dialler_history: Vec<History> = diallers.iter().map(|d| watch(d, &mut watchers)).collect();
    let dialled_history: Vec<History> = dialled.iter().map(|d| watch(d, &mut watchers)).collect();

    // Let the requests' last packets pass, then make each pair strangers to its routers and
    // accept: the dialler dials.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut outcomes = Vec::new();
    for (x, dialler) in diallers.iter_mut().enumerate() {
        for (y, target) in dialled.iter().enumerate() {
            let (xs, ys) = (&dialler_sides[x], &dialled_sides[y]);
            lab.forget_flows(&xs.router, ys.public_ip).await.unwrap();
            lab.forget_flows(&ys.router, xs.public_ip).await.unwrap();
            let accepted = Instant::now();
            dialler
                .ok(
                    "friend_accept",
                    json!({ "friend": target.id().to_string() }),
                )
                .await;
            outcomes.push(Outcome {
                dialler: xs.kind,
                dialled: ys.kind,
                accepted,
                first: None,
                direct: None,
                last: (String::new(), String::new()),
                changes: 0,
                same_connection: None,
            });
        }
    }

    // Until every pair that must go direct has, or the bound: pairs that must stay relayed
    // are watched at least RELAYED_WATCH.
    let last_accept = outcomes.last().unwrap().accepted;
    let topology_now = |x: usize, y: usize| -> Option<Seen> {
        let friend = dialled[y].id().to_string();
        dialler_history[x]
            .lock()
            .unwrap()
            .get(&friend)
            .and_then(|changes| changes.last().cloned())
    };
    loop {
        let waiting = (0..4)
            .flat_map(|x| (0..4).map(move |y| (x, y)))
            .any(|(x, y)| {
                let outcome = &outcomes[x * 4 + y];
                let now = topology_now(x, y)
                    .map(|seen| topology_of(&seen, dialled_sides[y].public_ip, &relay_ips));
                !outcome.should_stay_relayed() && now.as_deref() != Some("p2p")
            });
        let elapsed = last_accept.elapsed();
        if (!waiting && elapsed >= RELAYED_WATCH) || elapsed >= PUNCH_BOUND {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for watcher in watchers {
        watcher.await.unwrap();
    }
    let watched_at = started.elapsed();

    // Each pair's story, from the dialler's side (and the dialled side's last word).
    for x in 0..4 {
        for y in 0..4 {
            let outcome = &mut outcomes[x * 4 + y];
            let (dialler_id, dialled_id) =
                (diallers[x].id().to_string(), dialled[y].id().to_string());
            let seen = dialler_history[x]
                .lock()
                .unwrap()
                .get(&dialled_id)
                .cloned()
                .unwrap_or_default();
            let friend_ip = dialled_sides[y].public_ip;
            let linked: Vec<&Seen> = seen.iter().filter(|s| s.remote.is_some()).collect();
            outcome.changes = seen.len().saturating_sub(1);
            outcome.first = linked.first().map(|s| {
                (
                    topology_of(s, friend_ip, &relay_ips),
                    s.at.saturating_duration_since(outcome.accepted),
                    s.dialled,
                )
            });
            let direct = linked
                .iter()
                .find(|s| topology_of(s, friend_ip, &relay_ips) == "p2p");
            outcome.direct =
                direct.map(|s| (s.at.saturating_duration_since(outcome.accepted), s.dialled));
            outcome.same_connection = match (linked.first(), direct) {
                (Some(first), Some(direct)) => {
                    Some(first.connection.is_some() && first.connection == direct.connection)
                }
                _ => None,
            };
            let back = dialled_history[y]
                .lock()
                .unwrap()
                .get(&dialler_id)
                .and_then(|changes| changes.last().cloned());
            outcome.last = (
                seen.last().map_or("none".to_string(), |s| {
                    topology_of(s, friend_ip, &relay_ips)
                }),
                back.map_or("none".to_string(), |s| {
                    topology_of(&s, dialler_sides[x].public_ip, &relay_ips)
                }),
            );
        }
    }

    // A message each way on every pair's link (not through a mailbox: `offline` is false).
    for (x, dialler) in diallers.iter_mut().enumerate() {
        for (y, target) in dialled.iter().enumerate() {
            let text = format!("ping {x}{y}");
            dialler
                .ok(
                    "send",
                    json!({ "friend": target.id().to_string(), "text": text }),
                )
                .await;
        }
    }
    let mut failures = Vec::new();
    for (y, target) in dialled.iter_mut().enumerate() {
        for (x, dialler) in diallers.iter().enumerate() {
            target.events_at_least("message", &dialler.id(), 1).await;
            let name = outcomes[x * 4 + y].name();
            check_message(
                target,
                &dialler.id(),
                &format!("ping {x}{y}"),
                &name,
                &mut failures,
            );
            target
                .ok(
                    "send",
                    json!({ "friend": dialler.id().to_string(), "text": format!("pong {x}{y}") }),
                )
                .await;
        }
    }
    for (x, dialler) in diallers.iter_mut().enumerate() {
        for (y, target) in dialled.iter().enumerate() {
            dialler.events_at_least("message", &target.id(), 1).await;
            let name = outcomes[x * 4 + y].name();
            check_message(
                dialler,
                &target.id(),
                &format!("pong {x}{y}"),
                &name,
                &mut failures,
            );
        }
    }
    let messaged_at = started.elapsed();

    // The table, then the verdicts.
    eprintln!(
        "lab built {built:?}, daemons announced {announced_at:?}, requests in {requested_at:?}, \
         links watched until {watched_at:?}, messages round-tripped {messaged_at:?}"
    );
    eprintln!(
        "{:<9} {:<9} {:<14} {:>9} {:<8} {:>9} {:<8} {:<17} {:>7}  expected",
        "dialler",
        "dialled",
        "first link",
        "after",
        "by",
        "direct",
        "by",
        "last (both ends)",
        "changes"
    );
    let who = |by_dialler: bool| if by_dialler { "dialler" } else { "dialled" };
    for outcome in &outcomes {
        let (first, after, by) = match &outcome.first {
            Some((topology, after, by_dialler)) => {
                (topology.clone(), millis(Some(*after)), who(*by_dialler))
            }
            None => ("none".to_string(), "-".to_string(), "-"),
        };
        eprintln!(
            "{:<9} {:<9} {:<14} {:>9} {:<8} {:>9} {:<8} {:<17} {:>7}  {} then {}",
            outcome.dialler.short_name(),
            outcome.dialled.short_name(),
            first,
            after,
            by,
            millis(outcome.direct.map(|(at, _)| at)),
            outcome
                .direct
                .map_or("-", |(_, by_dialler)| who(by_dialler)),
            format!("{}/{}", outcome.last.0, outcome.last.1),
            outcome.changes,
            if outcome.first_should_be_relayed() {
                "relayed"
            } else {
                "p2p"
            },
            if outcome.should_stay_relayed() {
                "relayed"
            } else {
                "p2p"
            },
        );
    }
    for outcome in &outcomes {
        let name = outcome.name();
        match &outcome.first {
            None => failures.push(format!("{name}: no link at all")),
            Some((topology, _, by_dialler)) => {
                let want = if outcome.first_should_be_relayed() {
                    "relayed"
                } else {
                    "p2p"
                };
                if topology != want {
                    failures.push(format!("{name}: the first link is {topology}, not {want}"));
                }
                if !by_dialler {
                    failures.push(format!(
                        "{name}: the first link was dialled by the dialled side"
                    ));
                }
            }
        }
        if outcome.first_should_be_relayed()
            && !outcome.should_stay_relayed()
            && outcome.same_connection != Some(true)
        {
            failures.push(format!(
                "{name}: the direct link is not the relayed link's connection moved (hole \
                 punching moves it; {:?})",
                outcome.same_connection
            ));
        }
        let want = if outcome.should_stay_relayed() {
            "relayed"
        } else {
            "p2p"
        };
        if (outcome.last.0.as_str(), outcome.last.1.as_str()) != (want, want) {
            failures.push(format!(
                "{name}: the link is {}/{} (dialler/dialled) {:?} after the accept, not {want}",
                outcome.last.0,
                outcome.last.1,
                outcome.accepted.elapsed()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Checks that `daemon` got `text` from `from` over a link, not from a mailbox.
fn check_message(
    daemon: &LabDaemon,
    from: &CarrierId,
    text: &str,
    pair: &str,
    failures: &mut Vec<String>,
) {
    let from = from.to_string();
    let message = daemon
        .events()
        .iter()
        .find(|e| e["event"] == "message" && e["from"] == from.as_str() && e["text"] == text);
    match message {
        None => failures.push(format!("{pair}: {text:?} did not arrive")),
        Some(message) if message["offline"] != false => failures.push(format!(
            "{pair}: {text:?} came through a mailbox: {message}"
        )),
        Some(_) => {}
    }
}
