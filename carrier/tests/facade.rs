//! The facade: two nodes started with `Carrier::builder()` on a small DHT, made friends,
//! exchanging a message, with every layer's events on each node's one stream; a node shut
//! down starts again at once on the same data directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use carrier::dht::BootstrapNode;
use carrier::friend::FriendEvent;
use carrier::msg::MessageEvent;
use carrier::{Carrier, ConnectionStatus, Event, Events};
use support::{seeds, PATIENCE};

/// Reads `events` until `want` picks one, within [`PATIENCE`]; every event read is kept in
/// `seen`.
async fn until<T>(
    events: &mut Events,
    seen: &mut Vec<Event>,
    mut want: impl FnMut(&Event) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("no such event in time")
            .expect("the node's events ended");
        let picked = want(&event);
        seen.push(event);
        if let Some(value) = picked {
            return value;
        }
    }
}

async fn start(dir: &std::path::Path, ip: [u8; 4], seed: &BootstrapNode) -> (Carrier, Events) {
    Carrier::builder()
        .local(SocketAddr::from((ip, 0)))
        .bootstrap([seed.clone()])
        .data_dir(dir)
        .connection_timers(Duration::from_millis(50), Duration::from_secs(10))
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_builder_nodes_become_friends_and_message_with_every_event_on_one_stream() {
    let seeds = seeds(38).await;
    let seed = BootstrapNode::new(seeds[0].id(), seeds[0].local_addr());
    let dir = tempfile::tempdir().unwrap();
    let (alice, mut alice_events) = start(&dir.path().join("alice"), [127, 38, 11, 1], &seed).await;
    let (bob, mut bob_events) = start(&dir.path().join("bob"), [127, 38, 12, 1], &seed).await;
    let (mut alice_seen, mut bob_seen) = (Vec::new(), Vec::new());
    assert_eq!(alice.data_dir(), dir.path().join("alice"));

    // The node's own connection: online once a DHT contact answered.
    until(&mut alice_events, &mut alice_seen, |e| {
        matches!(e, Event::Connection(ConnectionStatus::Online)).then_some(())
    })
    .await;
    assert_eq!(alice.connection(), ConnectionStatus::Online);

    // Friends: the request, the accept, the link, all on the one stream.
    alice
        .friends()
        .add_friend(&bob.address().to_string(), b"hello")
        .await
        .unwrap();
    let from = until(&mut bob_events, &mut bob_seen, |e| match e {
        Event::Friend(FriendEvent::Request(r)) => Some(r.from),
        _ => None,
    })
    .await;
    assert_eq!(from, alice.id());
    bob.friends().accept_friend(&alice.id()).await.unwrap();
    until(&mut alice_events, &mut alice_seen, |e| {
        matches!(e, Event::Friend(FriendEvent::Connected(p)) if *p == bob.id()).then_some(())
    })
    .await;

    // A message and its receipt.
    let id = alice.messenger().send(&bob.id(), b"hi Bob").await.unwrap();
    let message = until(&mut bob_events, &mut bob_seen, |e| match e {
        Event::Message(MessageEvent::Message(m)) => Some(m.clone()),
        _ => None,
    })
    .await;
    assert_eq!((message.id, message.bytes.as_slice()), (id, &b"hi Bob"[..]));
    until(&mut alice_events, &mut alice_seen, |e| {
        matches!(e, Event::Message(MessageEvent::Delivered { id: d, .. }) if *d == id).then_some(())
    })
    .await;
    bob.messenger().ack(message.id).await.unwrap();

    // Every layer reported on the one stream: the connection, friends, messages (the DHT
    // reports only a change of standing, which a loopback server may never see).
    let kinds = |seen: &[Event]| {
        let mut kinds = std::collections::BTreeSet::new();
        for event in seen {
            kinds.insert(match event {
                Event::Connection(_) => "connection",
                Event::Dht(_) => "dht",
                Event::Friend(_) => "friend",
                Event::Message(_) => "message",
                _ => "other",
            });
        }
        kinds
    };
    assert_eq!(
        kinds(&alice_seen)
            .into_iter()
            .filter(|k| *k != "dht")
            .collect::<Vec<_>>(),
        ["connection", "friend", "message"]
    );
    assert!(kinds(&bob_seen).is_superset(&["friend", "message"].into()));

    // Shut down, then started again at once on the same directory: the same node, its
    // friend kept.
    let (alice_id, bob_id) = (alice.id(), bob.id());
    alice.shutdown().await;
    drop(alice);
    let (alice, mut alice_events) = start(&dir.path().join("alice"), [127, 38, 11, 1], &seed).await;
    assert_eq!(alice.id(), alice_id);
    assert!(alice.friends().is_friend(&bob_id));
    until(&mut alice_events, &mut Vec::new(), |e| {
        matches!(e, Event::Friend(FriendEvent::Connected(p)) if *p == bob_id).then_some(())
    })
    .await;
    alice.shutdown().await;
    bob.shutdown().await;
    // The stream ends once the node is down and its events are read.
    let ended = tokio::time::timeout(PATIENCE, async {
        while alice_events.recv().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the event stream did not end after shutdown");
}
