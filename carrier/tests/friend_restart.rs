//! Friend requests across SIGKILLs: nodes are `carrier daemon` child processes over 127.x.y.1
//! with a small DHT in the test process, driven through their control sockets, killed and
//! started again on their data directories.
#![allow(clippy::unwrap_used)] // Helpers outside #[test] functions unwrap too.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use carrier::dht::{BootstrapNode, Dht, DhtConfig};
use carrier::friend::{FriendEvent, FriendEvents, Friends, FriendsConfig};
use serde_json::{json, Value};
use support::{contact, ids, seeds, Control, Daemon, PATIENCE};

/// A daemon and a watching control connection to it.
struct Node {
    daemon: Daemon,
    control: Control,
    id: String,
    address: String,
}

impl Node {
    async fn start(dir: &Path, ip: [u8; 4], seed: &str, name: &str) -> Node {
        let daemon = Daemon::start(dir, ip, seed).await;
        let mut control = daemon.control().await;
        control.ok("info", json!({ "name": name })).await;
        Node {
            id: daemon.id.clone(),
            address: daemon.address.clone(),
            daemon,
            control,
        }
    }

    async fn ok(&mut self, request: &str, args: Value) -> Value {
        self.control.ok(request, args).await
    }

    async fn friends(&mut self) -> BTreeSet<String> {
        ids(&self.ok("friend_list", json!({})).await["friends"])
    }

    async fn requests(&mut self, which: &str) -> BTreeSet<String> {
        ids(&self.ok("friend_requests", json!({})).await[which])
    }

    async fn outbox_is(&mut self, items: u64, deposited: u64) {
        self.control
            .until("outbox", json!({}), |r| {
                r["items"] == items && r["deposited"] == deposited
            })
            .await;
    }

    async fn online(&mut self) -> BTreeSet<String> {
        ids(&self.ok("links", json!({})).await["online"])
    }

    async fn dialled(&mut self, friend: &str) -> bool {
        ids(&self.ok("links", json!({})).await["dialled"]).contains(friend)
    }

    async fn kill(self) {
        self.daemon.kill().await;
    }

    async fn quit(self) {
        self.daemon.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_to_an_offline_node_arrives_once_though_the_requester_was_killed_twice() {
    let seeds = seeds(30).await;
    let seed = contact(&seeds[0]);
    let dir = tempfile::tempdir().unwrap();
    let (alice_dir, bob_dir) = (dir.path().join("alice"), dir.path().join("bob"));
    let (alice_ip, bob_ip) = ([127, 31, 1, 1], [127, 31, 2, 1]);

    // Bob exists, then goes offline.
    let bob = Node::start(&bob_dir, bob_ip, &seed, "bob").await;
    let (bob_id, bob_address) = (bob.id.clone(), bob.address.clone());
    bob.quit().await;

    // Alice blocks a stranger, asks Bob, and is killed as soon as the request is stored.
    let mut alice = Node::start(&alice_dir, alice_ip, &seed, "alice").await;
    let alice_id = alice.id.clone();
    let stranger = carrier::id::Keypair::from_seed(&[9; 32]).id().to_string();
    let nospam = alice.ok("nospam", json!({ "rotate": true })).await;
    alice
        .ok("friend_block", json!({ "friend": stranger }))
        .await;
    alice
        .ok(
            "friend_add",
            json!({ "address": bob_address, "hello": "hello from alice" }),
        )
        .await;
    alice.kill().await;

    // Restarted, Alice still has all of it, deposits the request in Bob's request mailbox,
    // and is killed again.
    let mut alice = Node::start(&alice_dir, alice_ip, &seed, "alice").await;
    assert_eq!(alice.id, alice_id);
    assert_eq!(json!(alice.address), nospam["address"]);
    assert_eq!(alice.requests("blocked").await, BTreeSet::from([stranger]));
    assert_eq!(
        alice.requests("outgoing").await,
        BTreeSet::from([bob_id.clone()])
    );
    alice.outbox_is(1, 1).await;
    alice.kill().await;

    // Bob starts while Alice is dead: the request is in his mailbox.
    let mut bob = Node::start(&bob_dir, bob_ip, &seed, "bob").await;
    bob.control.event("request", &alice_id).await;
    assert_eq!(
        bob.requests("incoming").await,
        BTreeSet::from([alice_id.clone()])
    );

    // Alice comes back and keeps trying until Bob acknowledges; Bob takes nothing twice.
    let mut alice = Node::start(&alice_dir, alice_ip, &seed, "alice").await;
    alice.outbox_is(0, 0).await;
    bob.ok("check_mailboxes", json!({})).await;
    assert_eq!(
        bob.control.count("request", &alice_id),
        1,
        "{:?}",
        bob.control.events
    );
    let request = bob
        .control
        .events
        .iter()
        .find(|e| e["event"] == "request")
        .unwrap();
    assert_eq!(request["hello"], "hello from alice");

    // Accepted: both are friends, and stay so across a SIGKILL of each.
    bob.ok("friend_accept", json!({ "friend": alice_id })).await;
    alice.control.event("added", &bob_id).await;
    assert_eq!(alice.friends().await, BTreeSet::from([bob_id.clone()]));
    bob.outbox_is(0, 0).await;
    alice
        .ok(
            "friend_label",
            json!({ "friend": bob_id, "label": "Bob from work" }),
        )
        .await;
    bob.kill().await;
    alice.kill().await;
    let mut bob = Node::start(&bob_dir, bob_ip, &seed, "bob").await;
    let mut alice = Node::start(&alice_dir, alice_ip, &seed, "alice").await;
    assert_eq!(bob.friends().await, BTreeSet::from([alice_id.clone()]));
    assert!(bob.requests("incoming").await.is_empty());
    assert_eq!(alice.friends().await, BTreeSet::from([bob_id.clone()]));
    assert!(alice.requests("outgoing").await.is_empty());
    let list = alice.ok("friend_list", json!({})).await;
    assert_eq!(list["friends"][0]["label"], "Bob from work");
    alice.quit().await;
    bob.quit().await;
}

/// Requesters in the test process.
async fn requester(seed: &Dht, dir: PathBuf, i: u8) -> (Friends, FriendEvents) {
    let mut config = DhtConfig::new(SocketAddr::from(([127, 32, i + 1, 1], 0)))
        .with_data_dir(dir)
        .with_bootstrap([BootstrapNode::new(seed.id(), seed.local_addr())]);
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
    let seeds = seeds(30).await;
    let seed = contact(&seeds[0]);
    let dir = tempfile::tempdir().unwrap();
    let bob_dir = dir.path().join("bob");
    let bob_ip = [127, 31, 9, 1];
    let mut bob = Node::start(&bob_dir, bob_ip, &seed, "bob").await;
    let bob_address = bob.address.clone();
    let bob_id: carrier::id::CarrierId = bob.id.parse().unwrap();
    bob.ok("auto_accept", json!({})).await;

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
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while bob
        .control
        .events
        .iter()
        .filter(|e| e["event"] == "request")
        .count()
        < 3
    {
        let event = tokio::time::timeout_at(deadline, bob.control.next())
            .await
            .expect("three requests in time")
            .expect("the daemon's connection ended");
        assert!(event.get("event").is_some(), "{event}");
        bob.control.events.push(event);
    }
    bob.kill().await;

    // Restarted: whatever it holds is consistent (nobody both friend and pending), and it
    // loses nobody: every requester ends up a friend, on both sides, each told once.
    let mut bob = Node::start(&bob_dir, bob_ip, &seed, "bob").await;
    let friends = bob.friends().await;
    let incoming = bob.requests("incoming").await;
    assert!(friends.is_disjoint(&incoming), "{friends:?} {incoming:?}");
    assert!(friends.union(&incoming).all(|id| everyone.contains(id)));
    println!(
        "after the kill: {} friends, {} pending",
        friends.len(),
        incoming.len()
    );
    bob.ok("auto_accept", json!({})).await;
    bob.control
        .until("friend_list", json!({}), |r| ids(&r["friends"]) == everyone)
        .await;
    assert!(bob.requests("incoming").await.is_empty());
    bob.outbox_is(0, 0).await;
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
        assert_eq!(added, FriendEvent::Added(bob_id));
        assert!(friends.is_friend(&bob_id));
        assert!(friends.outgoing_requests().is_empty());
        while let Ok(event) = events.try_recv() {
            assert!(!matches!(event, FriendEvent::Added(_)), "told once");
        }
    }
    bob.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_friend_killed_is_seen_disconnected_within_30_s_and_connected_again_after_a_restart() {
    let seeds = seeds(30).await;
    let seed = contact(&seeds[0]);
    let dir = tempfile::tempdir().unwrap();
    let (alice_dir, bob_dir) = (dir.path().join("alice"), dir.path().join("bob"));
    let (alice_ip, bob_ip) = ([127, 31, 5, 1], [127, 31, 6, 1]);
    let mut alice = Node::start(&alice_dir, alice_ip, &seed, "alice").await;
    let mut bob = Node::start(&bob_dir, bob_ip, &seed, "bob").await;
    let (alice_id, bob_id) = (alice.id.clone(), bob.id.clone());
    let bob_address = bob.address.clone();
    alice
        .ok(
            "friend_add",
            json!({ "address": bob_address, "hello": "hi" }),
        )
        .await;
    bob.control.event("request", &alice_id).await;
    bob.ok("friend_accept", json!({ "friend": alice_id })).await;
    alice.control.event("connected", &bob_id).await;
    bob.control.event("connected", &alice_id).await;
    assert_eq!(alice.online().await, BTreeSet::from([bob_id.clone()]));
    assert_eq!(alice.ok("links", json!({})).await["count"], 1);
    // Bob is away when he is killed; Alice knows it.
    bob.ok("presence", json!({ "set": "away" })).await;
    alice.control.event("presence", &bob_id).await;

    // SIGKILL: no goodbye. Alice sees Bob gone within 30 s with the default settings: a link
    // that hears nothing for 20 s is closed, looked at every 2 s (22 s at most; asserted with
    // a margin of 8 s over that bound).
    let alice_dialled = alice.dialled(&bob_id).await;
    let gone_after = kill_and_time(bob, &mut alice).await;
    eprintln!(
        "a killed friend was seen disconnected after {gone_after:?} (the survivor dialled: \
         {alice_dialled})"
    );
    assert!(alice.online().await.is_empty());
    assert_eq!(alice.ok("links", json!({})).await["count"], 0);

    // Restarted, Bob connects again by himself, and is still away.
    let mut bob = Node::start(&bob_dir, bob_ip, &seed, "bob").await;
    bob.control.event("connected", &alice_id).await;
    alice
        .control
        .until("links", json!({}), |r| ids(&r["online"]).contains(&bob_id))
        .await;
    alice.control.events_at_least("connected", &bob_id, 2).await;
    let list = alice.ok("friend_list", json!({})).await;
    assert_eq!(list["friends"][0]["presence"], "away");
    assert_eq!(list["friends"][0]["info"]["name"], "bob");

    // Now the one that accepted the link is killed, so the one that sends the keep-alives
    // must see it gone: QUIC's idle timer alone could take 40 s on that side.
    let (mut dialler, accepter, accepter_dir, accepter_ip, accepter_name) =
        if alice.dialled(&bob_id).await {
            (alice, bob, &bob_dir, bob_ip, "bob")
        } else {
            (bob, alice, &alice_dir, alice_ip, "alice")
        };
    let accepter_id = accepter.id.clone();
    assert!(dialler.dialled(&accepter_id).await);
    let gone_after = kill_and_time(accepter, &mut dialler).await;
    eprintln!(
        "a killed friend was seen disconnected after {gone_after:?} by the side that dialled"
    );
    assert_eq!(dialler.ok("links", json!({})).await["count"], 0);

    // Restarted, it connects again.
    let mut accepter = Node::start(accepter_dir, accepter_ip, &seed, accepter_name).await;
    accepter.control.event("connected", &dialler.id).await;
    dialler
        .control
        .until("links", json!({}), |r| {
            ids(&r["online"]).contains(&accepter_id)
        })
        .await;
    dialler.quit().await;
    accepter.quit().await;
}

/// SIGKILLs `victim` and waits until `survivor` reports it disconnected, within 30 s; how long
/// that took.
async fn kill_and_time(victim: Node, survivor: &mut Node) -> Duration {
    let id = victim.id.clone();
    let before = survivor.control.count("disconnected", &id);
    let killed = tokio::time::Instant::now();
    victim.kill().await;
    survivor
        .control
        .events_at_least("disconnected", &id, before + 1)
        .await;
    let gone_after = killed.elapsed();
    assert!(gone_after < Duration::from_secs(30), "{gone_after:?}");
    gone_after
}
