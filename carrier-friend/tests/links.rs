//! One live link per online friend, over 127.x.y.1 with a small DHT: friends connect after
//! both start, both dialling at once leaves one link, a friend that falls silent is seen gone
//! on both sides within the silence limit (3 s here) and connects again, presence and user info reach friends online
//! and after a reconnect, labels stay local, a stranger is refused at the handshake, each
//! upper layer receives only its own streams, and a node dials its friends a few at a time.
#![allow(clippy::unwrap_used)] // Helpers outside #[test] functions unwrap too.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use carrier_friend::dht::id::{CarrierId, Keypair};
use carrier_friend::dht::socket::{Conditioner, Fate, NodeSocket, QUIC_CLASS_BIT};
use carrier_friend::dht::Path;
use carrier_friend::extension::codes;
use carrier_friend::quinn::ConnectionError;
use carrier_friend::FriendsConfig;
use carrier_friend::{
    close, AllowList, Extension, FriendEvent, Inbound, InfoError, LinkConfig, LinkEndpoint,
    Presence, UserInfo,
};
use common::net::{hold_steady, net, wait_for, Node, PATIENCE};

/// `a` asks `b`, `b` accepts; both see the other connected.
async fn befriend(a: &mut Node, b: &mut Node) {
    a.friends
        .add_friend(&b.friends.address().to_string(), b"hi")
        .await
        .unwrap();
    let from = b
        .until(|e| match e {
            FriendEvent::Request(r) => Some(r.from),
            _ => None,
        })
        .await;
    assert_eq!(from, a.id());
    b.friends.accept_friend(&a.id()).await.unwrap();
    a.until(|e| (*e == FriendEvent::Added(b.id())).then_some(()))
        .await;
    let (a_id, b_id) = (a.id(), b.id());
    a.connected(b_id).await;
    b.connected(a_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_friends_connect_after_both_start_and_either_dialling_leaves_one_link() {
    let net = net(24, 1).await;
    let mut alice = net.node([127, 25, 1, 1], "alice").await;
    let mut bob = net.node([127, 25, 2, 1], "bob").await;
    befriend(&mut alice, &mut bob).await;
    assert_eq!(alice.friends.link_count(), 1);
    assert_eq!(bob.friends.online(), vec![alice.id()]);

    // Both stop; both start again: they find each other's records and connect.
    let (alice_id, bob_id) = (alice.id(), bob.id());
    let (alice_dir, alice_bind) = alice.stop().await;
    let (bob_dir, bob_bind) = bob.stop().await;
    let mut alice = net.start(alice_dir, alice_bind).await;
    let mut bob = net.start(bob_dir, bob_bind).await;
    alice.connected(bob_id).await;
    bob.connected(alice_id).await;

    // Both dial at once, twice: each time exactly one of the two new links survives, the
    // same on both sides, and neither side ever reports the other gone. The link held so far
    // must be older than the race window by then, so the new ones replace it rather than race
    // it (and both lose to it).
    for _ in 0..2 {
        hold_steady(&alice, &bob).await;
        let (at_alice, at_bob) = tokio::join!(
            alice.friends.dial_friend(&bob_id),
            bob.friends.dial_friend(&alice_id)
        );
        let (at_alice, at_bob) = (at_alice.unwrap(), at_bob.unwrap());
        // Past the grace a duplicate's peer waits before it counts as gone.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let alice_holds = alice.friends.link(&bob_id).unwrap();
        let bob_holds = bob.friends.link(&alice_id).unwrap();
        assert!(alice_holds.connection().close_reason().is_none());
        assert!(bob_holds.connection().close_reason().is_none());
        let closed = [&at_alice, &at_bob]
            .iter()
            .filter(|l| l.connection().close_reason().is_some())
            .count();
        assert_eq!(closed, 1, "exactly one of the two dials lost");
        let survivor = if at_alice.connection().close_reason().is_none() {
            &at_alice
        } else {
            &at_bob
        };
        assert!(survivor.connection().close_reason().is_none());
        // The loser was closed as a duplicate (seen as such by the side that did not close
        // it), never as anything else.
        for link in [&at_alice, &at_bob] {
            match link.connection().close_reason() {
                None | Some(ConnectionError::LocallyClosed) => {}
                Some(ConnectionError::ApplicationClosed(c)) => {
                    assert_eq!(c.error_code, close::DUPLICATE)
                }
                Some(other) => panic!("{other:?}"),
            }
        }
        assert_eq!(alice.friends.link_count(), 1);
        assert_eq!(bob.friends.link_count(), 1);
        // A stream on the held links goes through both ways.
        let mut inbox = bob.friends.register(Extension::MSG).unwrap();
        let mut send = alice_holds.open_uni(Extension::MSG).await.unwrap();
        send.write_all(b"still here").await.unwrap();
        send.finish().unwrap();
        let Inbound::Uni { mut recv, peer } = inbox.recv().await.unwrap() else {
            panic!("not a uni stream");
        };
        assert_eq!(peer, alice_id);
        assert_eq!(recv.read_to_end(64).await.unwrap(), b"still here");
        drop(inbox);
    }
    while let Ok(event) = alice.events.try_recv() {
        assert_ne!(event, FriendEvent::Disconnected(bob_id));
    }
    while let Ok(event) = bob.events.try_recv() {
        assert_ne!(event, FriendEvent::Disconnected(alice_id));
    }

    // A clean stop is seen at once; the restarted friend connects again.
    let (bob_dir, bob_bind) = bob.stop().await;
    alice
        .until(|e| (*e == FriendEvent::Disconnected(bob_id)).then_some(()))
        .await;
    assert!(alice.friends.link(&bob_id).is_none());
    assert!(!alice.friends.is_online(&bob_id));
    let mut bob = net.start(bob_dir, bob_bind).await;
    alice.connected(bob_id).await;
    bob.connected(alice_id).await;
    alice.stop().await;
    bob.stop().await;
}

/// `f`'s output, or a failure if it takes longer than [`PATIENCE`].
async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, f)
        .await
        .expect("nothing within the patience")
}

/// Loses every QUIC datagram to or from `peer` while `cut` is set; the DHT's pass, so the
/// friends can still look each other up, but no link packet crosses.
struct QuicCut {
    peer: SocketAddr,
    cut: AtomicBool,
}

impl QuicCut {
    fn fate(&self, addr: SocketAddr, data: &[u8]) -> Fate {
        let quic = data.first().is_some_and(|b| b & QUIC_CLASS_BIT != 0);
        if quic && addr == self.peer && self.cut.load(Ordering::SeqCst) {
            Fate::Drop
        } else {
            Fate::Pass
        }
    }
}

impl Conditioner for QuicCut {
    fn outgoing(&self, to: SocketAddr, data: &[u8]) -> Fate {
        self.fate(to, data)
    }

    fn incoming(&self, from: SocketAddr, data: &[u8]) -> Fate {
        self.fate(from, data)
    }
}

/// The lower of two friends starts first and dials the other, who does not listen yet: its
/// first packets are lost. The other starts and dials it; that link comes up on both sides,
/// and the first dial, still in its handshake, gives way to it. Without that, quinn sent the
/// first dial's packets again a second later, its link came up beside the one both were
/// using, and being dialled by the lower ID it won the race and closed that one on both
/// sides (and every stream on it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dial_whose_first_packets_were_lost_gives_way_to_the_link_the_peer_dialled() {
    let net = net(24, 41).await;
    let mut a = net.node([127, 25, 41, 1], "a").await;
    let mut b = net.node([127, 25, 42, 1], "b").await;
    befriend(&mut a, &mut b).await;
    let (lower, higher) = if a.id().to_bytes() < b.id().to_bytes() {
        (a, b)
    } else {
        (b, a)
    };
    let (lower_id, higher_id) = (lower.id(), higher.id());
    let (lower_dir, lower_bind) = lower.stop().await;
    let (higher_dir, higher_bind) = higher.stop().await;

    // The lower starts and dials the higher at its last address, where nothing listens.
    let mut lower = net.start(lower_dir, lower_bind).await;
    wait_for(|| async { (lower.friends.dials_in_flight() > 0).then_some(()) }).await;
    // Its lookup finds the higher's record, and its first packets go out and are lost.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut higher = net.start(higher_dir, higher_bind).await;
    higher.connected(lower_id).await;
    lower.connected(higher_id).await;
    let held = |node: &Node, peer: &CarrierId| node.friends.link(peer).unwrap();
    let (at_lower, at_higher) = (held(&lower, &higher_id), held(&higher, &lower_id));
    // Past quinn's first retransmission of the lost packets (a second) and then some: the
    // same link is held on both sides all along, and open.
    for _ in 0..25 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        for (node, peer, first) in [
            (&lower, higher_id, &at_lower),
            (&higher, lower_id, &at_higher),
        ] {
            let now = held(node, &peer);
            assert_eq!(
                now.connection().stable_id(),
                first.connection().stable_id(),
                "the link held changed: the first closed with {:?}",
                first.connection().close_reason()
            );
        }
    }
    for (node, peer) in [(&lower, higher_id), (&higher, lower_id)] {
        assert!(held(node, &peer).connection().close_reason().is_none());
        assert_eq!(node.friends.link_count(), 1);
    }
}

/// The keep-alive interval of the silence test.
const KEEPALIVE: Duration = Duration::from_secs(1);
/// The silence limit of the silence test.
const SILENCE_LIMIT: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_friend_silent_right_after_a_keep_alive_is_seen_gone_on_both_sides_within_the_limit() {
    let net = net(24, 31).await;
    // Short liveness settings: a keep-alive every second, a link silent for 3 s is gone (the
    // defaults, 15 s and 20 s, behave alike at their own scale; see the machine's tests).
    let config = FriendsConfig::for_tests().with_liveness(KEEPALIVE, SILENCE_LIMIT);
    let at = |ip: [u8; 4], name: &str| (net.dir.path().join(name), SocketAddr::from((ip, 0)));
    let (dir, bind) = at([127, 25, 31, 1], "alice");
    let mut alice = net.start_with(dir, bind, config.clone()).await;
    let (dir, bind) = at([127, 25, 32, 1], "bob");
    let mut bob = net.start_with(dir, bind, config).await;
    befriend(&mut alice, &mut bob).await;
    let (alice_id, bob_id) = (alice.id(), bob.id());
    let cuts = [(&alice, &bob), (&bob, &alice)].map(|(node, peer)| {
        let cut = Arc::new(QuicCut {
            peer: peer.friends.dht().local_addr(),
            cut: AtomicBool::new(false),
        });
        node.friends
            .dht()
            .socket()
            .set_conditioner(Some(cut.clone()));
        cut
    });
    hold_steady(&alice, &bob).await;

    // The dialling side sends the keep-alives. The worst moment for it to lose its friend is
    // right after one was answered: QUIC alone would then see the friend gone only after the
    // next keep-alive interval and the idle timeout after that.
    let at_alice = alice.friends.link(&bob_id).unwrap();
    let at_bob = bob.friends.link(&alice_id).unwrap();
    let dialled = if at_alice.connection().side().is_client() {
        &at_alice
    } else {
        &at_bob
    };
    assert!(dialled.connection().side().is_client());
    // Wait until the link has been quiet for most of a keep-alive interval (only a keep-alive
    // ends that now), then cut the moment the dialler hears the answer.
    let heard = || dialled.connection().stats().udp_rx.datagrams;
    let deadline = tokio::time::Instant::now() + PATIENCE * 2;
    let (mut count, mut since) = (heard(), tokio::time::Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let now = tokio::time::Instant::now();
        assert!(now < deadline, "the link never fell quiet");
        if heard() != count {
            if now - since >= KEEPALIVE * 4 / 5 {
                break;
            }
            (count, since) = (heard(), now);
        }
    }
    for cut in &cuts {
        cut.cut.store(true, Ordering::SeqCst);
    }
    let cut_at = tokio::time::Instant::now();

    // Both report the other gone within the silence limit and a second; the dialler's link
    // was closed by the friend layer's silence check (QUIC's idle timer would have said
    // TimedOut, later).
    let gone = cut_at + SILENCE_LIMIT + Duration::from_secs(1);
    let disconnected =
        |peer| move |e: &FriendEvent| (*e == FriendEvent::Disconnected(peer)).then_some(());
    tokio::time::timeout_at(gone, alice.until(disconnected(bob_id)))
        .await
        .expect("Alice did not see Bob gone in time");
    tokio::time::timeout_at(gone, bob.until(disconnected(alice_id)))
        .await
        .expect("Bob did not see Alice gone in time");
    eprintln!(
        "a silent friend was seen gone on both sides {:?} after the cut",
        cut_at.elapsed()
    );
    assert!(matches!(
        dialled.connection().close_reason(),
        Some(ConnectionError::LocallyClosed)
    ));
    assert!(alice.friends.link(&bob_id).is_none());
    assert!(bob.friends.link(&alice_id).is_none());

    // The path heals: they connect again.
    for cut in &cuts {
        cut.cut.store(false, Ordering::SeqCst);
    }
    alice.connected(bob_id).await;
    bob.connected(alice_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_and_info_reach_friends_online_and_after_a_reconnect_and_labels_stay_local() {
    let net = net(24, 11).await;
    let mut alice = net.node([127, 25, 11, 1], "alice").await;
    let mut bob = net.node([127, 25, 12, 1], "bob").await;
    befriend(&mut alice, &mut bob).await;
    let (alice_id, bob_id) = (alice.id(), bob.id());

    // Online: at once.
    alice.friends.set_presence(Presence::Away).await.unwrap();
    let presence = bob
        .until(|e| match e {
            FriendEvent::PresenceChanged(id, p) if *id == alice_id => Some(*p),
            _ => None,
        })
        .await;
    assert_eq!(presence, Presence::Away);
    let info = UserInfo::new("Alice A.", "on the road")
        .unwrap()
        .with_phone("+1 555 0100")
        .unwrap()
        .with_email("alice@example.org")
        .unwrap()
        .with_region("Lyon")
        .unwrap()
        .with_gender("f")
        .unwrap()
        .with_avatar(true);
    alice.friends.set_user_info(info.clone()).await.unwrap();
    let seen = bob
        .until(|e| match e {
            FriendEvent::InfoChanged(id, info) if *id == alice_id => Some(info.clone()),
            _ => None,
        })
        .await;
    assert_eq!(seen, info);
    let friend = bob.friends.friends().pop().unwrap();
    assert_eq!((friend.info, friend.presence), (info, Presence::Away));

    // Labels are local: Bob's label for Alice changes nothing at Alice.
    bob.friends.set_label(&alice_id, "Al").await.unwrap();
    assert_eq!(bob.friends.friends()[0].label, "Al");
    assert_eq!(alice.friends.friends()[0].label, "");

    // Offline: Bob stops, Alice changes both, Bob hears when he is back.
    let (bob_dir, bob_bind) = bob.stop().await;
    alice
        .until(|e| (*e == FriendEvent::Disconnected(bob_id)).then_some(()))
        .await;
    alice.friends.set_presence(Presence::Busy).await.unwrap();
    let later = alice
        .friends
        .user_info()
        .with_name("Alice B.")
        .unwrap()
        .with_avatar(false);
    alice.friends.set_user_info(later.clone()).await.unwrap();
    let mut bob = net.start(bob_dir, bob_bind).await;
    let mut presence = None;
    let mut info = None;
    while presence.is_none() || info.is_none() {
        match bob.until(|e| Some(e.clone())).await {
            FriendEvent::PresenceChanged(id, p) if id == alice_id => presence = Some(p),
            FriendEvent::InfoChanged(id, i) if id == alice_id => info = Some(i),
            _ => {}
        }
    }
    assert_eq!(presence, Some(Presence::Busy));
    assert_eq!(info.as_ref(), Some(&later));
    // Latest wins, and the label survived the restart.
    let friend = bob.friends.friends().pop().unwrap();
    assert_eq!(friend.info, later);
    assert_eq!(friend.presence, Presence::Busy);
    assert_eq!(friend.label, "Al");
    wait_for(|| async { alice.friends.outbox().unwrap().is_empty().then_some(()) }).await;

    // Each over-long field is its own error.
    let over = |n: usize| "x".repeat(n + 1);
    let info = UserInfo::default();
    assert_eq!(
        info.clone().with_name(&over(63)),
        Err(InfoError::NameTooLong(64))
    );
    assert_eq!(
        info.clone().with_description(&over(127)),
        Err(InfoError::DescriptionTooLong(128))
    );
    assert_eq!(
        info.clone().with_phone(&over(31)),
        Err(InfoError::PhoneTooLong(32))
    );
    assert_eq!(
        info.clone().with_email(&over(127)),
        Err(InfoError::EmailTooLong(128))
    );
    assert_eq!(
        info.clone().with_region(&over(127)),
        Err(InfoError::RegionTooLong(128))
    );
    assert_eq!(
        info.with_gender(&over(31)),
        Err(InfoError::GenderTooLong(32))
    );
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rogue_node_is_refused_at_the_handshake_and_each_layer_gets_only_its_streams() {
    let net = net(24, 21).await;
    let mut alice = net.node([127, 25, 21, 1], "alice").await;
    let mut bob = net.node([127, 25, 22, 1], "bob").await;
    befriend(&mut alice, &mut bob).await;
    let (alice_id, bob_id) = (alice.id(), bob.id());
    // The dials of a new friendship race; the link used below is the one that stays.
    hold_steady(&alice, &bob).await;

    // A node that is not Alice's friend proves its ID, then is closed before any stream.
    let rogue_keys = Keypair::generate();
    let rogue = LinkEndpoint::new(
        NodeSocket::bind(SocketAddr::from(([127, 25, 23, 1], 0))).unwrap(),
        &rogue_keys,
        LinkConfig::new(AllowList::default()),
    )
    .unwrap();
    let refused_before = alice.friends.endpoint().stats().friends_refused;
    let to_alice = Path::Direct(alice.friends.dht().local_addr());
    if let Ok(link) = rogue.dial(alice_id, to_alice).await {
        match link.connection().closed().await {
            ConnectionError::ApplicationClosed(c) => assert_eq!(c.error_code, close::NOT_A_FRIEND),
            other => panic!("{other:?}"),
        }
    }
    wait_for(|| async {
        (alice.friends.endpoint().stats().friends_refused > refused_before).then_some(())
    })
    .await;
    assert!(alice.friends.link(&rogue_keys.id()).is_none());
    assert_eq!(alice.friends.online(), vec![bob_id]);

    // Two layers, two streams: each reaches its own inbox only.
    let mut msgs = bob.friends.register(Extension::MSG).unwrap();
    let mut sessions = bob.friends.register(Extension::STREAM).unwrap();
    assert!(bob.friends.register(Extension::MSG).is_err());
    let link = alice.friends.link(&bob_id).unwrap();
    for (layer, bytes) in [
        (Extension::MSG, &b"a message"[..]),
        (Extension::STREAM, b"a session"),
    ] {
        let mut send = link.open_uni(layer).await.unwrap();
        send.write_all(bytes).await.unwrap();
        send.finish().unwrap();
    }
    let (mut send, mut recv) = link.open_bi(Extension::STREAM).await.unwrap();
    send.write_all(b"ping").await.unwrap();
    send.finish().unwrap();
    let Inbound::Uni {
        peer,
        recv: mut heard,
    } = within(msgs.recv()).await.unwrap()
    else {
        panic!("not a uni stream");
    };
    assert_eq!(peer, alice_id);
    assert_eq!(heard.read_to_end(64).await.unwrap(), b"a message");
    // The session layer's two streams, in whatever order their headers were read.
    for _ in 0..2 {
        match within(sessions.recv()).await.unwrap() {
            Inbound::Uni {
                peer,
                recv: mut heard,
            } => {
                assert_eq!(peer, alice_id);
                assert_eq!(heard.read_to_end(64).await.unwrap(), b"a session");
            }
            Inbound::Bi {
                peer,
                send: mut back,
                recv: mut heard,
            } => {
                assert_eq!(peer, alice_id);
                assert_eq!(heard.read_to_end(64).await.unwrap(), b"ping");
                back.write_all(b"pong").await.unwrap();
                back.finish().unwrap();
            }
            Inbound::Datagram { .. } => panic!("no datagram was sent yet"),
        }
    }
    assert_eq!(within(recv.read_to_end(64)).await.unwrap(), b"pong");
    // Nothing more for the message layer than its own stream.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), msgs.recv())
            .await
            .is_err()
    );

    // A layer nobody registered is refused, not handed to another.
    let mut send = link.open_uni(Extension::MUX).await.unwrap();
    let _ = send.write_all(b"nobody").await;
    assert_eq!(send.stopped().await.unwrap(), Some(codes::NO_RECEIVER));
    // A peer Alice asked, not a friend yet, gets through her gate (its accept must arrive)
    // but reaches no layer above hers.
    let mut carol = net.node([127, 25, 24, 1], "carol").await;
    let carol_id = carol.id();
    alice
        .friends
        .add_friend(&carol.friends.address().to_string(), b"hi Carol")
        .await
        .unwrap();
    carol
        .until(|e| matches!(e, FriendEvent::Request(_)).then_some(()))
        .await;
    let _alices_msgs = alice.friends.register(Extension::MSG).unwrap();
    let at_alice = carol
        .friends
        .endpoint()
        .dial(alice_id, Path::Direct(alice.friends.dht().local_addr()))
        .await
        .unwrap();
    let mut send = at_alice.open_uni(Extension::MSG).await.unwrap();
    // The refusal may already be back before this write: then the write fails with it.
    let _ = send.write_all(b"let me in").await;
    assert_eq!(send.stopped().await.unwrap(), Some(codes::NOT_ADMITTED));
    assert!(alice.friends.router().stats().not_admitted >= 1);
    assert!(!alice.friends.is_online(&carol_id));
    assert!(alice.friends.link(&carol_id).is_none());
    carol.stop().await;

    // A datagram goes to its layer too.
    link.send_datagram(Extension::MSG, b"dgram").unwrap();
    let Inbound::Datagram { payload, .. } = within(msgs.recv()).await.unwrap() else {
        panic!("not a datagram");
    };
    assert_eq!(&payload[..], b"dgram");
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_dials_no_more_friends_at_once_than_its_limit_and_reaches_them_all() {
    let net = net(24, 31).await;
    let config = FriendsConfig::for_tests().with_max_concurrent_dials(1);
    let bind = SocketAddr::from(([127, 25, 31, 1], 0));
    let mut hub = net
        .start_with(net.dir.path().join("hub"), bind, config)
        .await;
    let mut friends = Vec::new();
    for i in 0..3u8 {
        let mut friend = net.node([127, 25, 32 + i, 1], &format!("friend{i}")).await;
        befriend(&mut friend, &mut hub).await;
        friends.push(friend);
    }

    // All three go offline: the hub keeps looking for them, one at a time.
    let mut stopped = Vec::new();
    for friend in friends {
        stopped.push((friend.id(), friend.stop().await));
    }
    wait_for(|| async { (hub.friends.online().is_empty()).then_some(()) }).await;
    let mut most = 0;
    for _ in 0..300 {
        most = most.max(hub.friends.dials_in_flight());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(most, 1, "one dial at a time, and the hub does dial");

    // Back online, each is reached.
    let mut back = Vec::new();
    for (id, (dir, bind)) in stopped {
        back.push(net.start(dir, bind).await);
        hub.connected(id).await;
    }
    assert_eq!(hub.friends.online().len(), 3);
    for node in back {
        node.stop().await;
    }
    hub.stop().await;
}

/// Loses every DHT packet (class byte 0x01) both ways: lookups fail, links still work.
struct NoDht;

impl Conditioner for NoDht {
    fn outgoing(&self, _to: SocketAddr, data: &[u8]) -> Fate {
        if data.first() == Some(&0x01) {
            Fate::Drop
        } else {
            Fate::Pass
        }
    }

    fn incoming(&self, _from: SocketAddr, data: &[u8]) -> Fate {
        self.outgoing(_from, data)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dial_starts_at_the_last_known_path_without_waiting_for_a_lookup() {
    let net = net(26, 1).await;
    let mut alice = net.node([127, 27, 1, 1], "alice").await;
    let mut bob = net.node([127, 27, 2, 1], "bob").await;
    befriend(&mut alice, &mut bob).await;
    let bob_id = bob.id();
    // From now on no lookup can succeed on either side.
    for node in [&alice, &bob] {
        node.friends
            .dht()
            .socket()
            .set_conditioner(Some(Arc::new(NoDht)));
    }
    // A dial still reaches Bob where his last link ran, at once.
    let started = tokio::time::Instant::now();
    let link = tokio::time::timeout(PATIENCE, alice.friends.dial_friend(&bob_id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(link.peer(), bob_id);
    assert!(
        started.elapsed() < FriendsConfig::for_tests().dial_timeout,
        "the dial waited for the lookup: {:?}",
        started.elapsed()
    );
}
