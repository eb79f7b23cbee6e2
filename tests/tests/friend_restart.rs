//! Friend requests across SIGKILLs: nodes run as child processes (`carrier-test-node`) over
//! 127.x.y.1 with a small DHT in the test process, killed and started again on their data
//! directories.
#![allow(clippy::unwrap_used)] // Helpers outside #[test] functions unwrap too.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use carrier::dht::{BootstrapNode, Dht, DhtConfig};
use carrier::friend::{FriendEvent, FriendEvents, Friends, FriendsConfig};
use carrier::id::CarrierId;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

const PATIENCE: Duration = Duration::from_secs(30);

/// A small DHT on 127.30.i.1 (each node its own /24).
async fn seeds() -> Vec<Dht> {
    let mut seeds: Vec<Dht> = Vec::new();
    for i in 0..5u8 {
        let mut config = DhtConfig {
            bind: SocketAddr::from(([127, 30, i + 1, 1], 0)),
            ..DhtConfig::default()
        };
        config.node.server = true;
        if let Some(first) = seeds.first() {
            config.bootstrap = vec![BootstrapNode::new(first.id(), first.local_addr())];
        }
        let dht = Dht::bind(config).await.unwrap();
        if !seeds.is_empty() {
            dht.bootstrap().await.unwrap();
        }
        seeds.push(dht);
    }
    seeds
}

fn contact(dht: &Dht) -> String {
    format!("{}@{}", dht.id(), dht.local_addr())
}

/// One `carrier-test-node` child process.
struct NodeProcess {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<String>,
    /// Every event line the node printed so far.
    events: Vec<String>,
    id: CarrierId,
    address: String,
}

impl NodeProcess {
    async fn start(dir: &Path, ip: [u8; 4], seed: &str, name: &str) -> NodeProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_carrier-test-node"))
            .arg("--data-dir")
            .arg(dir)
            .args(["--bind", &SocketAddr::from((ip, 0)).to_string()])
            .args(["--bootstrap", seed, "--name", name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let (sender, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stdout.next_line().await {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut node = NodeProcess {
            child,
            stdin,
            lines,
            events: Vec::new(),
            id: carrier::id::Keypair::from_seed(&[1; 32]).id(),
            address: String::new(),
        };
        let ready = node.reply().await;
        let words: Vec<&str> = ready.split(' ').collect();
        assert_eq!(words[0], "ready", "{ready}");
        node.id = words[1].parse().unwrap();
        node.address = words[2].to_string();
        node
    }

    /// The next line that is not an event (events are kept).
    async fn reply(&mut self) -> String {
        loop {
            let line = tokio::time::timeout(PATIENCE, self.lines.recv())
                .await
                .expect("the node said nothing in time")
                .expect("the node's output ended");
            assert!(!line.starts_with("fatal"), "{line}");
            if line.starts_with("event ") {
                self.events.push(line);
            } else {
                return line;
            }
        }
    }

    async fn cmd(&mut self, command: &str) -> String {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .unwrap();
        self.reply().await
    }

    /// Runs `command` every 100 ms until its reply satisfies `done`.
    async fn until(&mut self, command: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let reply = self.cmd(command).await;
            if done(&reply) {
                return reply;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "`{command}` still answers `{reply}`"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the node printed an event `event`.
    async fn event(&mut self, event: &str) {
        self.events_at_least(event, 1).await;
    }

    /// Waits until the node printed `n` events starting with `event`, asking it for them.
    async fn events_at_least(&mut self, event: &str, n: usize) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while self.count(event) < n {
            assert!(tokio::time::Instant::now() < deadline, "no `{event}`");
            // Events arrive unprompted; a cheap command collects them.
            let _ = self.cmd("address").await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Reads the node's output, without sending it anything, until it printed `n` events
    /// starting with `event`.
    async fn events_as_they_come(&mut self, event: &str, n: usize) {
        while self.count(event) < n {
            let line = tokio::time::timeout(PATIENCE, self.lines.recv())
                .await
                .expect("no event in time")
                .expect("the node's output ended");
            assert!(line.starts_with("event "), "{line}");
            self.events.push(line);
        }
    }

    fn count(&self, event: &str) -> usize {
        self.events.iter().filter(|e| e.starts_with(event)).count()
    }

    /// SIGKILL, no goodbye.
    async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }

    async fn quit(mut self) {
        assert_eq!(self.cmd("quit").await, "bye");
        assert!(self.child.wait().await.unwrap().success());
    }
}

fn ids(reply: &str) -> BTreeSet<String> {
    reply.split(' ').skip(1).map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_to_an_offline_node_arrives_once_though_the_requester_was_killed_twice() {
    let seeds = seeds().await;
    let seed = contact(&seeds[0]);
    let dir = tempfile::tempdir().unwrap();
    let (alice_dir, bob_dir) = (dir.path().join("alice"), dir.path().join("bob"));
    let (alice_ip, bob_ip) = ([127, 31, 1, 1], [127, 31, 2, 1]);

    // Bob exists, then goes offline.
    let bob = NodeProcess::start(&bob_dir, bob_ip, &seed, "bob").await;
    let (bob_id, bob_address) = (bob.id, bob.address.clone());
    bob.quit().await;

    // Alice rotates her nospam, blocks a stranger, asks Bob, and is killed as soon as the
    // request is stored.
    let mut alice = NodeProcess::start(&alice_dir, alice_ip, &seed, "alice").await;
    let alice_id = alice.id;
    let stranger = carrier::id::Keypair::from_seed(&[9; 32]).id();
    assert_eq!(alice.cmd("nospam 12345").await, "ok");
    assert_eq!(alice.cmd(&format!("block {stranger}")).await, "ok");
    assert_eq!(
        alice
            .cmd(&format!("add {bob_address} hello from alice"))
            .await,
        "ok"
    );
    alice.kill().await;

    // Restarted, Alice still has all of it, deposits the request in Bob's request mailbox,
    // and is killed again.
    let mut alice = NodeProcess::start(&alice_dir, alice_ip, &seed, "alice").await;
    assert_eq!(alice.id, alice_id);
    let address = carrier::id::Address::new(alice_id, carrier::id::Nospam(12345));
    assert_eq!(alice.address, address.to_string());
    assert_eq!(alice.cmd("blocked").await, format!("blocked {stranger}"));
    assert_eq!(alice.cmd("outgoing").await, format!("outgoing {bob_id}"));
    alice.until("outbox", |r| r == "outbox 1 1").await;
    alice.kill().await;

    // Bob starts while Alice is dead: the request is in his mailbox.
    let mut bob = NodeProcess::start(&bob_dir, bob_ip, &seed, "bob").await;
    bob.event(&format!("event request {alice_id}")).await;
    assert_eq!(bob.cmd("incoming").await, format!("incoming {alice_id}"));

    // Alice comes back and keeps trying until Bob acknowledges; Bob takes nothing twice.
    let mut alice = NodeProcess::start(&alice_dir, alice_ip, &seed, "alice").await;
    alice.until("outbox", |r| r == "outbox 0 0").await;
    assert_eq!(bob.cmd("check").await, "ok");
    assert_eq!(bob.count("event request"), 1, "{:?}", bob.events);
    let hello: String = b"hello from alice"
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(bob.events[0], format!("event request {alice_id} {hello}"));

    // Accepted: both are friends, and stay so across a SIGKILL of each.
    assert_eq!(bob.cmd(&format!("accept {alice_id}")).await, "ok");
    alice.event(&format!("event added {bob_id}")).await;
    assert_eq!(alice.cmd("friends").await, format!("friends {bob_id}"));
    bob.until("outbox", |r| r == "outbox 0 0").await;
    assert_eq!(
        alice.cmd(&format!("label {bob_id} Bob from work")).await,
        "ok"
    );
    bob.kill().await;
    alice.kill().await;
    let mut bob = NodeProcess::start(&bob_dir, bob_ip, &seed, "bob").await;
    let mut alice = NodeProcess::start(&alice_dir, alice_ip, &seed, "alice").await;
    assert_eq!(bob.cmd("friends").await, format!("friends {alice_id}"));
    assert_eq!(bob.cmd("incoming").await, "incoming");
    assert_eq!(alice.cmd("friends").await, format!("friends {bob_id}"));
    assert_eq!(alice.cmd("outgoing").await, "outgoing");
    assert_eq!(
        alice.cmd(&format!("labelof {bob_id}")).await,
        "label Bob from work"
    );
    alice.quit().await;
    bob.quit().await;
}

/// Requesters in the test process.
async fn requester(seed: &Dht, dir: PathBuf, i: u8) -> (Friends, FriendEvents) {
    let mut config = DhtConfig {
        bind: SocketAddr::from(([127, 32, i + 1, 1], 0)),
        data_dir: Some(dir),
        bootstrap: vec![BootstrapNode::new(seed.id(), seed.local_addr())],
        ..DhtConfig::default()
    };
    config.node.server = true;
    let dht = Dht::bind(config).await.unwrap();
    dht.bootstrap().await.unwrap();
    Friends::start(dht, FriendsConfig::for_tests())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_during_a_burst_of_requests_restarts_with_a_consistent_friend_list() {
    const REQUESTERS: u8 = 8;
    let seeds = seeds().await;
    let seed = contact(&seeds[0]);
    let dir = tempfile::tempdir().unwrap();
    let bob_dir = dir.path().join("bob");
    let bob_ip = [127, 31, 9, 1];
    let mut bob = NodeProcess::start(&bob_dir, bob_ip, &seed, "bob").await;
    let bob_address = bob.address.clone();
    assert_eq!(bob.cmd("autoaccept").await, "ok");

    let mut requesters = Vec::new();
    for i in 0..REQUESTERS {
        requesters.push(requester(&seeds[0], dir.path().join(format!("r{i}")), i).await);
    }
    let everyone: BTreeSet<String> = requesters
        .iter()
        .map(|(friends, _)| friends.id().to_string())
        .collect();
    // The requests come 40 ms apart, so the burst lasts a few hundred milliseconds.
    for (i, (friends, _)) in requesters.iter().enumerate() {
        let (friends, address) = (friends.clone(), bob_address.clone());
        let wait = Duration::from_millis(40 * i as u64);
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            friends.add_friend(&address, b"burst").await.unwrap()
        });
    }

    // Killed in the middle of taking and accepting them: at the third request it reports.
    bob.events_as_they_come("event request", 3).await;
    bob.kill().await;

    // Restarted: whatever it holds is consistent (nobody both friend and pending), and it
    // loses nobody: every requester ends up a friend, on both sides, each told once.
    let mut bob = NodeProcess::start(&bob_dir, bob_ip, &seed, "bob").await;
    let friends = ids(&bob.cmd("friends").await);
    let incoming = ids(&bob.cmd("incoming").await);
    assert!(friends.is_disjoint(&incoming), "{friends:?} {incoming:?}");
    assert!(friends.union(&incoming).all(|id| everyone.contains(id)));
    println!(
        "after the kill: {} friends, {} pending",
        friends.len(),
        incoming.len()
    );
    assert_eq!(bob.cmd("autoaccept").await, "ok");
    bob.until("friends", |r| ids(r) == everyone).await;
    assert_eq!(bob.cmd("incoming").await, "incoming");
    bob.until("outbox", |r| r == "outbox 0 0").await;
    for (friends, events) in &mut requesters {
        let added = loop {
            let event = tokio::time::timeout(PATIENCE, events.recv())
                .await
                .unwrap()
                .unwrap();
            if matches!(event, FriendEvent::Added(_)) {
                break event;
            }
        };
        assert_eq!(added, FriendEvent::Added(bob.id));
        assert!(friends.is_friend(&bob.id));
        assert!(friends.outgoing_requests().is_empty());
        while let Ok(event) = events.try_recv() {
            assert!(!matches!(event, FriendEvent::Added(_)), "told once");
        }
    }
    bob.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_friend_killed_is_seen_disconnected_within_30_s_and_connected_again_after_a_restart() {
    let seeds = seeds().await;
    let seed = contact(&seeds[0]);
    let dir = tempfile::tempdir().unwrap();
    let (alice_dir, bob_dir) = (dir.path().join("alice"), dir.path().join("bob"));
    let (alice_ip, bob_ip) = ([127, 31, 5, 1], [127, 31, 6, 1]);
    let mut alice = NodeProcess::start(&alice_dir, alice_ip, &seed, "alice").await;
    let mut bob = NodeProcess::start(&bob_dir, bob_ip, &seed, "bob").await;
    let (alice_id, bob_id) = (alice.id, bob.id);
    let bob_address = bob.address.clone();
    assert_eq!(alice.cmd(&format!("add {bob_address} hi")).await, "ok");
    bob.event(&format!("event request {alice_id}")).await;
    assert_eq!(bob.cmd(&format!("accept {alice_id}")).await, "ok");
    alice.event(&format!("event connected {bob_id}")).await;
    bob.event(&format!("event connected {alice_id}")).await;
    assert_eq!(alice.cmd("online").await, format!("online {bob_id}"));
    assert_eq!(alice.cmd("links").await, "links 1");
    // Bob is away when he is killed; Alice knows it.
    assert_eq!(bob.cmd("presence away").await, "ok");
    alice.event(&format!("event presence {bob_id} away")).await;

    // SIGKILL: no goodbye. Alice sees Bob gone within 30 s with the default settings: a link
    // that hears nothing for 20 s is closed, looked at every 2 s (22 s at most; asserted with
    // a margin of 8 s over that bound).
    let alice_dialled = alice.cmd(&format!("dialled {bob_id}")).await;
    let gone_after = kill_and_time(bob, &mut alice).await;
    eprintln!(
        "a killed friend was seen disconnected after {:?} (the survivor: {})",
        gone_after, alice_dialled
    );
    assert_eq!(alice.cmd("online").await, "online");
    assert_eq!(alice.cmd("links").await, "links 0");

    // Restarted, Bob connects again by himself, and is still away.
    let mut bob = NodeProcess::start(&bob_dir, bob_ip, &seed, "bob").await;
    bob.event(&format!("event connected {alice_id}")).await;
    alice
        .until("online", |r| r == format!("online {bob_id}"))
        .await;
    assert_eq!(alice.count(&format!("event connected {bob_id}")), 2);
    assert_eq!(
        alice.cmd(&format!("profile {bob_id}")).await,
        "profile away bob"
    );

    // Now the one that accepted the link is killed, so the one that sends the keep-alives
    // must see it gone: QUIC's idle timer alone could take 40 s on that side.
    let (mut dialler, accepter, accepter_dir, accepter_ip, accepter_name) =
        if alice.cmd(&format!("dialled {bob_id}")).await == "dialled yes" {
            (alice, bob, &bob_dir, bob_ip, "bob")
        } else {
            (bob, alice, &alice_dir, alice_ip, "alice")
        };
    let accepter_id = accepter.id;
    assert_eq!(
        dialler.cmd(&format!("dialled {accepter_id}")).await,
        "dialled yes"
    );
    let gone_after = kill_and_time(accepter, &mut dialler).await;
    eprintln!(
        "a killed friend was seen disconnected after {gone_after:?} by the side that dialled"
    );
    assert_eq!(dialler.cmd("links").await, "links 0");

    // Restarted, it connects again.
    let mut accepter = NodeProcess::start(accepter_dir, accepter_ip, &seed, accepter_name).await;
    accepter
        .event(&format!("event connected {}", dialler.id))
        .await;
    dialler
        .until("online", |r| r == format!("online {accepter_id}"))
        .await;
    dialler.quit().await;
    accepter.quit().await;
}

/// SIGKILLs `victim` and waits until `survivor` reports it disconnected, within 30 s; how long
/// that took.
async fn kill_and_time(victim: NodeProcess, survivor: &mut NodeProcess) -> Duration {
    let gone = format!("event disconnected {}", victim.id);
    let before = survivor.count(&gone);
    let killed = tokio::time::Instant::now();
    victim.kill().await;
    survivor.events_at_least(&gone, before + 1).await;
    let gone_after = killed.elapsed();
    assert!(gone_after < Duration::from_secs(30), "{gone_after:?}");
    gone_after
}
