//! Sessions between two friends' nodes on loopback: requested and accepted, refused with a
//! reason, routed by bundle prefix, refused for a non-friend, closed by one side.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use carrier_stream::{
    status, SessionConfig, SessionEvent, SessionState, StreamError, StreamKind, StreamMode,
    StreamState, Topology,
};
use common::within;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_requested_accepted_and_carries_a_stream_each_way_with_states_in_order() {
    let (_net, alice, bob) = common::friends(31, 0, SessionConfig::default()).await;
    let mut requests = bob.sessions.handle("").unwrap();
    let bob_id = bob.id();
    let asked = tokio::spawn({
        let sessions = alice.sessions.clone();
        async move { sessions.request(&bob_id, "chat/1").await }
    });
    let request = within("the request", requests.recv()).await.unwrap();
    assert_eq!(request.peer(), alice.id());
    assert_eq!(request.bundle(), "chat/1");
    let at_bob = request.accept().await.unwrap();
    let at_alice = asked.await.unwrap().unwrap();
    assert_eq!(at_alice.id(), at_bob.id());
    assert_eq!(at_alice.peer(), bob.id());
    assert_eq!(at_bob.bundle(), "chat/1");
    // Active, once a race of first dials (both nodes dial at once) has settled on one link.
    within("the session active", async {
        while at_alice.state() != SessionState::Active {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;

    let info = at_alice.transport_info().unwrap();
    assert_eq!(info.topology, Topology::Lan, "loopback is a local network");
    assert_eq!(info.remote, bob.bind);
    assert_eq!(info.local, alice.bind);
    assert_eq!(info.peer, bob.id());

    // Alice adds a stream; Bob gets it as an event, with its kind.
    let mut mine = at_alice
        .add_stream(StreamKind::Text, StreamMode::Reliable)
        .await
        .unwrap();
    let mut theirs = within("Bob's stream", at_bob.accept_stream())
        .await
        .unwrap();
    assert_eq!(theirs.kind(), StreamKind::Text);
    assert_eq!(theirs.mode(), StreamMode::Reliable);
    assert_eq!(theirs.id(), mine.id());
    mine.send(b"hello bob").await.unwrap();
    mine.finish().unwrap();
    let mut got = Vec::new();
    while let Some(chunk) = theirs.recv().await.unwrap() {
        got.extend_from_slice(&chunk);
    }
    assert_eq!(got, b"hello bob");
    // Half-closed one way: Bob still answers, then finishes.
    theirs.send(b"hello alice").await.unwrap();
    theirs.finish().unwrap();
    let mut back = Vec::new();
    while let Some(chunk) = mine.recv().await.unwrap() {
        back.extend_from_slice(&chunk);
    }
    assert_eq!(back, b"hello alice");
    assert!(matches!(
        mine.send(b"late").await,
        Err(StreamError::WrongState(_))
    ));

    let connected = [
        StreamState::Initialized,
        StreamState::TransportReady,
        StreamState::Connecting,
        StreamState::Connected,
        StreamState::Closed,
    ];
    for stream in [&mut mine, &mut theirs] {
        let mut seen = Vec::new();
        while let Some(state) = stream.next_state().await {
            seen.push(state);
        }
        assert_eq!(seen, connected);
    }

    // Bob adds one too: the acceptor's streams carry the other parity.
    let from_bob = at_bob
        .add_stream(StreamKind::Video, StreamMode::Reliable)
        .await
        .unwrap();
    let at_alice_too = within("Alice's stream", at_alice.accept_stream())
        .await
        .unwrap();
    assert_eq!(at_alice_too.kind(), StreamKind::Video);
    assert_eq!(from_bob.id() % 2, 1);
    assert_eq!(mine.id() % 2, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_session_reports_the_friends_status_and_reason() {
    let (_net, alice, bob) = common::friends(31, 20, SessionConfig::default()).await;
    let mut requests = bob.sessions.handle("").unwrap();
    tokio::spawn(async move {
        while let Some(request) = requests.recv().await {
            request.refuse(42, "not now, busy").await.unwrap();
        }
    });
    let refused = alice.sessions.request(&bob.id(), "call").await;
    assert_eq!(
        refused.err(),
        Some(StreamError::Refused {
            status: 42,
            reason: "not now, busy".into()
        })
    );
    assert!(alice.sessions.sessions().is_empty(), "nothing kept of it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_go_to_the_longest_bundle_prefix_and_the_default_takes_the_rest() {
    let (_net, alice, bob) = common::friends(31, 40, SessionConfig::default()).await;
    let bob_id = bob.id();

    // Nobody handles anything yet: refused with a reason.
    match alice.sessions.request(&bob_id, "files/a").await {
        Err(StreamError::Refused { status, reason }) => {
            assert_eq!(status, status::NO_HANDLER);
            assert!(reason.contains("files/a"), "{reason}");
        }
        other => panic!("not refused: {other:?}"),
    }

    // Each handler accepts and says which it is in the session's first stream.
    for (prefix, name) in [
        ("files/", "files"),
        ("files/photos/", "photos"),
        ("", "default"),
    ] {
        let mut requests = bob.sessions.handle(prefix).unwrap();
        tokio::spawn(async move {
            while let Some(request) = requests.recv().await {
                let session = request.accept().await.unwrap();
                let mut stream = session
                    .add_stream(StreamKind::Application, StreamMode::Reliable)
                    .await
                    .unwrap();
                stream.send(name.as_bytes()).await.unwrap();
                stream.finish().unwrap();
                // Kept open until Alice has read it.
                let _ = stream.recv().await;
            }
        });
    }
    assert!(matches!(
        bob.sessions.handle("files/"),
        Err(StreamError::AlreadyHandled(_))
    ));
    for (bundle, want) in [
        ("files/photos/cat.jpg", "photos"),
        ("files/notes.txt", "files"),
        ("files", "default"),
        ("chat", "default"),
    ] {
        let session = alice.sessions.request(&bob_id, bundle).await.unwrap();
        let mut stream = within("the handler's stream", session.accept_stream())
            .await
            .unwrap();
        let mut got = Vec::new();
        while let Some(chunk) = stream.recv().await.unwrap() {
            got.extend_from_slice(&chunk);
        }
        assert_eq!(String::from_utf8(got).unwrap(), want, "bundle {bundle}");
        stream.close();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_with_a_non_friend_is_refused_before_anything_is_sent() {
    let net = common::net(31, 60).await;
    let alice = net
        .node([127, 31, 70, 1], "alice", SessionConfig::default())
        .await;
    let mut carol = net
        .node([127, 31, 71, 1], "carol", SessionConfig::default())
        .await;
    assert_eq!(
        alice.sessions.request(&carol.id(), "x").await.err(),
        Some(StreamError::UnknownFriend(carol.id()))
    );
    // A request waits for Carol: known, still no friend.
    alice
        .friends
        .add_friend(&carol.friends.address().to_string(), b"hi")
        .await
        .unwrap();
    assert_eq!(
        alice.sessions.request(&carol.id(), "x").await.err(),
        Some(StreamError::NotAFriend(carol.id()))
    );
    // Carol holds Alice's request, not yet accepted: Alice is known to her, no friend.
    let alice_id = alice.id();
    carol
        .until_friend(|e| {
            matches!(e, carrier_stream::msg::friend::FriendEvent::Request(r) if r.from == alice_id)
        })
        .await;
    assert_eq!(
        carol.sessions.request(&alice_id, "x").await.err(),
        Some(StreamError::NotAFriend(alice_id))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_session_closes_it_and_its_streams_on_the_other_side_with_the_reason() {
    let (_net, alice, bob) = common::friends(31, 80, SessionConfig::default()).await;
    let mut requests = bob.sessions.handle("").unwrap();
    let bob_id = bob.id();
    let asked = tokio::spawn({
        let sessions = alice.sessions.clone();
        async move { sessions.request(&bob_id, "game").await }
    });
    let at_bob = requests.recv().await.unwrap().accept().await.unwrap();
    let at_alice = asked.await.unwrap().unwrap();
    let mut stream = at_alice
        .add_stream(StreamKind::Audio, StreamMode::Datagram)
        .await
        .unwrap();
    let mut theirs = within("Bob's stream", at_bob.accept_stream())
        .await
        .unwrap();
    at_bob.close("game over").await.unwrap();
    assert_eq!(at_bob.state(), SessionState::Closed("game over".into()));
    assert!(matches!(
        at_bob
            .add_stream(StreamKind::Audio, StreamMode::Reliable)
            .await,
        Err(StreamError::UnknownSession(_))
    ));
    let closed = within("Alice's close", async {
        loop {
            match at_alice.next_event().await {
                Some(SessionEvent::Closed(reason)) => return reason,
                Some(_) => continue,
                None => panic!("events ended without a close"),
            }
        }
    })
    .await;
    assert_eq!(closed, "game over");
    assert_eq!(at_alice.state(), SessionState::Closed("game over".into()));
    assert_eq!(stream.state(), StreamState::Closed);
    assert_eq!(theirs.state(), StreamState::Closed);
    assert!(matches!(
        stream.send(b"x").await,
        Err(StreamError::WrongState(_))
    ));
    assert_eq!(theirs.recv().await, Ok(None));
    assert!(at_alice.next_event().await.is_none());
    assert!(alice.sessions.sessions().is_empty());
    assert!(bob.sessions.sessions().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_session_and_stream_is_reported_to_the_layers_subscribers() {
    use carrier_stream::SessionReport;

    let (_net, alice, bob) = common::friends(31, 120, SessionConfig::default()).await;
    let mut alice_reports = alice.sessions.subscribe();
    let mut bob_reports = bob.sessions.subscribe();
    let mut requests = bob.sessions.handle("").unwrap();
    let bob_id = bob.id();
    let asked = tokio::spawn({
        let sessions = alice.sessions.clone();
        async move { sessions.request(&bob_id, "files").await }
    });
    let at_bob = requests.recv().await.unwrap().accept().await.unwrap();
    let at_alice = asked.await.unwrap().unwrap();
    let session = at_alice.id();
    let mut mine = at_alice
        .add_stream(StreamKind::Text, StreamMode::Reliable)
        .await
        .unwrap();
    let mut theirs = within("Bob's stream", at_bob.accept_stream())
        .await
        .unwrap();
    mine.send(b"x").await.unwrap();
    mine.finish().unwrap();
    while theirs.recv().await.unwrap().is_some() {}
    theirs.finish().unwrap();
    while mine.recv().await.unwrap().is_some() {}
    at_alice.close("done").await.unwrap();

    // Each side's subscriber heard the session open, the stream's every state in order,
    // and the close with its reason, named by friend, session and stream.
    for (reports, peer, requester) in [
        (&mut alice_reports, bob.id(), true),
        (&mut bob_reports, alice.id(), false),
    ] {
        let mut seen = Vec::new();
        within("the reports", async {
            loop {
                let report = reports.recv().await.unwrap();
                let last = matches!(report, SessionReport::Closed { .. });
                seen.push(report);
                if last {
                    break;
                }
            }
        })
        .await;
        let stream = |state| SessionReport::Stream {
            peer,
            session,
            stream: mine.id(),
            kind: StreamKind::Text,
            mode: StreamMode::Reliable,
            state,
        };
        let expected = vec![
            SessionReport::Opened {
                peer,
                session,
                bundle: "files".into(),
                requester,
            },
            stream(StreamState::Initialized),
            stream(StreamState::TransportReady),
            stream(StreamState::Connecting),
            stream(StreamState::Connected),
            stream(StreamState::Closed),
            SessionReport::Closed {
                peer,
                session,
                reason: "done".into(),
            },
        ];
        // A race of first dials may deactivate and reactivate the session on the way.
        seen.retain(|r| {
            !matches!(
                r,
                SessionReport::Deactivated { .. } | SessionReport::Reactivated { .. }
            )
        });
        assert_eq!(seen, expected, "requester: {requester}");
    }
}
