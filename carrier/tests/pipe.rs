//! `carrier pipe`: stdin and stdout through a reliable stream of a session between two
//! daemons, as netcat: 16 MiB cross with an equal hash, and the end of stdin is passed on;
//! a pipe's session kept by a library node through its friend's daemon SIGKILLed and
//! started again, taken back by the restarted daemon's next listener.
#![allow(clippy::unwrap_used)] // Helpers outside #[test] functions unwrap too.

mod support;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use carrier::dht::BootstrapNode;
use carrier::friend::{FriendEvent, FriendsConfig};
use carrier::id::CarrierId;
use carrier::stream::{
    status, Session, SessionEvent, SessionState, StreamError, StreamKind, StreamMode, StreamState,
};
use carrier::{Carrier, Event};
use serde_json::json;
use support::{contact, seeds, Daemon, PATIENCE, PROGRAM};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

/// 16 MiB of a pattern.
fn payload() -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    (0..16 * 1024 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn pipe(data: &std::path::Path, args: &[&str]) -> tokio::process::Child {
    Command::new(PROGRAM)
        .arg("pipe")
        .args(args)
        .arg("--data")
        .arg(data)
        .env_remove("CARRIER_DATA")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipe_carries_16_mib_with_an_equal_hash_and_passes_the_end_of_stdin_on() {
    let seeds = seeds(61).await;
    let dir = tempfile::tempdir().unwrap();
    let seed = contact(&seeds[0]);
    let alice = Daemon::start(&dir.path().join("alice"), [127, 62, 1, 1], &seed).await;
    let bob = Daemon::start(&dir.path().join("bob"), [127, 62, 2, 1], &seed).await;
    let mut alice_control = alice.control().await;
    let mut bob_control = bob.control().await;
    bob_control.ok("auto_accept", json!({})).await;
    alice_control
        .ok(
            "friend_add",
            json!({ "address": bob.address, "hello": "a pipe?" }),
        )
        .await;
    alice_control.event("connected", &bob.id).await;
    bob_control.event("connected", &alice.id).await;

    // Bob listens; what arrives goes to his stdout. His stdin says "bye" and ends.
    let mut listener = pipe(&bob.data, &["--listen"]);
    let mut bob_in = listener.stdin.take().unwrap();
    bob_in.write_all(b"bye").await.unwrap();
    drop(bob_in);
    let mut bob_out = listener.stdout.take().unwrap();
    let received = tokio::spawn(async move {
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0;
        loop {
            let n = bob_out.read(&mut buf).await.unwrap();
            if n == 0 {
                return (hasher.finalize(), total);
            }
            hasher.update(&buf[..n]);
            total += n;
        }
    });

    // Alice pipes 16 MiB to Bob (the listener may not be registered yet: try again).
    let data = payload();
    let sent = blake3::hash(&data);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let (alice_out, code, stderr) = loop {
        let mut sender = pipe(&alice.data, &[&bob.id]);
        let mut alice_in = sender.stdin.take().unwrap();
        let chunk = data.clone();
        let writing = tokio::spawn(async move {
            // A refused pipe closes stdin early: a failed write is that.
            let _ = alice_in.write_all(&chunk).await;
        });
        let output = tokio::time::timeout(PATIENCE, sender.wait_with_output())
            .await
            .expect("alice's pipe ended in time")
            .unwrap();
        let _ = writing.await;
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let code = output.status.code().unwrap_or(-1);
        if code == 0 || tokio::time::Instant::now() > deadline || !stderr.contains("no handler") {
            break (output.stdout, code, stderr);
        }
    };
    assert_eq!(code, 0, "alice's pipe: {stderr}");
    assert_eq!(alice_out, b"bye", "Bob's stdin came back to Alice");
    let (got, len) = tokio::time::timeout(PATIENCE, received)
        .await
        .expect("bob's pipe ended in time")
        .unwrap();
    assert_eq!(len, data.len());
    assert_eq!(got, sent);
    let status = tokio::time::timeout(PATIENCE, listener.wait())
        .await
        .expect("bob's pipe exited")
        .unwrap();
    assert!(status.success());

    // Bob's watchers saw the session open and close, and its stream connect and close.
    bob_control.events_at_least("session", &alice.id, 2).await;
    bob_control.events_at_least("stream", &alice.id, 2).await;
    let states: Vec<(String, String)> = bob_control
        .events
        .iter()
        .filter(|e| e["event"] == "session" || e["event"] == "stream")
        .map(|e| {
            (
                e["event"].as_str().unwrap().to_string(),
                e["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let pairs: Vec<(&str, &str)> = states
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("session", "opened"),
            ("stream", "connected"),
            ("stream", "closed"),
            ("session", "closed")
        ]
    );
}

/// Reads `out` until it holds `want`, within [`PATIENCE`].
async fn read_exactly(out: &mut tokio::process::ChildStdout, want: &[u8]) {
    let mut got = vec![0u8; want.len()];
    tokio::time::timeout(PATIENCE, out.read_exact(&mut got))
        .await
        .expect("the listener printed it in time")
        .unwrap();
    assert_eq!(got, want);
}

/// Alice's next session event other than a stream.
async fn next_change(session: &Session) -> SessionEvent {
    tokio::time::timeout(PATIENCE, async {
        loop {
            match session
                .next_event()
                .await
                .expect("the session's events ended")
            {
                SessionEvent::Stream(_) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("a session event in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipe_session_survives_its_daemons_sigkill_and_restart_within_the_grace_period() {
    let seeds = seeds(63).await;
    let dir = tempfile::tempdir().unwrap();
    let seed = contact(&seeds[0]);
    let bob = Daemon::start(&dir.path().join("bob"), [127, 64, 2, 1], &seed).await;
    let mut bob_control = bob.control().await;
    bob_control.ok("auto_accept", json!({})).await;
    let bob_id: CarrierId = bob.id.parse().unwrap();

    // Alice is a library node in this process: she survives; Bob's daemon is killed.
    let (alice, mut alice_events) = Carrier::builder()
        .local(SocketAddr::from(([127, 64, 1, 1], 0)))
        .bootstrap([BootstrapNode::new(seeds[0].id(), seeds[0].local_addr())])
        .data_dir(dir.path().join("alice"))
        .friends_config(
            FriendsConfig::for_tests()
                .with_liveness(Duration::from_secs(1), Duration::from_secs(3)),
        )
        .start()
        .await
        .unwrap();
    alice
        .friends()
        .add_friend(&bob.address, b"a pipe?")
        .await
        .unwrap();
    tokio::time::timeout(PATIENCE, async {
        while let Some(event) = alice_events.recv().await {
            if matches!(event, Event::Friend(FriendEvent::Connected(id)) if id == bob_id) {
                return;
            }
        }
    })
    .await
    .expect("linked in time");

    // Bob listens; Alice's session request waits for his listener (refused until it does).
    let mut listener = pipe(&bob.data, &["--listen"]);
    let _listener_in = listener.stdin.take().unwrap();
    let mut listener_out = listener.stdout.take().unwrap();
    let session = tokio::time::timeout(PATIENCE, async {
        loop {
            match alice.sessions().request(&bob_id, "pipe").await {
                Ok(session) => return session,
                Err(StreamError::Refused { status, .. }) if status == status::NO_HANDLER => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("{e:?}"),
            }
        }
    })
    .await
    .expect("a session in time");
    let mut before = session
        .add_stream(StreamKind::Application, StreamMode::Reliable)
        .await
        .unwrap();
    before.send(b"before|").await.unwrap();
    read_exactly(&mut listener_out, b"before|").await;

    // SIGKILL: Alice's stream fails with a reason, then her session deactivates.
    bob.kill().await;
    drop(listener);
    let failure = tokio::time::timeout(PATIENCE, before.recv())
        .await
        .expect("the stream failed in time")
        .unwrap_err();
    assert!(matches!(failure, StreamError::Failed(_)), "{failure:?}");
    assert!(matches!(before.state(), StreamState::Failed(_)));
    assert!(matches!(
        next_change(&session).await,
        SessionEvent::Deactivated
    ));

    // Bob's daemon starts again on its data directory, within the grace period, and listens:
    // its listener takes the session back (a resume) and Alice's session is active again.
    let bob = Daemon::start(&dir.path().join("bob"), [127, 64, 2, 1], &seed).await;
    let mut bob_control = bob.control().await;
    let mut listener = pipe(&bob.data, &["--listen"]);
    let listener_in = listener.stdin.take().unwrap();
    let mut listener_out = listener.stdout.take().unwrap();
    loop {
        match next_change(&session).await {
            SessionEvent::Reactivated => break,
            // The restarted node's first link may lose a race of dials to a second one.
            SessionEvent::Deactivated => {}
            other => panic!("not reactivated: {other:?}"),
        }
    }
    assert_eq!(session.state(), SessionState::Active);

    // A new stream of the same session carries data to Bob's new listener, and back.
    let mut after = tokio::time::timeout(PATIENCE, async {
        loop {
            match session
                .add_stream(StreamKind::Application, StreamMode::Reliable)
                .await
            {
                Ok(stream) => return stream,
                Err(StreamError::WrongState(_) | StreamError::Failed(_)) => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("{e:?}"),
            }
        }
    })
    .await
    .expect("a new stream in time");
    after.send(b"after").await.unwrap();
    after.finish().unwrap();
    read_exactly(&mut listener_out, b"after").await;
    // Bob's stdin ends: Alice reads the end of the stream, and the listener exits.
    drop(listener_in);
    let mut rest = Vec::new();
    tokio::time::timeout(PATIENCE, listener_out.read_to_end(&mut rest))
        .await
        .expect("the listener's output ended in time")
        .unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(
        tokio::time::timeout(PATIENCE, after.recv())
            .await
            .expect("Bob's end in time")
            .unwrap(),
        None
    );
    let status = tokio::time::timeout(PATIENCE, listener.wait())
        .await
        .expect("bob's pipe exited")
        .unwrap();
    assert!(status.success());

    // Bob's watchers saw the session come back as a resume, then end with the pipe.
    let alice_id = alice.id().to_string();
    bob_control.events_at_least("session", &alice_id, 2).await;
    let states: Vec<&str> = bob_control
        .events
        .iter()
        .filter(|e| e["event"] == "session")
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["resumed", "closed"]);
    let _ = session.close("done").await;
    alice.shutdown().await;
}
