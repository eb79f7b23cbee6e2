//! A session when its friend's link goes: open streams fail with a reason, the session
//! deactivates, and it takes new streams again when the link returns within the grace
//! period; a friend that never returns closes it when the grace period ends (a friend that
//! restarted: `tests/resume.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use carrier_stream::msg::friend::close;
use carrier_stream::{
    Session, SessionConfig, SessionEvent, SessionState, Stream, StreamError, StreamKind,
    StreamMode, StreamState,
};
use common::{session, within};

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

/// How a session came through its link's break, once it is active again: deactivated and
/// then reactivated (true) if its friend had no live link for a moment, which is what
/// usually happens; untouched (false) if the friend's new link came up before this side saw
/// the old one close (decision 97: a session deactivates only when its friend has no live
/// link), a race of the redial that a loaded machine sometimes wins.
async fn came_through(session: &Session) -> bool {
    within("the session active again", async {
        let mut deactivated = false;
        loop {
            let event = tokio::time::timeout(QUIET, session.next_event()).await;
            match event {
                Ok(Some(SessionEvent::Stream(_))) => continue,
                Ok(Some(SessionEvent::Deactivated)) if !deactivated => deactivated = true,
                Ok(Some(SessionEvent::Reactivated)) if deactivated => return true,
                Ok(other) => panic!("unexpected {other:?} (deactivated: {deactivated})"),
                Err(_) if !deactivated && session.state() == SessionState::Active => return false,
                Err(_) => continue,
            }
        }
    })
    .await
}

/// How long a session that was not deactivated must stay quiet and active to count as
/// untouched by a link's break.
const QUIET: std::time::Duration = std::time::Duration::from_millis(500);

/// Every state the stream reported, until it ended.
async fn states(stream: &mut Stream) -> Vec<StreamState> {
    within("the stream's end", async {
        let mut seen = Vec::new();
        while let Some(state) = stream.next_state().await {
            seen.push(state);
        }
        seen
    })
    .await
}

fn failed_on_link_loss(seen: &[StreamState]) {
    let [StreamState::Initialized, StreamState::TransportReady, StreamState::Connecting, StreamState::Connected, StreamState::Deactivated, StreamState::Failed(reason)] =
        seen
    else {
        panic!("states out of order: {seen:?}");
    };
    assert!(
        reason.contains("link"),
        "a reason naming the link: {reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_link_breaks_streams_fail_and_the_session_is_usable_again_once_it_returns() {
    let (_net, alice, bob) = common::friends(34, 0, SessionConfig::default()).await;
    let (at_alice, at_bob) = session(&alice, &bob).await;
    let mut reliable = at_alice
        .add_stream(StreamKind::Application, StreamMode::Reliable)
        .await
        .unwrap();
    let mut datagrams = at_alice
        .add_stream(StreamKind::Audio, StreamMode::Datagram)
        .await
        .unwrap();
    let mut reliable_at_bob = within("Bob's stream", at_bob.accept_stream())
        .await
        .unwrap();
    let _datagrams_at_bob = within("Bob's stream", at_bob.accept_stream())
        .await
        .unwrap();
    reliable.send(b"before").await.unwrap();

    // The link goes silent and is dropped; the friend layer dials again.
    alice
        .friends
        .link(&bob.id())
        .unwrap()
        .close(close::SILENT, b"a test cuts the link");

    // A read in progress fails with a reason, never a silent end.
    let mut before = Vec::new();
    let failure = within("Bob's read fails", async {
        loop {
            match reliable_at_bob.recv().await {
                Ok(Some(chunk)) => before.extend_from_slice(&chunk),
                Ok(None) => panic!("a silent end"),
                Err(error) => return error,
            }
        }
    })
    .await;
    assert!(matches!(failure, StreamError::Failed(_)), "{failure:?}");
    failed_on_link_loss(&states(&mut reliable).await);
    failed_on_link_loss(&states(&mut datagrams).await);
    failed_on_link_loss(&states(&mut reliable_at_bob).await);
    assert!(matches!(
        reliable.send(b"after").await,
        Err(StreamError::Failed(_))
    ));

    for session in [&at_alice, &at_bob] {
        came_through(session).await;
        assert_eq!(session.state(), SessionState::Active);
    }
    // The same session takes a new stream on the new link. Both nodes redial at once after
    // the break, so the link that came back may itself be closed as the loser of that race a
    // moment later (decision 86): a stream on it fails, as any stream whose link closes does,
    // and the application opens another. Bob takes every stream until one carries it all.
    let carried = tokio::spawn(async move {
        while let Some(mut stream) = at_bob.accept_stream().await {
            let mut got = Vec::new();
            loop {
                match stream.recv().await {
                    Ok(Some(chunk)) => got.extend_from_slice(&chunk),
                    Ok(None) if got == b"after" => return got,
                    _ => break,
                }
            }
        }
        Vec::new()
    });
    within("a stream on the new link", async {
        loop {
            let sent = async {
                let mut again = at_alice
                    .add_stream(StreamKind::Application, StreamMode::Reliable)
                    .await?;
                again.send(b"after").await?;
                again.finish()?;
                Ok::<_, StreamError>(again)
            }
            .await;
            match sent {
                // Held until Bob has read it (dropping it would close it).
                Ok(_again) if carried_within(&carried).await => return,
                Ok(_) | Err(StreamError::WrongState(_) | StreamError::Failed(_)) => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("{e:?}"),
            }
        }
    })
    .await;
    assert_eq!(carried.await.unwrap(), b"after");
}

/// Whether Bob's reader finished within a moment.
async fn carried_within(carried: &tokio::task::JoinHandle<Vec<u8>>) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < deadline {
        if carried.is_finished() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_link_does_not_return_within_the_grace_period_closes() {
    let config = SessionConfig::default().with_grace_period(Duration::from_secs(1));
    let (_net, alice, bob) = common::friends(34, 40, config).await;
    let (at_alice, at_bob) = session(&alice, &bob).await;
    let _ = bob.stop().await;
    drop(at_bob);
    assert!(matches!(
        next_change(&at_alice).await,
        SessionEvent::Deactivated
    ));
    match next_change(&at_alice).await {
        SessionEvent::Closed(reason) => assert!(reason.contains("grace period"), "{reason}"),
        other => panic!("not closed: {other:?}"),
    }
    assert!(alice.sessions.sessions().is_empty());
}

/// A race of dials replaces the link under a session: the stream on the link closed fails
/// (a QUIC stream cannot move to another connection), but the session stays active on both
/// sides, with no `Deactivated` in between, and takes a new stream on the link kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_replaced_in_a_race_of_dials_leaves_the_session_active() {
    let (_net, alice, bob) = common::friends(34, 60, SessionConfig::default()).await;
    let (at_alice, at_bob) = session(&alice, &bob).await;
    let mut stream = at_alice
        .add_stream(StreamKind::Application, StreamMode::Reliable)
        .await
        .unwrap();
    let _theirs = within("Bob's stream", at_bob.accept_stream())
        .await
        .unwrap();
    // A dial long enough after the link held (the tie-break's race window, 5 s) replaces it
    // on both sides, closing the old one as a duplicate.
    let old = alice.friends.link(&bob.id()).unwrap();
    tokio::time::sleep(Duration::from_millis(5200)).await;
    let new = alice.friends.dial_friend(&bob.id()).await.unwrap();
    let closed = within("the old link closes", old.connection().closed()).await;
    assert!(
        matches!(&closed, carrier_stream::msg::friend::quinn::ConnectionError::ApplicationClosed(c) if c.error_code == close::DUPLICATE)
            || matches!(
                closed,
                carrier_stream::msg::friend::quinn::ConnectionError::LocallyClosed
            ),
        "{closed:?}"
    );
    assert!(new.connection().close_reason().is_none());

    // The stream on the old link failed with a reason.
    let states = states(&mut stream).await;
    assert!(
        matches!(states.last(), Some(StreamState::Failed(_))),
        "{states:?}"
    );
    // The session takes a new stream on the new link at once, and never deactivated.
    let mut again = at_alice
        .add_stream(StreamKind::Application, StreamMode::Reliable)
        .await
        .unwrap();
    let mut again_at_bob = within("Bob's new stream", at_bob.accept_stream())
        .await
        .unwrap();
    again.send(b"still here").await.unwrap();
    again.finish().unwrap();
    let mut got = Vec::new();
    while let Some(chunk) = within("the data", again_at_bob.recv()).await.unwrap() {
        got.extend_from_slice(&chunk);
    }
    assert_eq!(got, b"still here");
    for session in [&at_alice, &at_bob] {
        assert_eq!(session.state(), SessionState::Active);
        let event = tokio::time::timeout(Duration::from_millis(300), next_change(session)).await;
        assert!(event.is_err(), "no deactivation: {event:?}");
    }
}
