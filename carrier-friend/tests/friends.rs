//! The friend layer between real nodes over 127.x.y.1 with a small DHT: request and accept,
//! refuse, remove (online and to an offline friend), block, nospam rotation, and every error.
#![allow(clippy::unwrap_used)] // Helpers outside #[test] functions unwrap too.

mod common;

use std::net::SocketAddr;

use carrier_friend::dht::id::{CarrierId, Keypair, Nospam};
use carrier_friend::dht::Dht;
use carrier_friend::{
    FriendError, FriendEvent, Friends, FriendsConfig, MAX_HELLO_BYTES, MAX_LABEL_BYTES,
};
use common::net::{net, server, wait_for, Net, Node, PATIENCE};

impl Node {
    /// The next event about requests and friendships (links and profiles are
    /// `tests/links.rs`'s), within [`PATIENCE`].
    async fn event(&mut self) -> FriendEvent {
        loop {
            let event = tokio::time::timeout(PATIENCE, self.events.recv())
                .await
                .expect("no event in time")
                .expect("events closed");
            if !about_links(&event) {
                return event;
            }
        }
    }
}

/// Alice on 127.21.1.1 and Bob on 127.21.2.1, in `net`.
async fn alice_and_bob(net: &Net) -> (Node, Node) {
    let alice = net.node([127, 21, 1, 1], "alice").await;
    let bob = net.node([127, 21, 2, 1], "bob").await;
    (alice, bob)
}

/// Waits until `node` has no item waiting for an acknowledgement: every request and control
/// item it sent was taken by its peer.
async fn drained(node: &Node) {
    wait_for(|| async { node.friends.outbox().unwrap().is_empty().then_some(()) }).await;
}

/// `a` asks `b`, `b` accepts: friends both ways.
async fn befriend(a: &mut Node, b: &mut Node) {
    a.friends.add_friend(&b.address(), b"hello").await.unwrap();
    match b.event().await {
        FriendEvent::Request(request) => assert_eq!(request.from, a.id()),
        other => panic!("{other:?}"),
    }
    b.friends.accept_friend(&a.id()).await.unwrap();
    assert_eq!(a.event().await, FriendEvent::Added(b.id()));
    assert!(a.friends.is_friend(&b.id()) && b.friends.is_friend(&a.id()));
}

/// Whether `event` is about links or profiles rather than requests and friendships.
fn about_links(event: &FriendEvent) -> bool {
    matches!(
        event,
        FriendEvent::Connected(_)
            | FriendEvent::Disconnected(_)
            | FriendEvent::InfoChanged(..)
            | FriendEvent::PresenceChanged(..)
    )
}

fn no_more_events(node: &mut Node) {
    while let Ok(event) = node.events.try_recv() {
        assert!(
            about_links(&event),
            "an unexpected event at {}: {event:?}",
            node.id()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_arrives_once_and_accepting_makes_both_friends() {
    let net = net(20, 1).await;
    let (mut alice, mut bob) = alice_and_bob(&net).await;
    // A layer above follows the same events beside the application.
    let mut above_bob = bob.friends.subscribe();
    let mut above_alice = alice.friends.subscribe();

    alice
        .friends
        .add_friend(&bob.address(), b"hi Bob, it is Alice")
        .await
        .unwrap();
    assert_eq!(alice.friends.outgoing_requests().len(), 1);
    let FriendEvent::Request(request) = bob.event().await else {
        panic!("not a request");
    };
    assert_eq!(request.from, alice.id());
    assert_eq!(request.hello, b"hi Bob, it is Alice");
    assert_eq!(request.info.name(), "alice");
    assert_eq!(bob.friends.incoming_requests(), vec![request]);
    drained(&alice).await;

    bob.friends.accept_friend(&alice.id()).await.unwrap();
    assert!(bob.friends.is_friend(&alice.id()));
    assert!(bob.friends.incoming_requests().is_empty());
    assert_eq!(alice.event().await, FriendEvent::Added(bob.id()));
    assert!(alice.friends.is_friend(&bob.id()));
    assert!(alice.friends.outgoing_requests().is_empty());
    let friends = alice.friends.friends();
    assert_eq!(friends.len(), 1);
    assert_eq!(friends[0].info.name(), "bob");
    drained(&bob).await;

    // Labels are local.
    alice.friends.set_label(&bob.id(), "Bobby").await.unwrap();
    assert_eq!(alice.friends.friends()[0].label, "Bobby");

    // Asking a friend again succeeds: the friend answers with a fresh accept, no new request.
    alice
        .friends
        .add_friend(&bob.address(), b"again")
        .await
        .unwrap();
    drained(&alice).await;
    drained(&bob).await;
    wait_for(|| async { alice.friends.outgoing_requests().is_empty().then_some(()) }).await;
    assert!(alice.friends.is_friend(&bob.id()) && bob.friends.is_friend(&alice.id()));
    assert_eq!(alice.friends.friends()[0].label, "Bobby", "the label stays");

    // Each event came exactly once.
    bob.friends.check_mailboxes().await;
    alice.friends.check_mailboxes().await;
    no_more_events(&mut alice);
    no_more_events(&mut bob);

    // The subscribers saw the same request and friendship, once each.
    let seen = |events: &mut carrier_friend::FriendEvents| {
        let mut seen = Vec::new();
        while let Ok(event) = events.try_recv() {
            if !about_links(&event) {
                seen.push(event);
            }
        }
        seen
    };
    let at_bob = seen(&mut above_bob);
    assert!(
        matches!(&at_bob[..], [FriendEvent::Request(r)] if r.from == alice.id()),
        "{at_bob:?}"
    );
    assert_eq!(seen(&mut above_alice), vec![FriendEvent::Added(bob.id())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_both_ask_one_accept_makes_them_friends_with_nothing_left_pending() {
    let net = net(20, 1).await;
    let (mut alice, mut bob) = alice_and_bob(&net).await;
    alice
        .friends
        .add_friend(&bob.address(), b"hi")
        .await
        .unwrap();
    bob.friends
        .add_friend(&alice.address(), b"hi")
        .await
        .unwrap();
    assert!(matches!(alice.event().await, FriendEvent::Request(_)));
    assert!(matches!(bob.event().await, FriendEvent::Request(_)));
    drained(&alice).await;
    drained(&bob).await;

    alice.friends.accept_friend(&bob.id()).await.unwrap();
    assert_eq!(bob.event().await, FriendEvent::Added(alice.id()));
    drained(&alice).await;
    for node in [&alice, &bob] {
        assert_eq!(node.friends.friends().len(), 1);
        assert!(node.friends.incoming_requests().is_empty());
        assert!(node.friends.outgoing_requests().is_empty());
    }
    no_more_events(&mut alice);
    no_more_events(&mut bob);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_is_gone_and_nobody_is_a_friend() {
    let net = net(20, 1).await;
    let (mut alice, mut bob) = alice_and_bob(&net).await;
    alice
        .friends
        .add_friend(&bob.address(), b"hello")
        .await
        .unwrap();
    assert!(matches!(bob.event().await, FriendEvent::Request(_)));
    bob.friends.refuse_friend(&alice.id()).await.unwrap();
    assert!(bob.friends.incoming_requests().is_empty());
    assert!(matches!(
        bob.friends.accept_friend(&alice.id()).await,
        Err(FriendError::UnknownRequest(id)) if id == alice.id()
    ));
    drained(&alice).await;
    assert!(!alice.friends.is_friend(&bob.id()) && !bob.friends.is_friend(&alice.id()));
    no_more_events(&mut alice);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_friend_ends_the_friendship_on_both_sides_online_or_offline() {
    let net = net(20, 1).await;
    let (mut alice, mut bob) = alice_and_bob(&net).await;
    let mut carol = net.node([127, 21, 3, 1], "carol").await;
    befriend(&mut alice, &mut bob).await;
    befriend(&mut alice, &mut carol).await;
    drained(&bob).await;
    drained(&carol).await;

    // Bob is online, linked to Alice: each side holds the other's mapped address.
    let (a, b) = (alice.id(), bob.id());
    let at_alice = wait_for(|| async { alice.friends.link(&b) }).await;
    let at_bob = wait_for(|| async { bob.friends.link(&a) }).await;
    let held = [
        (
            alice.friends.clone(),
            at_alice.connection().remote_address(),
        ),
        (bob.friends.clone(), at_bob.connection().remote_address()),
    ];
    drop((at_alice, at_bob));
    for (node, mapped) in &held {
        assert!(node.endpoint().paths().is_pinned(*mapped));
    }
    alice.friends.remove_friend(&bob.id()).await.unwrap();
    assert!(!alice.friends.is_friend(&bob.id()));
    assert_eq!(bob.event().await, FriendEvent::Removed(alice.id()));
    assert!(!bob.friends.is_friend(&alice.id()));
    drained(&alice).await;
    // The link is gone, and with it the holds: strangers may evict those entries now.
    for (node, mapped) in &held {
        wait_for(|| async { (!node.endpoint().paths().is_pinned(*mapped)).then_some(()) }).await;
    }
    drop(held);

    // Carol is offline when Alice removes her: the remove waits in Carol's mailbox.
    let carol_id = carol.id();
    let carol_dir = carol.dir.clone();
    carol.stop().await;
    alice.friends.remove_friend(&carol_id).await.unwrap();
    wait_for(|| async {
        let outbox = alice.friends.outbox().unwrap();
        outbox
            .iter()
            .any(|e| e.peer == carol_id && e.deposited_unix_ms.is_some())
            .then_some(())
    })
    .await;
    let mut carol = net
        .start(carol_dir, SocketAddr::from(([127, 21, 3, 1], 0)))
        .await;
    assert_eq!(carol.id(), carol_id);
    assert_eq!(carol.event().await, FriendEvent::Removed(alice.id()));
    assert!(!carol.friends.is_friend(&alice.id()));
    assert!(carol.friends.friends().is_empty());
    drained(&alice).await;
    no_more_events(&mut carol);

    assert!(matches!(
        alice.friends.remove_friend(&carol_id).await,
        Err(FriendError::NotAFriend(_))
    ));
}

/// With LAN discovery on (its mDNS service stays off on loopback), friends exchange LAN
/// keys over their links. Removing a friend replaces the remover's key, and the removed
/// side's too: the friend left learns the new one at once, the old tokens name nobody, and
/// the new key survives a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_friend_replaces_the_lan_key_and_only_the_friends_left_learn_the_new_one() {
    let net = net(20, 1).await;
    let mut lan = FriendsConfig::for_tests();
    lan.lan = true;
    let start = |name: &str, ip: [u8; 4]| {
        net.start_with(
            net.dir.path().join(name),
            SocketAddr::from((ip, 0)),
            lan.clone(),
        )
    };
    let mut alice = start("alice", [127, 21, 1, 1]).await;
    let mut bob = start("bob", [127, 21, 2, 1]).await;
    let mut carol = start("carol", [127, 21, 3, 1]).await;
    befriend(&mut alice, &mut bob).await;
    befriend(&mut alice, &mut carol).await;
    let (a, b, c) = (alice.id(), bob.id(), carol.id());
    // Each learns the other's key over their link: a token names its holder.
    let knows = |node: &Node, token: String, holder: CarrierId| {
        let found = node.friends.lan_friend(&token);
        async move { (found == Some(holder)).then_some(()) }
    };
    wait_for(|| knows(&bob, alice.friends.lan_token(), a)).await;
    wait_for(|| knows(&carol, alice.friends.lan_token(), a)).await;
    wait_for(|| knows(&alice, bob.friends.lan_token(), b)).await;
    wait_for(|| knows(&alice, carol.friends.lan_token(), c)).await;
    assert_eq!(bob.friends.lan_friend(&carol.friends.lan_token()), None);
    assert_eq!(bob.friends.lan_friend("not a token"), None);

    let (alice_before, carol_before) = (alice.friends.lan_token(), carol.friends.lan_token());
    alice.friends.remove_friend(&c).await.unwrap();
    assert_eq!(carol.event().await, FriendEvent::Removed(a));
    // Both sides of the removal have a new key; Bob, still a friend, gets Alice's at once.
    let alice_after = alice.friends.lan_token();
    assert_ne!(alice_after, alice_before);
    wait_for(|| async { (carol.friends.lan_token() != carol_before).then_some(()) }).await;
    wait_for(|| knows(&bob, alice.friends.lan_token(), a)).await;
    assert_eq!(
        bob.friends.lan_friend(&alice_before),
        None,
        "the old key is gone"
    );
    assert_eq!(alice.friends.lan_friend(&carol.friends.lan_token()), None);
    assert_eq!(alice.friends.lan_friend(&carol_before), None);
    // Bob's own key did not change: Alice still knows it.
    assert_eq!(alice.friends.lan_friend(&bob.friends.lan_token()), Some(b));

    // The new key is Alice's after a restart too.
    let dir = alice.dir.clone();
    alice.stop().await;
    let alice = net
        .start_with(dir, SocketAddr::from(([127, 21, 1, 1], 0)), lan.clone())
        .await;
    assert_eq!(bob.friends.lan_friend(&alice.friends.lan_token()), Some(a));
    alice.stop().await;
    bob.stop().await;
    carol.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asking_a_friend_again_then_removing_it_ends_the_friendship_whatever_arrives_last() {
    let net = net(20, 1).await;
    let (mut alice, mut bob) = alice_and_bob(&net).await;
    befriend(&mut alice, &mut bob).await;
    drained(&bob).await;

    // Bob answers the request with an accept; the remove may overtake it either way.
    alice
        .friends
        .add_friend(&bob.address(), b"still friends?")
        .await
        .unwrap();
    alice.friends.remove_friend(&bob.id()).await.unwrap();
    assert!(alice.friends.outgoing_requests().is_empty());
    assert_eq!(bob.event().await, FriendEvent::Removed(alice.id()));
    drained(&alice).await;
    drained(&bob).await;
    alice.friends.check_mailboxes().await;
    bob.friends.check_mailboxes().await;
    assert!(!alice.friends.is_friend(&bob.id()));
    assert!(!bob.friends.is_friend(&alice.id()));
    no_more_events(&mut alice);
    no_more_events(&mut bob);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_requester_is_dropped_silently() {
    let net = net(20, 1).await;
    let (alice, mut bob) = alice_and_bob(&net).await;
    bob.friends.block(&alice.id()).await.unwrap();
    assert_eq!(bob.friends.blocked(), vec![alice.id()]);

    alice
        .friends
        .add_friend(&bob.address(), b"let me in")
        .await
        .unwrap();
    // Bob took the request (so Alice stops sending it) and dropped it.
    drained(&alice).await;
    bob.friends.check_mailboxes().await;
    assert!(bob.friends.incoming_requests().is_empty());
    no_more_events(&mut bob);

    // Unblocked, Alice's next request arrives.
    assert!(bob.friends.unblock(&alice.id()).await.unwrap());
    alice
        .friends
        .add_friend(&bob.address(), b"now?")
        .await
        .unwrap();
    match bob.event().await {
        FriendEvent::Request(request) => assert_eq!(request.hello, b"now?"),
        other => panic!("{other:?}"),
    }

    // Blocking drops a pending request too.
    bob.friends.block(&alice.id()).await.unwrap();
    assert!(bob.friends.incoming_requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_nospam_rotation_requests_to_the_old_address_are_dropped() {
    let net = net(20, 1).await;
    let (alice, mut bob) = alice_and_bob(&net).await;
    let old = bob.friends.address();
    let new = Nospam(old.nospam().0.wrapping_add(1));
    bob.friends.set_nospam(new).await.unwrap();
    assert_eq!(bob.friends.address().nospam(), new);
    assert_eq!(bob.friends.address().id(), old.id());

    alice
        .friends
        .add_friend(&old.to_string(), b"old address")
        .await
        .unwrap();
    drained(&alice).await;
    bob.friends.check_mailboxes().await;
    assert!(bob.friends.incoming_requests().is_empty());
    no_more_events(&mut bob);

    alice
        .friends
        .add_friend(&bob.address(), b"new address")
        .await
        .unwrap();
    match bob.event().await {
        FriendEvent::Request(request) => assert_eq!(request.hello, b"new address"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_beyond_the_cap_waits_until_a_pending_one_is_answered() {
    let net = net(20, 1).await;
    let mut config = FriendsConfig::for_tests();
    config.max_incoming_requests = 2;
    let bind = SocketAddr::from(([127, 21, 1, 1], 0));
    let mut alice = net
        .start_with(net.dir.path().join("alice"), bind, config)
        .await;
    let bob = net.node([127, 21, 2, 1], "bob").await;
    let carol = net.node([127, 21, 3, 1], "carol").await;
    let dave = net.node([127, 21, 4, 1], "dave").await;
    for asker in [&bob, &carol] {
        asker
            .friends
            .add_friend(&alice.address(), b"hello")
            .await
            .unwrap();
        match alice.event().await {
            FriendEvent::Request(request) => assert_eq!(request.from, asker.id()),
            other => panic!("{other:?}"),
        }
    }

    // Two requests wait: Dave's is not taken, however often he tries, directly or by letter.
    dave.friends
        .add_friend(&alice.address(), b"hello")
        .await
        .unwrap();
    wait_for(|| async {
        let outbox = dave.friends.outbox().unwrap();
        (outbox.len() == 1 && outbox[0].attempts >= 4 && outbox[0].deposited_unix_ms.is_some())
            .then_some(())
    })
    .await;
    alice.friends.check_mailboxes().await;
    let waiting: Vec<_> = alice
        .friends
        .incoming_requests()
        .iter()
        .map(|r| r.from)
        .collect();
    assert_eq!(waiting.len(), 2);
    assert!(!waiting.contains(&dave.id()));
    no_more_events(&mut alice);

    // Alice answers one: Dave's next attempt (or his letter) is taken, once.
    alice.friends.refuse_friend(&bob.id()).await.unwrap();
    match alice.event().await {
        FriendEvent::Request(request) => assert_eq!(request.from, dave.id()),
        other => panic!("{other:?}"),
    }
    drained(&dave).await;
    alice.friends.check_mailboxes().await;
    assert_eq!(alice.friends.incoming_requests().len(), 2);
    no_more_events(&mut alice);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_to_an_offline_node_arrives_when_it_starts_and_so_does_the_accept() {
    let net = net(20, 1).await;
    let (alice, bob) = alice_and_bob(&net).await;
    let (bob_address, bob_dir) = (bob.address(), bob.dir.clone());
    bob.stop().await;

    alice
        .friends
        .add_friend(&bob_address, b"are you there?")
        .await
        .unwrap();
    wait_for(|| async {
        let outbox = alice.friends.outbox().unwrap();
        outbox
            .iter()
            .any(|e| e.deposited_unix_ms.is_some())
            .then_some(())
    })
    .await;

    let mut bob = net
        .start(bob_dir, SocketAddr::from(([127, 21, 2, 1], 0)))
        .await;
    match bob.event().await {
        FriendEvent::Request(request) => {
            assert_eq!(request.from, alice.id());
            assert_eq!(request.hello, b"are you there?");
        }
        other => panic!("{other:?}"),
    }
    drained(&alice).await;

    // Now Alice is offline when Bob accepts: the accept waits in her mailbox.
    let (alice_id, alice_dir) = (alice.id(), alice.dir.clone());
    alice.stop().await;
    bob.friends.accept_friend(&alice_id).await.unwrap();
    assert!(bob.friends.is_friend(&alice_id));
    wait_for(|| async {
        let outbox = bob.friends.outbox().unwrap();
        outbox
            .iter()
            .any(|e| e.peer == alice_id && e.deposited_unix_ms.is_some())
            .then_some(())
    })
    .await;
    let mut alice = net
        .start(alice_dir, SocketAddr::from(([127, 21, 1, 1], 0)))
        .await;
    assert_eq!(alice.event().await, FriendEvent::Added(bob.id()));
    assert!(alice.friends.is_friend(&bob.id()));
    assert!(alice.friends.outgoing_requests().is_empty());
    drained(&bob).await;
    bob.friends.check_mailboxes().await;
    alice.friends.check_mailboxes().await;
    no_more_events(&mut bob);
    no_more_events(&mut alice);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_misuse_is_its_own_error() {
    let net = net(20, 1).await;
    let (alice, bob) = alice_and_bob(&net).await;
    let f = &alice.friends;

    assert!(matches!(
        f.add_friend(&alice.address(), b"me").await,
        Err(FriendError::Yourself)
    ));
    assert!(matches!(
        f.add_friend("not an address", b"hi").await,
        Err(FriendError::InvalidAddress(_))
    ));
    // One character changed: the checksum catches it.
    let mut damaged = bob.address().into_bytes();
    let last = damaged.len() - 1;
    damaged[last] = if damaged[last] == b'2' { b'3' } else { b'2' };
    assert!(matches!(
        f.add_friend(std::str::from_utf8(&damaged).unwrap(), b"hi")
            .await,
        Err(FriendError::InvalidAddress(_))
    ));
    assert!(matches!(
        f.add_friend(&bob.address(), b"").await,
        Err(FriendError::EmptyHello)
    ));
    assert!(matches!(
        f.add_friend(&bob.address(), &[b'x'; MAX_HELLO_BYTES + 1])
            .await,
        Err(FriendError::HelloTooLong {
            len: 1025,
            max: 1024
        })
    ));
    let stranger = Keypair::generate().id();
    assert!(matches!(
        f.accept_friend(&stranger).await,
        Err(FriendError::UnknownRequest(id)) if id == stranger
    ));
    assert!(matches!(
        f.refuse_friend(&stranger).await,
        Err(FriendError::UnknownRequest(id)) if id == stranger
    ));
    f.block(&bob.id()).await.unwrap();
    assert!(matches!(
        f.add_friend(&bob.address(), b"hi").await,
        Err(FriendError::Blocked(id)) if id == bob.id()
    ));
    assert!(matches!(
        f.remove_friend(&stranger).await,
        Err(FriendError::NotAFriend(_))
    ));
    assert!(matches!(
        f.set_label(&stranger, &"l".repeat(MAX_LABEL_BYTES + 1))
            .await,
        Err(FriendError::LabelTooLong { .. })
    ));
    assert!(matches!(
        f.block(&alice.id()).await,
        Err(FriendError::Yourself)
    ));
    // Nothing was sent for any of them.
    assert!(f.outbox().unwrap().is_empty());
    assert!(f.outgoing_requests().is_empty());

    // The friend layer needs the node's database.
    let memory_only = Dht::bind(server(SocketAddr::from(([127, 21, 9, 1], 0)), None, None))
        .await
        .unwrap();
    assert!(matches!(
        Friends::start(memory_only, FriendsConfig::for_tests()).await,
        Err(FriendError::NoStore)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_nobody_bootstrapped_joins_itself_and_reopens_its_directory_at_once() {
    let net = net(20, 1).await;
    let dir = net.dir.path().join("carol");
    let bind = SocketAddr::from(([127, 21, 9, 1], 0));
    for round in 0..3 {
        // A DHT configured with the seed but never bootstrapped: the friend layer joins.
        let dht = Dht::bind(server(bind, Some(dir.clone()), net.seeds.first()))
            .await
            .unwrap_or_else(|e| panic!("round {round}: the directory did not open at once: {e}"));
        assert_eq!(dht.routing_entries(), 0);
        let (friends, _events) = Friends::start(dht.clone(), FriendsConfig::for_tests())
            .await
            .unwrap();
        wait_for(|| async { (friends.dht().routing_entries() > 0).then_some(()) }).await;
        wait_for(|| async { matches!(friends.announce().await, Ok(n) if n > 0).then_some(()) })
            .await;
        // Work in flight at the shutdown: a request to someone offline, being looked up and
        // deposited.
        let offline = Keypair::generate();
        let address = carrier_friend::dht::id::Address::new(offline.id(), Nospam(7));
        friends
            .add_friend(&address.to_string(), b"anyone?")
            .await
            .unwrap();
        // Shut down, the layer's tasks hold nothing: with the DHT shut down too, the next
        // round binds the same directory with no retry.
        friends.shutdown().await;
        drop(friends);
        dht.shutdown().await.unwrap();
    }
}
