//! The facade: two nodes started with `Carrier::builder()` on a small DHT, made friends,
//! exchanging a message and an invite, opening a session with a stream and a forwarding,
//! with every layer's events on each node's one stream; a node shut down starts again at
//! once on the same data directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use carrier::dht::BootstrapNode;
use carrier::forward::{Allowed, ForwardEvent};
use carrier::friend::FriendEvent;
use carrier::msg::MessageEvent;
use carrier::mux::ChannelChange;
use carrier::stream::{SessionReport, StreamKind, StreamMode, StreamState};
use carrier::{Carrier, ConnectionStatus, Event, Events};
use support::{seeds, PATIENCE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

/// `future` within [`PATIENCE`].
async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .expect("not within the patience")
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

    // An invite to an extension Bob's node takes, and its reply.
    bob.take_invites("game").unwrap();
    assert!(matches!(
        bob.take_invites("game"),
        Err(carrier::CarrierError::Invites(_))
    ));
    let invited = tokio::spawn({
        let alice = alice.clone();
        let bob_id = bob.id();
        async move {
            alice
                .messenger()
                .invites()
                .invite(&bob_id, "game", b"chess", b"e4")
                .await
        }
    });
    let invite = until(&mut bob_events, &mut bob_seen, |e| match e {
        Event::Invite(invite) => Some(invite.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        (
            invite.from,
            invite.bundle.as_slice(),
            invite.data.as_slice()
        ),
        (alice.id(), &b"chess"[..], &b"e4"[..])
    );
    bob.messenger()
        .invites()
        .reply_invite(invite.id, 0, "", b"e5")
        .await
        .unwrap();
    let reply = within(invited).await.unwrap().unwrap();
    assert_eq!(reply.data, b"e5");

    // A session with a stream: both sides report it open, and the stream's states.
    let mut requests = bob.sessions().handle("files").unwrap();
    let asked = tokio::spawn({
        let alice = alice.clone();
        let bob_id = bob.id();
        async move { alice.sessions().request(&bob_id, "files/1").await }
    });
    let at_bob = within(requests.recv())
        .await
        .unwrap()
        .accept()
        .await
        .unwrap();
    let at_alice = within(asked).await.unwrap().unwrap();
    let mut stream = at_alice
        .add_stream(StreamKind::Application, StreamMode::Reliable)
        .await
        .unwrap();
    let mut theirs = within(at_bob.accept_stream()).await.unwrap();
    stream.send(b"a file").await.unwrap();
    stream.finish().unwrap();
    let mut got = Vec::new();
    while let Some(chunk) = within(theirs.recv()).await.unwrap() {
        got.extend_from_slice(&chunk);
    }
    assert_eq!(got, b"a file");
    let session = at_alice.id();
    for (events, seen, requester) in [
        (&mut alice_events, &mut alice_seen, true),
        (&mut bob_events, &mut bob_seen, false),
    ] {
        until(events, seen, |e| {
            matches!(e, Event::Session(SessionReport::Opened { session: s, requester: r, .. })
                if *s == session && *r == requester)
            .then_some(())
        })
        .await;
        until(events, seen, |e| {
            matches!(e, Event::Session(SessionReport::Stream { session: s, state: StreamState::Connected, .. })
                if *s == session)
            .then_some(())
        })
        .await;
    }

    // A forwarding: its connection and the channel under it, on both streams.
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = tcp.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    bob.forwarder()
        .serve("echo", &echo_addr.to_string(), Allowed::Everyone)
        .unwrap();
    let forwarding = within(alice.forwarder().forward(
        &bob.id(),
        "echo",
        "127.0.0.1:0".parse().unwrap(),
    ))
    .await
    .unwrap();
    let mut tcp = tokio::net::TcpStream::connect(forwarding.local_addr())
        .await
        .unwrap();
    tcp.write_all(b"ping").await.unwrap();
    let mut back = [0u8; 4];
    within(tcp.read_exact(&mut back)).await.unwrap();
    assert_eq!(&back, b"ping");
    for (events, seen, by_friend) in [
        (&mut alice_events, &mut alice_seen, false),
        (&mut bob_events, &mut bob_seen, true),
    ] {
        // In whichever order the layers reported them.
        let (mut forward, mut channel) = (false, false);
        until(events, seen, |e| {
            match e {
                Event::Forward(ForwardEvent::Opened { .. }) => forward = true,
                Event::Channel(report) => {
                    if let ChannelChange::Opened {
                        cookie,
                        by_friend: b,
                    } = &report.change
                    {
                        assert_eq!((&cookie[..], *b), (&b"echo"[..], by_friend));
                        channel = true;
                    }
                }
                _ => {}
            }
            (forward && channel).then_some(())
        })
        .await;
    }
    drop(tcp);
    drop(forwarding);

    // Every layer reported on the one stream: the connection, friends, messages, invites,
    // sessions and streams, channels, forwardings (the DHT reports only a change of
    // standing, which a loopback server may never see).
    let kinds = |seen: &[Event]| {
        let mut kinds = std::collections::BTreeSet::new();
        for event in seen {
            kinds.insert(match event {
                Event::Connection(_) => "connection",
                Event::Dht(_) => "dht",
                Event::Friend(_) => "friend",
                Event::Message(_) => "message",
                Event::Invite(_) => "invite",
                Event::Session(_) => "session",
                Event::Channel(_) => "channel",
                Event::Forward(_) => "forward",
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
        [
            "channel",
            "connection",
            "forward",
            "friend",
            "message",
            "session"
        ]
    );
    assert!(kinds(&bob_seen)
        .is_superset(&["channel", "forward", "friend", "invite", "message", "session"].into()));

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
