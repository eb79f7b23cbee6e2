//! `carrier pipe`: stdin and stdout through a reliable stream of a session between two
//! daemons, as netcat: 16 MiB cross with an equal hash, and the end of stdin is passed on.
#![allow(clippy::unwrap_used)] // Helpers outside #[test] functions unwrap too.

mod support;

use std::process::Stdio;

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
