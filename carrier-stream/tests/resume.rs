//! A session across its friend's restart: the node that kept it asks the restarted friend to
//! resume it (same ID, bundle and roles); the friend's handler takes it as a resume, and the
//! session carries new streams both ways, or the handler refuses and the session closes with
//! its reason; a friend that comes back after the grace period finds it closed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use carrier_stream::{
    Session, SessionConfig, SessionEvent, SessionState, Stream, StreamError, StreamKind,
    StreamMode, StreamState,
};
use common::{session, within, Node};

/// The session's next event other than a stream.
async fn next_change(session: &Session) -> SessionEvent {
    within("a session event", async {
        loop {
            match session.next_event().await.expect("events ended") {
                SessionEvent::Stream(_) => continue,
                other => return other,
            }
        }
    })
    .await
}

/// Skips `Deactivated` and `Reactivated` (a restarted node's first link may lose a race of
/// dials to a second one) until another change, or until `Reactivated` if `until_active`.
async fn settle(session: &Session, until_active: bool) -> SessionEvent {
    loop {
        match next_change(session).await {
            SessionEvent::Reactivated if until_active => return SessionEvent::Reactivated,
            SessionEvent::Deactivated | SessionEvent::Reactivated => {}
            other => return other,
        }
    }
}

/// Everything the stream carries until its end.
async fn read_all(stream: &mut Stream) -> Result<Vec<u8>, StreamError> {
    let mut got = Vec::new();
    while let Some(chunk) = stream.recv().await? {
        got.extend_from_slice(&chunk);
    }
    Ok(got)
}

/// `from` adds a reliable stream, sends `data` and finishes; `to` reads it all. A stream on a
/// link that is closed a moment later as the loser of a race of dials fails as any stream
/// whose link closes (decision 86): then both try again, within the test's patience. The
/// stream IDs that carried it, at `from` and at `to`.
async fn carry(from: &Session, to: &Session, data: &[u8]) -> (u32, u32) {
    within("a stream carrying the data", async {
        loop {
            let sent = async {
                let mut stream = from
                    .add_stream(StreamKind::Application, StreamMode::Reliable)
                    .await?;
                stream.send(data).await?;
                stream.finish()?;
                Ok::<_, StreamError>(stream)
            }
            .await;
            let Ok(mut stream) = sent else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let mut theirs = to.accept_stream().await.expect("the session closed");
            assert_eq!(theirs.id(), stream.id(), "one stream, one ID on both sides");
            match read_all(&mut theirs).await {
                Ok(got) => {
                    assert_eq!(got, data);
                    // Held until read (dropping it would close it): the sender reads the
                    // receiver's end.
                    theirs.finish().unwrap();
                    assert_eq!(read_all(&mut stream).await.unwrap(), b"");
                    return (stream.id(), theirs.id());
                }
                Err(_) => continue,
            }
        }
    })
    .await
}

/// A stream each way before the restart; Bob stops with his ends held (they go with his
/// node); Alice's stream fails and her session deactivates.
async fn restart_bob(
    net: &common::Net,
    bob: Node,
    at_alice: &Session,
    at_bob: Session,
    config: SessionConfig,
) -> Node {
    carry(at_alice, &at_bob, b"before, from Alice").await;
    carry(&at_bob, at_alice, b"before, from Bob").await;
    let mut open = at_alice
        .add_stream(StreamKind::Application, StreamMode::Reliable)
        .await
        .unwrap();
    let theirs = within("Bob's stream", at_bob.accept_stream())
        .await
        .unwrap();
    let held = (theirs, at_bob);
    let (dir, bind) = bob.stop().await;
    drop(held);

    let failure = within("the read fails", open.recv()).await.unwrap_err();
    assert!(matches!(failure, StreamError::Failed(_)), "{failure:?}");
    assert!(matches!(open.state(), StreamState::Failed(_)));
    assert!(matches!(
        next_change(at_alice).await,
        SessionEvent::Deactivated
    ));
    net.start(dir, bind, config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_survives_its_friends_restart_within_the_grace_period() {
    let (net, alice, bob) = common::friends(39, 0, SessionConfig::default()).await;
    let (at_alice, at_bob) = session(&alice, &bob).await;
    let id = at_alice.id();
    let bob = restart_bob(&net, bob, &at_alice, at_bob, SessionConfig::default()).await;

    // Bob's node forgot the session; Alice's asks it back, and Bob's handler takes it as a
    // resume: the same session, Bob the acceptor as before.
    let mut requests = bob.sessions.handle("").unwrap();
    let request = within("the resume", requests.recv()).await.unwrap();
    assert!(request.is_resume());
    assert_eq!(request.bundle(), "test");
    assert_eq!(request.peer(), alice.id());
    let at_bob = request.accept().await.unwrap();
    assert_eq!(at_bob.id(), id);
    assert!(!at_bob.is_requester());
    assert!(matches!(
        settle(&at_alice, true).await,
        SessionEvent::Reactivated
    ));
    assert_eq!(alice.sessions.sessions(), [(bob.id(), id)]);

    // New streams both ways, data checked; Bob's IDs keep his parity and go on past the
    // stream of his Alice had seen (ID 1).
    let (from_alice, _) = carry(&at_alice, &at_bob, b"after, from Alice").await;
    assert_eq!(from_alice % 2, 0);
    let (from_bob, _) = carry(&at_bob, &at_alice, b"after, from Bob").await;
    assert_eq!(from_bob % 2, 1);
    assert!(from_bob > 1, "stream {from_bob} reuses an ID Alice saw");
    assert_eq!(at_alice.state(), SessionState::Active);
    assert_eq!(at_bob.state(), SessionState::Active);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_friend_that_refuses_the_resume_closes_the_session_with_its_reason() {
    let (net, alice, bob) = common::friends(39, 20, SessionConfig::default()).await;
    let (at_alice, at_bob) = session(&alice, &bob).await;
    let bob = restart_bob(&net, bob, &at_alice, at_bob, SessionConfig::default()).await;

    let mut requests = bob.sessions.handle("").unwrap();
    let request = within("the resume", requests.recv()).await.unwrap();
    assert!(request.is_resume());
    request.refuse(42, "not after a restart").await.unwrap();
    match settle(&at_alice, false).await {
        SessionEvent::Closed(reason) => {
            assert!(reason.contains("not after a restart"), "{reason}");
            assert!(reason.contains("42"), "{reason}");
        }
        other => panic!("not closed: {other:?}"),
    }
    assert!(matches!(at_alice.state(), SessionState::Closed(_)));
    assert!(alice.sessions.sessions().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_friend_back_after_the_grace_period_finds_the_session_closed() {
    let config = SessionConfig::default().with_grace_period(Duration::from_secs(1));
    let (net, mut alice, bob) = common::friends(39, 40, config.clone()).await;
    let (at_alice, at_bob) = session(&alice, &bob).await;
    let bob_id = bob.id();
    let (dir, bind) = bob.stop().await;
    drop(at_bob);
    assert!(matches!(
        next_change(&at_alice).await,
        SessionEvent::Deactivated
    ));
    match next_change(&at_alice).await {
        SessionEvent::Closed(reason) => assert!(reason.contains("grace period"), "{reason}"),
        other => panic!("not closed: {other:?}"),
    }

    // Bob comes back and links: nothing revives the session, and a new one opens as usual.
    let bob = net.start(dir, bind, config).await;
    let mut requests = bob.sessions.handle("").unwrap();
    alice.linked(bob_id).await;
    assert!(matches!(
        at_alice
            .add_stream(StreamKind::Application, StreamMode::Reliable)
            .await,
        Err(StreamError::UnknownSession(_))
    ));
    let asked = tokio::spawn({
        let sessions = alice.sessions.clone();
        async move { sessions.request(&bob_id, "again").await }
    });
    let request = within("a new request", requests.recv()).await.unwrap();
    assert!(!request.is_resume(), "the old session came back");
    assert_eq!(request.bundle(), "again");
    let _at_bob = request.accept().await.unwrap();
    let again = asked.await.unwrap().unwrap();
    assert_ne!(again.id(), at_alice.id());
}
