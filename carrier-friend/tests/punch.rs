//! Hole punching on loopback (issue 20): two friends behind "NATs" (a conditioner that lets
//! a datagram in only from an address the node sent to, as a port-restricted cone does)
//! link through a relay; punching moves the same QUIC connection to the direct path in the
//! middle of a transfer, a direct path cut mid-transfer falls back to the relay (also when
//! only one direction is cut), and probes and answers replayed by a third host move nothing.
#![allow(clippy::unwrap_used)] // Helpers outside #[test] functions unwrap too.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path as FsPath;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use carrier_friend::dht::punch::{key::EXPORTER_LABEL, PunchKey, PunchTimings, Role};
use carrier_friend::dht::socket::{Conditioner, Fate};
use carrier_friend::dht::{BootstrapNode, Dht, DhtConfig, Path};
use carrier_friend::{
    Extension, ExtensionInbox, FriendEvent, Friends, FriendsConfig, Inbound, Link, Topology,
    UserInfo,
};
use common::net::{hold_steady, net, wait_for, Net, Node, PATIENCE};

/// A port-restricted cone in front of a node, with switches: the direct path to the peer
/// cut (both ways, every datagram), or only what the node sends on it.
#[derive(Default)]
struct Cone {
    sent_to: Mutex<HashSet<SocketAddr>>,
    /// Also let in (a host the test makes reachable).
    admit: Mutex<HashSet<SocketAddr>>,
    /// The peer's direct address, dropped both ways while set.
    cut: Mutex<Option<SocketAddr>>,
    /// The peer's direct address, dropped on the way out while set.
    cut_out: Mutex<Option<SocketAddr>>,
}

impl Conditioner for Cone {
    fn outgoing(&self, to: SocketAddr, _data: &[u8]) -> Fate {
        if *self.cut.lock().unwrap() == Some(to) || *self.cut_out.lock().unwrap() == Some(to) {
            return Fate::Drop;
        }
        self.sent_to.lock().unwrap().insert(to);
        Fate::Pass
    }

    fn incoming(&self, from: SocketAddr, _data: &[u8]) -> Fate {
        if *self.cut.lock().unwrap() == Some(from) {
            return Fate::Drop;
        }
        if self.sent_to.lock().unwrap().contains(&from)
            || self.admit.lock().unwrap().contains(&from)
        {
            Fate::Pass
        } else {
            Fate::Drop
        }
    }
}

/// A friend node behind `cone` on `ip`: a DHT client (so it registers with relays), with
/// short intervals and rounds retried within a second.
async fn client(seeds: &[Dht], dir: &FsPath, name: &str, ip: [u8; 4], cone: Arc<Cone>) -> Node {
    let dir = dir.join(name);
    let mut config = DhtConfig::new(SocketAddr::from((ip, 0)));
    config.data_dir = Some(dir.clone());
    config.query_timeout = Duration::from_secs(10);
    config.node.server = false;
    config.node.detect_reachability = false;
    config.node.max_per_subnet = None;
    config.bootstrap = seeds
        .iter()
        .map(|s| BootstrapNode::new(s.id(), s.local_addr()))
        .collect();
    let dht = Dht::bind(config).await.unwrap();
    dht.bootstrap().await.unwrap();
    dht.socket().set_conditioner(Some(cone));
    wait_for(|| {
        let dht = dht.clone();
        async move { (!dht.relay_hints().is_empty()).then_some(()) }
    })
    .await;
    // A link closes after 15 s of silence, not `for_tests`' 3 s: a direct path cut both ways
    // is silent for the 3 s before the punchers fall back to the relay, and one cut one way
    // for about 7 s (the side that hears nothing falls back first, the other once it hears
    // nothing directly either); under load the link machine closed the link first.
    let mut friends_config =
        FriendsConfig::for_tests().with_liveness(Duration::from_secs(1), Duration::from_secs(15));
    friends_config.punch = Some(PunchTimings {
        retry_initial: Duration::from_millis(300),
        retry_max: Duration::from_secs(1),
        ..PunchTimings::default()
    });
    let (friends, events) = Friends::start(dht, friends_config).await.unwrap();
    friends
        .set_user_info(UserInfo::new(name, "a test node").unwrap())
        .await
        .unwrap();
    let bind = friends.dht().local_addr();
    Node {
        friends,
        events,
        dir,
        bind,
    }
}

async fn befriend(a: &mut Node, b: &mut Node) {
    a.friends
        .add_friend(&b.friends.address().to_string(), b"hi")
        .await
        .unwrap();
    b.until(|e| matches!(e, FriendEvent::Request(_)).then_some(()))
        .await;
    b.friends.accept_friend(&a.id()).await.unwrap();
    let (a_id, b_id) = (a.id(), b.id());
    a.connected(b_id).await;
    b.connected(a_id).await;
}

fn topology(node: &Node, link: &Link) -> Topology {
    node.friends.link_path(link).unwrap().topology
}

const TEST_EXTENSION: u8 = 9;
const SIZE: usize = 24 << 20;

fn pattern(round: u8) -> Vec<u8> {
    (0..SIZE as u32)
        .map(|i| (i % 251) as u8 ^ (i >> 12) as u8 ^ round)
        .collect()
}

/// Sends `SIZE` bytes on `link` to the peer's `inbox`; once a quarter has arrived, the
/// reader awaits `at_quarter` before it reads on (the sender stalls on flow control
/// meanwhile). Returns whether every byte arrived as sent.
async fn transfer<F: std::future::Future<Output = ()>>(
    link: &Link,
    inbox: &mut ExtensionInbox,
    round: u8,
    at_quarter: impl FnOnce() -> F,
) -> bool {
    let data = pattern(round);
    let expected = data.clone();
    let sender = link.clone();
    let send = tokio::spawn(async move {
        let mut stream = sender
            .open_uni(Extension::new(TEST_EXTENSION).unwrap())
            .await
            .unwrap();
        stream.write_all(&data).await.unwrap();
        stream.finish().unwrap();
        let _ = stream.stopped().await;
    });
    let mut recv = match tokio::time::timeout(PATIENCE, inbox.recv()).await {
        Ok(Some(Inbound::Uni { recv, .. })) => recv,
        _ => panic!("no stream"),
    };
    let mut received = Vec::with_capacity(SIZE);
    let mut buf = vec![0u8; 64 * 1024];
    let mut at_quarter = Some(at_quarter);
    loop {
        let read = tokio::time::timeout(PATIENCE, recv.read(&mut buf))
            .await
            .expect("the transfer stalled")
            .unwrap();
        let Some(n) = read else { break };
        received.extend_from_slice(&buf[..n]);
        if received.len() >= SIZE / 4 {
            if let Some(f) = at_quarter.take() {
                f().await;
            }
        }
    }
    send.await.unwrap();
    received == expected
}

/// Alice and Bob, friends behind their cones, linked through a relay of a DHT on
/// 127.`a`.0.0/16; Bob takes `TEST_EXTENSION` streams in `inbox`. Their cones cut the direct
/// path both ways.
struct Pair {
    _net: Net,
    alice: Node,
    bob: Node,
    alice_cone: Arc<Cone>,
    bob_cone: Arc<Cone>,
    inbox: ExtensionInbox,
    /// Alice's link to Bob.
    link: Link,
    /// Bob's link to Alice.
    at_bob: Link,
}

async fn linked_through_relay(a: u8) -> Pair {
    let net = net(a, 90).await;
    let (alice_cone, bob_cone) = (Arc::new(Cone::default()), Arc::new(Cone::default()));
    let dir = net.dir.path().to_path_buf();
    let mut alice = client(
        &net.seeds,
        &dir,
        "alice",
        [127, a, 100, 1],
        alice_cone.clone(),
    )
    .await;
    let mut bob = client(&net.seeds, &dir, "bob", [127, a, 101, 1], bob_cone.clone()).await;
    // Until the test lifts the cut, nothing goes directly between them (a friend request
    // that tried Bob's address first would open Alice's cone for him, as on a real NAT).
    *alice_cone.cut.lock().unwrap() = Some(bob.bind);
    *bob_cone.cut.lock().unwrap() = Some(alice.bind);
    let inbox = bob
        .friends
        .register(Extension::new(TEST_EXTENSION).unwrap())
        .unwrap();
    befriend(&mut alice, &mut bob).await;
    hold_steady(&alice, &bob).await;

    // Linked through a relay: their NATs drop each other's direct packets.
    let link = alice.friends.link(&bob.id()).unwrap();
    let at_bob = bob.friends.link(&alice.id()).unwrap();
    assert_eq!(topology(&alice, &link), Topology::Relayed);
    assert_eq!(topology(&bob, &at_bob), Topology::Relayed);
    Pair {
        _net: net,
        alice,
        bob,
        alice_cone,
        bob_cone,
        inbox,
        link,
        at_bob,
    }
}

/// Waits for `node`'s report that its link to `peer` runs with `topology`.
async fn path_changed(node: &mut Node, peer: carrier_friend::dht::id::CarrierId, to: Topology) {
    node.until(|e| match e {
        FriendEvent::PathChanged(p, path) if *p == peer && path.topology == to => Some(()),
        FriendEvent::Disconnected(p) if *p == peer => panic!("the link went down"),
        _ => None,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_link_goes_direct_mid_transfer_falls_back_when_cut_and_ignores_replays() {
    let Pair {
        _net,
        mut alice,
        mut bob,
        alice_cone,
        bob_cone,
        mut inbox,
        link,
        at_bob,
    } = linked_through_relay(24).await;
    let (alice_id, bob_id) = (alice.id(), bob.id());
    let (alice_addr, bob_addr) = (alice.bind, bob.bind);
    let connection = link.connection().stable_id();

    // A third host replays what it could have captured: a probe and an answer of this
    // link (made with the link's key), and a forged answer. Bob's NAT lets it in.
    let spoofer = tokio::net::UdpSocket::bind("127.24.102.1:0").await.unwrap();
    bob_cone
        .admit
        .lock()
        .unwrap()
        .insert(spoofer.local_addr().unwrap());
    let mut exported = [0u8; 32];
    link.connection()
        .export_keying_material(&mut exported, EXPORTER_LABEL, b"")
        .unwrap();
    let key = PunchKey::from_exported(exported);
    let alice_role = if link.connection().side().is_client() {
        Role::Dialler
    } else {
        Role::Accepter
    };
    let replays = [
        key.probe(alice_role, 1).encode(),
        key.answer(alice_role, 1, bob.bind).encode(),
        key.answer(alice_role, 2, spoofer.local_addr().unwrap())
            .encode(),
        PunchKey::from_exported([1; 32])
            .answer(alice_role, 3, bob.bind)
            .encode(),
    ];
    for _ in 0..5 {
        for replay in &replays {
            spoofer.send_to(replay, bob.bind).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        topology(&bob, &at_bob),
        Topology::Relayed,
        "replays moved the link"
    );
    assert!(
        bob.friends.dht().socket().stats().punch_received >= 20,
        "the replays reached Bob's puncher"
    );

    // A transfer starts relayed; a quarter in, the direct path opens (the NATs still filter):
    // punching takes the link there on the same connection, and every byte arrives.
    let (a, b) = (alice_cone.clone(), bob_cone.clone());
    let (friends, watched) = (alice.friends.clone(), link.clone());
    let intact = transfer(&link, &mut inbox, 1, move || async move {
        *a.cut.lock().unwrap() = None;
        *b.cut.lock().unwrap() = None;
        wait_for(|| {
            let path = friends.link_path(&watched);
            async move { path.filter(|p| p.topology == Topology::Lan) }
        })
        .await;
    })
    .await;
    assert!(intact, "bytes differ after the move to the direct path");
    path_changed(&mut alice, bob_id, Topology::Lan).await;
    path_changed(&mut bob, alice_id, Topology::Lan).await;
    let link_now = alice.friends.link(&bob_id).unwrap();
    assert_eq!(
        link_now.connection().stable_id(),
        connection,
        "the same connection"
    );
    assert_eq!(
        alice.friends.link_path(&link_now).unwrap().path,
        Path::Direct(bob.bind)
    );
    assert_eq!(topology(&bob, &at_bob), Topology::Lan);

    // The direct path is cut a quarter into the next transfer: back to the relay within
    // seconds, on the same connection, and every byte arrives.
    let (a, b) = (alice_cone.clone(), bob_cone.clone());
    let intact = transfer(&link, &mut inbox, 2, move || async move {
        *a.cut.lock().unwrap() = Some(bob_addr);
        *b.cut.lock().unwrap() = Some(alice_addr);
    })
    .await;
    assert!(intact, "bytes differ after the fallback to the relay");
    path_changed(&mut alice, bob_id, Topology::Relayed).await;
    path_changed(&mut bob, alice_id, Topology::Relayed).await;
    assert_eq!(
        alice
            .friends
            .link(&bob_id)
            .unwrap()
            .connection()
            .stable_id(),
        connection
    );
    assert!(link.connection().close_reason().is_none());
    assert_eq!(alice.friends.link_count(), 1);
    assert_eq!(bob.friends.link_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_path_cut_one_way_falls_back_at_both_ends_and_the_transfer_completes() {
    let Pair {
        _net,
        mut alice,
        mut bob,
        alice_cone,
        bob_cone,
        mut inbox,
        link,
        at_bob,
    } = linked_through_relay(25).await;
    let (alice_id, bob_id) = (alice.id(), bob.id());
    let connection = link.connection().stable_id();

    // The NATs let each other's packets through: the link goes direct at both ends.
    *alice_cone.cut.lock().unwrap() = None;
    *bob_cone.cut.lock().unwrap() = None;
    path_changed(&mut alice, bob_id, Topology::Lan).await;
    path_changed(&mut bob, alice_id, Topology::Lan).await;

    // A quarter into a transfer from Alice, what she sends on the direct path is lost while
    // what Bob sends on it still arrives. Bob, hearing nothing, falls back to the relay;
    // Alice then hears him only through the relay, and follows. Had she counted those
    // datagrams as the direct path's, she would have sent into the cut until the link fell
    // silent at Bob's end (decision 127).
    let (a, bob_addr) = (alice_cone.clone(), bob.bind);
    let intact = transfer(&link, &mut inbox, 3, move || async move {
        *a.cut_out.lock().unwrap() = Some(bob_addr);
    })
    .await;
    assert!(intact, "bytes differ after the fallback to the relay");
    path_changed(&mut bob, alice_id, Topology::Relayed).await;
    path_changed(&mut alice, bob_id, Topology::Relayed).await;
    assert_eq!(topology(&alice, &link), Topology::Relayed);
    assert_eq!(topology(&bob, &at_bob), Topology::Relayed);
    assert_eq!(
        alice
            .friends
            .link(&bob_id)
            .unwrap()
            .connection()
            .stable_id(),
        connection,
        "the same connection"
    );
    assert!(link.connection().close_reason().is_none());
    assert_eq!(alice.friends.link_count(), 1);
    assert_eq!(bob.friends.link_count(), 1);
}
