//! The friend-link figures.
//!
//! - `friend.connect_ms`: two nodes that are already friends, a bootstrap node running; from
//!   the moment both nodes start (on their data directories) to the moment both report their
//!   link up. Measured in this process: each run befriends a fresh pair, stops both, and times
//!   their restart.
//! - `mem.link_kib` and `idle.packets_per_min_per_link`, one joint measurement: a hub node in
//!   its own process (`xtask bench-child friend-hub`), its friends' nodes in another
//!   (`xtask bench-child friend-spokes`). Each spoke asks the hub to be its friend, the hub
//!   accepts every request, and the links come up. The hub reads its resident set before the
//!   spokes exist and once every link is up and idle: the growth per link is `mem.link_kib`
//!   (it includes what the hub keeps per friend besides the link: the friend-list entry, the
//!   spoke's peer record and DHT contact). Then the hub counts the UDP datagrams its links sent
//!   and received (quinn's per-connection counters) over an idle window: per link per minute,
//!   that is `idle.packets_per_min_per_link`.
//! - `idle.cpu_pct`: the same hub and spokes, fewer of them (50 links), and the hub's CPU time
//!   (user + system, every thread of its process) over an idle window, in percent of one core.
//!   Its own joint measurement, because its size differs; the run is the same code
//!   ([`watch_idle_hub`]).
//!
//! The two processes talk over stdin/stdout lines; see [`hub`] and [`spokes`].

use super::scratch::Scratch;
use super::{transfer, Joint, Runs, Scale};
use carrier_friend::dht::{BootstrapNode, Dht, DhtConfig};
use carrier_friend::{FriendEvent, FriendEvents, Friends, FriendsConfig};
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;

/// The hidden subcommands of the two processes.
pub(crate) const HUB: &str = "friend-hub";
pub(crate) const SPOKES: &str = "friend-spokes";

/// Runs of the joint measurement in the full bench: each starts 1000 nodes, so one run
/// already averages over 1000 links.
const LINK_RUNS: usize = 1;

/// The joint measurement behind `mem.link_kib` and `idle.packets_per_min_per_link`.
pub(crate) const LINKS: Joint = Joint {
    name: "friend.links",
    runs: Runs::Expensive { full: LINK_RUNS },
    measure: measure_links,
};

/// The joint measurement behind `idle.cpu_pct` (one figure, but it shares the hub and spokes
/// of [`LINKS`], and a run is as expensive).
pub(crate) const IDLE: Joint = Joint {
    name: "friend.idle",
    runs: Runs::Expensive { full: 1 },
    measure: measure_idle_cpu,
};

/// How long every link waits, idle, before the memory reading (so what the first moments of
/// a link take is counted).
const SETTLE: Duration = Duration::from_secs(2);

/// How long the hub may take to report a link up once the spokes have all seen theirs.
const HUB_CATCH_UP: Duration = Duration::from_secs(10);

/// How long all links may take to come up, per 100 spokes.
const PATIENCE_PER_100: Duration = Duration::from_secs(60);

/// Spokes started at once; the next group starts when this one's requests are sent.
const GROUP: usize = 50;

/// A node's friend-layer settings here: the defaults, which are what users run.
fn friends_config() -> FriendsConfig {
    FriendsConfig::default()
}

/// A node's DHT settings: a server on `bind` (loopback needs no NAT traversal), its data in
/// `dir`.
pub(crate) fn dht_config(
    bind: SocketAddr,
    dir: &Path,
    bootstrap: Option<&BootstrapNode>,
) -> DhtConfig {
    let mut config = DhtConfig::new(bind);
    config.data_dir = Some(dir.to_path_buf());
    config.bootstrap = bootstrap.cloned().into_iter().collect();
    config.node.server = true;
    config
}

/// Spoke `i`'s address: 127.(100 + i / 250).(i % 250).1, any port, so no two share a /24 and
/// the hub's per-source limit on strangers treats them as the different hosts they stand for.
fn spoke_addr(i: usize) -> Result<SocketAddr, String> {
    let high = 100 + i / 250;
    if high > 254 {
        return Err(format!("spoke {i}: too many spokes for 127.100-254.x.1"));
    }
    Ok(SocketAddr::from((
        Ipv4Addr::new(127, high as u8, (i % 250) as u8, 1),
        0,
    )))
}

/// Starts a node: its DHT on `bind`, joined through `bootstrap` if given, and its friend layer.
pub(crate) async fn start_node(
    bind: SocketAddr,
    dir: PathBuf,
    bootstrap: Option<BootstrapNode>,
) -> Result<(Dht, Friends, FriendEvents), String> {
    let dht = Dht::bind(dht_config(bind, &dir, bootstrap.as_ref()))
        .await
        .map_err(|e| format!("a node cannot start: {e}"))?;
    if bootstrap.is_some() {
        dht.bootstrap()
            .await
            .map_err(|e| format!("a node cannot join: {e}"))?;
    }
    let (friends, events) = Friends::start(dht.clone(), friends_config())
        .await
        .map_err(|e| format!("the friend layer cannot start: {e}"))?;
    Ok((dht, friends, events))
}

/// Stops a node's friend layer, then its DHT (which saves and closes its database).
pub(crate) async fn stop_node(dht: Dht, friends: Friends) {
    friends.shutdown().await;
    drop(friends);
    let _ = dht.shutdown().await;
}

/// Waits for the next event `wanted` picks, within `patience`.
pub(crate) async fn wait_for<T>(
    events: &mut FriendEvents,
    patience: Duration,
    what: &str,
    mut wanted: impl FnMut(FriendEvent) -> Option<T>,
) -> Result<T, String> {
    tokio::time::timeout(patience, async {
        while let Some(event) = events.recv().await {
            if let Some(found) = wanted(event) {
                return Ok(found);
            }
        }
        Err(format!("the events ended before {what}"))
    })
    .await
    .map_err(|_| format!("no {what} within {patience:?}"))?
}

/// Picks a link coming up.
pub(crate) fn connected(event: FriendEvent) -> Option<()> {
    matches!(event, FriendEvent::Connected(_)).then_some(())
}

/// Makes two running nodes friends (both announce their records, Alice asks, Bob accepts)
/// and waits until both report their link up, each within `patience`.
pub(crate) async fn befriend(
    (alice, alice_events): (&Friends, &mut FriendEvents),
    (bob, bob_events): (&Friends, &mut FriendEvents),
    patience: Duration,
) -> Result<(), String> {
    let _ = alice.announce().await;
    let _ = bob.announce().await;
    alice
        .add_friend(&bob.address().to_string(), b"bench")
        .await
        .map_err(|e| format!("the friend request failed: {e}"))?;
    let from = wait_for(bob_events, patience, "the request", |e| match e {
        FriendEvent::Request(request) => Some(request.from),
        _ => None,
    })
    .await?;
    bob.accept_friend(&from)
        .await
        .map_err(|e| format!("the accept failed: {e}"))?;
    wait_for(alice_events, patience, "alice's link", connected).await?;
    wait_for(bob_events, patience, "bob's link", connected).await
}

/// `friend.connect_ms`: one run. Befriends a fresh pair through a running bootstrap node,
/// stops both, then starts both again and times until both report the link up.
pub(crate) fn measure_connect(_scale: &Scale) -> Result<f64, String> {
    transfer::on_runtime(async {
        let dirs = [
            Scratch::new("seed")?,
            Scratch::new("alice")?,
            Scratch::new("bob")?,
        ];
        let ip = |n: u8| SocketAddr::from((Ipv4Addr::new(127, 90, n, 1), 0));
        let seed = Dht::bind(dht_config(ip(1), dirs[0].path(), None))
            .await
            .map_err(|e| format!("the bootstrap node cannot start: {e}"))?;
        let contact = BootstrapNode::new(seed.id(), seed.local_addr());

        // Befriend the pair, and let them link once.
        let (alice_dht, alice, mut alice_events) =
            start_node(ip(2), dirs[1].path().to_path_buf(), Some(contact.clone())).await?;
        let (bob_dht, bob, mut bob_events) =
            start_node(ip(3), dirs[2].path().to_path_buf(), Some(contact.clone())).await?;
        let patience = Duration::from_secs(60);
        befriend(
            (&alice, &mut alice_events),
            (&bob, &mut bob_events),
            patience,
        )
        .await?;
        // Each restarts on the port it had, as a node with a configured port does.
        let (alice_addr, bob_addr) = (alice_dht.local_addr(), bob_dht.local_addr());
        stop_node(alice_dht, alice).await;
        stop_node(bob_dht, bob).await;

        // The measured part: both start, both see the link.
        let started = Instant::now();
        let (alice_start, bob_start) = tokio::join!(
            start_node(
                alice_addr,
                dirs[1].path().to_path_buf(),
                Some(contact.clone())
            ),
            start_node(
                bob_addr,
                dirs[2].path().to_path_buf(),
                Some(contact.clone())
            ),
        );
        let (alice_dht, alice, mut alice_events) = alice_start?;
        let (bob_dht, bob, mut bob_events) = bob_start?;
        let (a, b) = tokio::join!(
            wait_for(&mut alice_events, patience, "alice's link", connected),
            wait_for(&mut bob_events, patience, "bob's link", connected),
        );
        a?;
        b?;
        let took = started.elapsed();
        stop_node(alice_dht, alice).await;
        stop_node(bob_dht, bob).await;
        let _ = seed.shutdown().await;
        Ok(took.as_secs_f64() * 1000.0)
    })
}

/// Runs a child process's whole life on a runtime: no time limit of its own, as the parent
/// bounds each step and a child whose stdin closes (its parent gone) stops.
fn process_runtime<F>(life: F) -> Result<f64, String>
where
    F: std::future::Future<Output = Result<f64, String>>,
{
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a tokio runtime: {e}"))?
        .block_on(life)
}

/// A child process and its stdout lines.
struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    what: &'static str,
}

impl Peer {
    fn start(what: &'static str, args: &[String]) -> Result<Self, String> {
        let program =
            std::env::current_exe().map_err(|e| format!("cannot find the running program: {e}"))?;
        let mut child = Command::new(&program)
            .arg("bench-child")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the {what}: {e}"))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            return Err(format!("the {what} has no pipes"));
        };
        Ok(Self {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            what,
        })
    }

    /// The next line that starts with `word`, without it.
    fn line(&mut self, word: &str) -> Result<String, String> {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self
                .stdout
                .read_line(&mut line)
                .map_err(|e| format!("reading the {}: {e}", self.what))?;
            if n == 0 {
                return Err(format!("the {} ended before `{word}`", self.what));
            }
            if let Some(rest) = line.trim_end().strip_prefix(word) {
                return Ok(rest.trim().to_string());
            }
            if let Some(error) = line.strip_prefix("fatal ") {
                return Err(format!("the {} failed: {}", self.what, error.trim()));
            }
        }
    }

    /// Writes one line to the child.
    fn send(&mut self, line: &str) -> Result<(), String> {
        writeln!(self.stdin, "{line}")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| format!("writing to the {}: {e}", self.what))
    }

    /// Sends `command` and reads the number on the reply line that starts with it.
    fn ask(&mut self, command: &str) -> Result<f64, String> {
        self.send(command)?;
        let reply = self.line(command)?;
        reply
            .parse()
            .map_err(|e| format!("the {} answered `{reply}` to {command}: {e}", self.what))
    }

    fn stop(mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        // Give it a moment to shut down cleanly, then make sure it is gone.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One run of the joint measurement: `scale.link_spokes` spokes, an idle window of
/// `scale.idle_window`.
fn measure_links(scale: &Scale, _run: usize) -> Result<Vec<(&'static str, f64)>, String> {
    let seen = watch_idle_hub(LINKS.name, scale.link_spokes, scale.idle_window)?;
    let minutes = seen.window.as_secs_f64() / 60.0;
    Ok(vec![
        (
            "mem.link_kib",
            (seen.rss_after - seen.rss_before).max(0.0) / seen.links,
        ),
        (
            "idle.packets_per_min_per_link",
            seen.datagrams / seen.links / minutes,
        ),
    ])
}

/// One run of `idle.cpu_pct`: `scale.idle_links` spokes, the hub's CPU time over
/// `scale.idle_cpu_window`, in percent of one core.
fn measure_idle_cpu(scale: &Scale, _run: usize) -> Result<Vec<(&'static str, f64)>, String> {
    let seen = watch_idle_hub(IDLE.name, scale.idle_links, scale.idle_cpu_window)?;
    let percent = seen.cpu.as_secs_f64() / seen.window.as_secs_f64().max(f64::MIN_POSITIVE) * 100.0;
    Ok(vec![("idle.cpu_pct", percent)])
}

/// What [`watch_idle_hub`] saw of the hub.
struct IdleHub {
    /// Links up when the window began.
    links: f64,
    /// The hub's VmRSS in KiB before any spoke existed.
    rss_before: f64,
    /// The same once every link was up and had idled [`SETTLE`].
    rss_after: f64,
    /// UDP datagrams sent and received on the hub's links during the window.
    datagrams: f64,
    /// The hub process's CPU time (user + system, all threads) during the window.
    cpu: Duration,
    /// How long the window lasted, as timed here.
    window: Duration,
}

/// Starts the hub and `spokes` spokes in their own processes, links every spoke to the hub,
/// lets the links idle [`SETTLE`], then watches the hub over `window` of idleness. `what` names
/// the measurement in messages. Fails if a link is missing at the start or dropped during the
/// window.
fn watch_idle_hub(what: &str, spokes: usize, window: Duration) -> Result<IdleHub, String> {
    let mut hub = Peer::start("hub", &[HUB.to_string()])?;
    let hub_line = hub.line("hub")?;
    let mut words = hub_line.split_whitespace();
    let (Some(contact), Some(address)) = (words.next(), words.next()) else {
        return Err(format!("the hub announced `{hub_line}`"));
    };
    let rss_before = hub.ask("rss")?;
    let mut spoke_nodes = Peer::start(
        "spokes",
        &[
            SPOKES.to_string(),
            spokes.to_string(),
            contact.to_string(),
            address.to_string(),
        ],
    )?;
    spoke_nodes.line("joined")?;
    hub.ask("announce")?;
    spoke_nodes.send("go")?;
    let ready = spoke_nodes.line("ready")?;
    eprintln!("bench: {what}: {ready}");
    // A spoke sees its link up a moment before the hub's event for it may have come.
    let deadline = Instant::now() + HUB_CATCH_UP;
    let mut links = hub.ask("links")?;
    while links < spokes as f64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        links = hub.ask("links")?;
    }
    if links < spokes as f64 {
        return Err(format!("the hub has {links} links, not {spokes}"));
    }
    std::thread::sleep(SETTLE);
    let rss_after = hub.ask("rss")?;
    // The CPU readings are the innermost, so the packet counting is outside them.
    let first_datagrams = hub.ask("packets")?;
    let first_cpu = hub.ask("cpu")?;
    let started = Instant::now();
    std::thread::sleep(window);
    let last_cpu = hub.ask("cpu")?;
    let window = started.elapsed();
    let last_datagrams = hub.ask("packets")?;
    let links_after = hub.ask("links")?;
    spoke_nodes.stop();
    hub.stop();
    if links_after < links {
        return Err(format!(
            "links dropped while idle: {links} then {links_after}"
        ));
    }
    let seen = IdleHub {
        links,
        rss_before,
        rss_after,
        datagrams: last_datagrams - first_datagrams,
        cpu: Duration::from_nanos((last_cpu - first_cpu).max(0.0) as u64),
        window,
    };
    eprintln!(
        "bench: {what}: hub VmRSS {rss_before} KiB before, {rss_after} KiB with {links} links; \
         {} datagrams and {:?} of CPU in {:?}",
        seen.datagrams, seen.cpu, seen.window
    );
    Ok(seen)
}

/// The CPU time this process has used so far, user and system, all its threads (those that
/// ended included): `CLOCK_PROCESS_CPUTIME_ID`, the sum `getrusage` and `/proc/self/stat`
/// report, but in nanoseconds rather than 10 ms clock ticks.
pub(crate) fn process_cpu_time() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    )
}

/// `xtask bench-child friend-hub`: the hub. Prints `hub <ID@IP:PORT> <address>`, accepts every
/// friend request, and answers `rss` (its VmRSS in KiB), `announce` (announces its peer record
/// now; how many storers took it), `links` (friends with a link up), `packets` (datagrams
/// sent and received on those links so far) and `cpu` (the CPU time this process has used, in
/// ns), one line each, until `quit`.
pub(crate) fn hub(args: &[String]) -> Result<(), String> {
    if !args.is_empty() {
        return Err(format!("usage: xtask bench-child {HUB}"));
    }
    process_runtime(async {
        let dir = Scratch::new("hub")?;
        let bind = SocketAddr::from((Ipv4Addr::new(127, 99, 0, 1), 0));
        let (dht, friends, mut events) = start_node(bind, dir.path().to_path_buf(), None).await?;
        let online = Arc::new(AtomicU64::new(0));
        let acceptor = {
            let (friends, online) = (friends.clone(), online.clone());
            tokio::spawn(async move {
                while let Some(event) = events.recv().await {
                    match event {
                        FriendEvent::Request(request) => {
                            let _ = friends.accept_friend(&request.from).await;
                        }
                        FriendEvent::Connected(_) => {
                            online.fetch_add(1, Ordering::Relaxed);
                        }
                        FriendEvent::Disconnected(_) => {
                            online.fetch_sub(1, Ordering::Relaxed);
                        }
                        _ => {}
                    }
                }
            })
        };
        println!(
            "hub {}@{} {}",
            dht.id(),
            dht.local_addr(),
            friends.address()
        );
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            match line.trim() {
                "rss" => println!("rss {}", super::memory::resident_kib()?),
                "announce" => {
                    let stored = friends.announce().await.map_err(|e| e.to_string())?;
                    println!("announce {stored}");
                }
                "links" => println!("links {}", online.load(Ordering::Relaxed)),
                "cpu" => println!("cpu {}", process_cpu_time().as_nanos()),
                "packets" => {
                    let datagrams: u64 = friends
                        .friends()
                        .iter()
                        .filter_map(|friend| friends.link(&friend.id))
                        .map(|link| {
                            let stats = link.connection().stats();
                            stats.udp_tx.datagrams + stats.udp_rx.datagrams
                        })
                        .sum();
                    println!("packets {datagrams}");
                }
                "quit" => break,
                other => println!("unknown {other}"),
            }
        }
        acceptor.abort();
        stop_node(dht, friends).await;
        Ok(0.0)
    })
    .map(|_| ())
}

/// `xtask bench-child friend-spokes N ID@IP:PORT ADDRESS`: N nodes joined through `ID@IP:PORT`;
/// prints `joined N`, then on `go` each asks the hub at `ADDRESS` to be its friend. Prints
/// `ready N links` once every spoke's link to the hub is up, then idles until `quit`.
pub(crate) fn spokes(args: &[String]) -> Result<(), String> {
    let [count, contact, address] = args else {
        return Err(format!(
            "usage: xtask bench-child {SPOKES} N ID@IP:PORT ADDRESS"
        ));
    };
    let count: usize = count
        .parse()
        .map_err(|e| format!("bad spoke count `{count}`: {e}"))?;
    let contact: BootstrapNode = contact
        .parse()
        .map_err(|e| format!("bad bootstrap contact `{contact}`: {e}"))?;
    let address = address.clone();
    process_runtime(async move {
        let root = Scratch::new("spokes")?;
        let (up_tx, mut up_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut nodes = Vec::with_capacity(count);
        for group in (0..count).collect::<Vec<_>>().chunks(GROUP) {
            let mut started = Vec::new();
            for &i in group {
                let dir = root.path().join(i.to_string());
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
                started.push(start_node(spoke_addr(i)?, dir, Some(contact.clone())));
            }
            for (dht, friends, mut events) in futures_join(started).await? {
                let (up, spoke) = (up_tx.clone(), nodes.len());
                let watcher = tokio::spawn(async move {
                    while let Some(event) = events.recv().await {
                        if let FriendEvent::Connected(_) = event {
                            let _ = up.send(spoke);
                        }
                    }
                });
                nodes.push((dht, friends, watcher));
            }
        }
        // Every spoke is in the DHT; the hub announces itself into it, then the requests go.
        println!("joined {count}");
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        match lines.next_line().await {
            Ok(Some(line)) if line.trim() == "go" => {}
            other => return Err(format!("expected `go`, got {other:?}")),
        }
        for (_, friends, _) in &nodes {
            friends
                .add_friend(&address, b"bench spoke")
                .await
                .map_err(|e| format!("a spoke's request failed: {e}"))?;
        }
        let patience = PATIENCE_PER_100 * (count.div_ceil(100) as u32);
        let mut up = HashSet::new();
        let deadline = tokio::time::Instant::now() + patience;
        while up.len() < count {
            match tokio::time::timeout_at(deadline, up_rx.recv()).await {
                Ok(Some(id)) => {
                    up.insert(id);
                }
                _ => {
                    return Err(format!(
                        "{} of {count} links up within {patience:?}",
                        up.len()
                    ))
                }
            }
        }
        println!("ready {count} links");
        while let Ok(Some(line)) = lines.next_line().await {
            if line.trim() == "quit" {
                break;
            }
        }
        for (dht, friends, watcher) in nodes {
            watcher.abort();
            stop_node(dht, friends).await;
        }
        Ok(0.0)
    })
    .map(|_| ())
}

/// Awaits every start, in order; the first failure fails them all.
async fn futures_join<F, T>(starts: Vec<F>) -> Result<Vec<T>, String>
where
    F: std::future::Future<Output = Result<T, String>> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = starts.into_iter().map(tokio::spawn).collect();
    let mut done = Vec::with_capacity(handles.len());
    for handle in handles {
        done.push(
            handle
                .await
                .map_err(|e| format!("a start panicked: {e}"))??,
        );
    }
    Ok(done)
}
