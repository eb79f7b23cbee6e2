//! `carrier serve` and `carrier forward` through two daemons: a service on Bob's machine
//! (offered to Alice only) fetched by a plain TCP client through Alice's forwarding, with
//! half-close; `forwards` lists the connection and its bytes; `services`, `unserve` and
//! their refusals; the forwarding ends with its command; the `forward` events.
#![allow(clippy::unwrap_used)] // Helpers outside #[test] functions unwrap too.

mod support;

use std::net::SocketAddr;
use std::process::Stdio;

use serde_json::{json, Value};
use support::{contact, seeds, Daemon, PATIENCE, PROGRAM};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;

/// An echo service on loopback that shuts its write side once its read side ended.
async fn echo_service() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = tcp.into_split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
                let _ = write.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_is_fetched_through_two_daemons_with_a_plain_tcp_client() {
    let seeds = seeds(72).await;
    let dir = tempfile::tempdir().unwrap();
    let seed = contact(&seeds[0]);
    let alice = Daemon::start(&dir.path().join("alice"), [127, 73, 1, 1], &seed).await;
    let bob = Daemon::start(&dir.path().join("bob"), [127, 73, 2, 1], &seed).await;
    let mut alice_control = alice.control().await;
    let mut bob_control = bob.control().await;
    bob_control.ok("auto_accept", json!({})).await;
    alice_control
        .ok(
            "friend_add",
            json!({ "address": bob.address, "hello": "forward?" }),
        )
        .await;
    alice_control.event("connected", &bob.id).await;
    bob_control.event("connected", &alice.id).await;

    // Bob offers his echo service to Alice only.
    let echo = echo_service().await.to_string();
    let served = bob
        .cli_json(&["serve", "echo", &echo, "--only", &alice.id])
        .await;
    assert_eq!(served["only"], json!([alice.id]));
    let services = bob.cli_json(&["services"]).await;
    assert_eq!(
        services["services"],
        json!([{ "name": "echo", "target": echo, "only": [alice.id] }])
    );
    let (code, _, stderr) = bob.cli(&["serve", "bad name", &echo]).await;
    assert_eq!(code, 1, "{stderr}");

    // Alice forwards a local port to it, until the command is stopped.
    let mut forward = Command::new(PROGRAM)
        .args([
            "forward",
            &bob.id,
            "echo",
            "127.0.0.1:0",
            "--json",
            "--data",
        ])
        .arg(&alice.data)
        .env_remove("CARRIER_DATA")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(forward.stdout.take().unwrap()).lines();
    let opened: Value = serde_json::from_str(
        &tokio::time::timeout(PATIENCE, stdout.next_line())
            .await
            .expect("the forwarding opened in time")
            .unwrap()
            .expect("a line"),
    )
    .unwrap();
    let local: SocketAddr = opened["local"].as_str().unwrap().parse().unwrap();
    assert_ne!(local.port(), 0);

    // A plain TCP client: 256 KiB, its write side shut, the echo read to the end.
    let data: Vec<u8> = (0..256 * 1024u32).map(|i| (i % 251) as u8).collect();
    let mut tcp = TcpStream::connect(local).await.unwrap();
    let (mut read, mut write) = tcp.split();
    let mut echoed = Vec::new();
    let (written, got) = tokio::time::timeout(PATIENCE, async {
        tokio::join!(
            async {
                write.write_all(&data).await?;
                write.shutdown().await
            },
            read.read_to_end(&mut echoed)
        )
    })
    .await
    .expect("the echo in time");
    written.unwrap();
    got.unwrap();
    assert!(echoed == data, "the echo differs");
    drop(tcp);

    // A connection held open is listed with its bytes.
    let mut held = TcpStream::connect(local).await.unwrap();
    held.write_all(b"ping").await.unwrap();
    let mut back = [0u8; 4];
    held.read_exact(&mut back).await.unwrap();
    let forwards = alice_control
        .until("forwards", json!({}), |r| {
            r["forwards"][0]["connections"].as_array().map(Vec::len) == Some(1)
        })
        .await;
    let listed = &forwards["forwards"][0];
    assert_eq!(listed["friend"], json!(bob.id));
    assert_eq!(listed["service"], json!("echo"));
    assert_eq!(listed["connections"][0]["bytes_in"], json!(4));
    assert_eq!(listed["connections"][0]["bytes_out"], json!(4));
    drop(held);

    // Both daemons reported the connections.
    alice_control.events_at_least("forward", &bob.id, 2).await;
    bob_control.events_at_least("forward", &alice.id, 2).await;
    assert!(alice_control.events.iter().any(|e| e["event"] == "forward"
        && e["state"] == "closed"
        && e["side"] == "forwarding"
        && e["bytes_in"] == json!(data.len())));

    // Withdrawn, the service refuses new connections (closed at once, reported); withdrawn
    // again, it is unknown.
    bob.cli_json(&["unserve", "echo"]).await;
    assert_eq!(bob.cli_json(&["services"]).await["services"], json!([]));
    assert_eq!(
        bob_control
            .refused("unserve", json!({ "name": "echo" }))
            .await,
        "unknown_service"
    );
    let mut refused = TcpStream::connect(local).await.unwrap();
    let mut buf = [0u8; 8];
    let read = tokio::time::timeout(PATIENCE, refused.read(&mut buf))
        .await
        .expect("the refused connection closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    alice_control
        .until_event(|e| e["event"] == "forward" && e["state"] == "refused")
        .await;

    // Stopping the command ends the forwarding.
    forward.kill().await.unwrap();
    alice_control
        .until("forwards", json!({}), |r| r["forwards"] == json!([]))
        .await;
}
