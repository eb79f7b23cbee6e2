//! `carrier daemon` driven through its command line and its control socket: two daemons and a
//! bootstrap node on loopback become friends, `watch` shows each step, and every command's
//! error path answers with its exit code and what to do.
#![allow(clippy::unwrap_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use serde_json::{json, Value};
use support::{bootstrap_node, cli, Control, Daemon, Process, PATIENCE, PROGRAM};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

/// `carrier watch` on a daemon, returned once it is subscribed.
async fn watch(data: &std::path::Path) -> Process {
    let mut child = Command::new(PROGRAM)
        .arg("watch")
        .arg("--data")
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = tokio::time::timeout(PATIENCE, stderr.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.starts_with("watching"), "{first}");
    let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    Process { child, stdout }
}

/// Reads a watch's lines until one is the event `event` with `field` = `value`; that event.
async fn watched(watch: &mut Process, event: &str, field: &str, value: &str) -> Value {
    loop {
        let line: Value = serde_json::from_str(&watch.line().await).unwrap();
        if line["event"] == event && line[field] == value {
            return line;
        }
    }
}

/// Runs `carrier ARGS --data DATA` with its standard output closed at once (a reader that
/// went away, as `| head -n 1` leaves it), and checks it exits 0 without a panic.
async fn exits_quietly_with_its_reader_gone(args: &[&str], data: &std::path::Path) {
    let mut child = Command::new(PROGRAM)
        .args(args)
        .arg("--data")
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_become_friends_through_the_cli_and_watch_shows_each_step() {
    let dir = tempfile::tempdir().unwrap();
    let (_seed, seed) = bootstrap_node(&dir.path().join("seed"), [127, 40, 1, 1]).await;
    let alice = Daemon::start(&dir.path().join("alice"), [127, 40, 2, 1], &seed).await;
    let bob = Daemon::start(&dir.path().join("bob"), [127, 40, 3, 1], &seed).await;
    let mut alice_watch = watch(&alice.data).await;
    let mut bob_watch = watch(&bob.data).await;

    // `id` and `address`, for people and for scripts.
    let (code, id, _) = alice.cli(&["id"]).await;
    assert_eq!((code, id.trim()), (0, alice.id.as_str()));
    let (code, address, _) = bob.cli(&["address"]).await;
    assert_eq!((code, address.trim()), (0, bob.address.as_str()));

    // Alice asks, Bob sees the request with its hello, and accepts.
    let (code, out, err) = alice
        .cli(&["friend", "add", &bob.address, "hello", "from", "alice"])
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("friend request sent to {}", bob.id)),
        "{out}"
    );
    let request = watched(&mut bob_watch, "request", "from", &alice.id).await;
    assert_eq!(request["hello"], "hello from alice");
    let requests = bob.cli_json(&["friend", "requests"]).await;
    assert_eq!(requests["incoming"][0]["from"], alice.id.as_str());
    let outgoing = alice.cli_json(&["friend", "requests"]).await;
    assert_eq!(outgoing["outgoing"][0]["to"], bob.id.as_str());
    let (code, out, err) = bob.cli(&["friend", "accept", &alice.id]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("is a friend now"), "{out}");

    // Both see the friendship and the link.
    watched(&mut alice_watch, "added", "friend", &bob.id).await;
    watched(&mut alice_watch, "connected", "friend", &bob.id).await;
    watched(&mut bob_watch, "connected", "friend", &alice.id).await;
    let list = alice.cli_json(&["friend", "list"]).await;
    assert_eq!(list["friends"][0]["id"], bob.id.as_str());
    assert_eq!(list["friends"][0]["online"], true);
    let (code, out, _) = bob.cli(&["friend", "list"]).await;
    assert_eq!(code, 0);
    assert!(out.contains(&alice.id), "{out}");

    // A label names a friend in every command that takes one.
    let (code, _, err) = alice
        .cli(&["friend", "label", &bob.id, "Bob", "from", "work"])
        .await;
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = alice.cli(&["friend", "list"]).await;
    assert!(out.contains("[Bob from work]"), "{out}");

    // Presence and info changes reach the friend's watch.
    assert_eq!(
        bob.cli_json(&["presence", "away"]).await["presence"],
        "away"
    );
    let presence = watched(&mut alice_watch, "presence", "friend", &bob.id).await;
    assert_eq!(presence["presence"], "away");
    let info = bob
        .cli_json(&["info", "--name", "Bob", "--description", "back soon"])
        .await;
    assert_eq!(info["info"]["name"], "Bob");
    let changed = watched(&mut alice_watch, "info", "friend", &bob.id).await;
    assert_eq!(changed["info"]["name"], "Bob");
    assert_eq!(changed["info"]["description"], "back soon");
    assert_eq!(bob.cli_json(&["info"]).await["info"]["name"], "Bob");

    // A message, its receipt, the inbox and the ack.
    let sent = alice.cli_json(&["send", &bob.id, "hello", "bob"]).await;
    let message = sent["message"].as_str().unwrap().to_string();
    let raised = watched(&mut bob_watch, "message", "message", &message).await;
    assert_eq!(
        (raised["from"].as_str(), raised["text"].as_str()),
        (Some(alice.id.as_str()), Some("hello bob"))
    );
    watched(&mut alice_watch, "delivered", "message", &message).await;
    let inbox = bob.cli_json(&["inbox"]).await;
    assert_eq!(inbox["messages"][0]["message"], message.as_str());
    let (code, out, err) = bob.cli(&["ack", &message]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("acked"), "{out}");
    assert_eq!(bob.cli_json(&["inbox"]).await["messages"], json!([]));
    let (kind, _) = refused(&bob, &["ack", &message]).await;
    assert_eq!(kind, "unknown_message", "acked already");
    let file = dir.path().join("note.txt");
    std::fs::write(&file, "from a file").unwrap();
    let sent = bob
        .cli_json(&["send", &alice.id, "--file", file.to_str().unwrap()])
        .await;
    let raised = watched(
        &mut alice_watch,
        "message",
        "message",
        sent["message"].as_str().unwrap(),
    )
    .await;
    assert_eq!(raised["text"], "from a file");

    // Status: online, with contacts and a friend online; the change to online was an event.
    let mut control = alice.control().await;
    control.ok("id", json!({})).await;
    assert!(
        control
            .events
            .iter()
            .any(|e| e["event"] == "connection" && e["status"] == "online"),
        "{:?}",
        control.events
    );
    let status = alice.cli_json(&["status"]).await;
    assert_eq!(status["connection"], "online", "{status}");
    assert!(status["dht_contacts"].as_u64().unwrap() > 0, "{status}");
    assert_eq!(status["friends_online"], 1, "{status}");
    let (code, out, _) = alice.cli(&["status"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("friends online: 1 of 1"), "{out}");

    // A new nospam is a new address for the same ID.
    let before = alice.cli_json(&["nospam"]).await;
    assert_eq!(before["address"], alice.address.as_str());
    let after = alice.cli_json(&["nospam", "--rotate"]).await;
    assert_ne!(after["address"], before["address"]);
    assert_eq!(
        alice.cli_json(&["address"]).await["address"],
        after["address"]
    );

    // `stop` returns once the daemon is gone; Bob's watch sees Alice go.
    let (code, _, err) = alice.cli(&["stop"]).await;
    assert_eq!(code, 0, "{err}");
    watched(&mut bob_watch, "disconnected", "friend", &alice.id).await;
    let (code, _, err) = alice.cli(&["id"]).await;
    assert_eq!(code, 3, "{err}");
    bob.stop().await;
}

/// Runs a command that the node must refuse: the refusal's kind and the stderr.
async fn refused(daemon: &Daemon, args: &[&str]) -> (String, String) {
    let mut with_json = args.to_vec();
    with_json.push("--json");
    let (code, out, err) = daemon.cli(&with_json).await;
    assert_eq!(code, 1, "{args:?}: {out}{err}");
    let reply: Value = serde_json::from_str(out.trim()).unwrap();
    (reply["error"]["kind"].as_str().unwrap().to_string(), err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_command_refuses_with_its_exit_code_and_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();

    // No daemon: exit 3 and how to start one; no directory at all: usage.
    let nowhere = dir.path().join("nowhere");
    let (code, _, err) = cli(&nowhere, &["id"]).await;
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains(&format!("no daemon on {}", nowhere.display()))
            && err.contains("start one with `carrier daemon --data"),
        "{err}"
    );
    let output = Command::new(PROGRAM)
        .arg("id")
        .env_remove("CARRIER_DATA")
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("CARRIER_DATA"));
    // CARRIER_DATA names the node too.
    let output = Command::new(PROGRAM)
        .arg("id")
        .env("CARRIER_DATA", &nowhere)
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    let (code, _, _) = cli(&nowhere, &["friend", "add"]).await;
    assert_eq!(code, 2, "missing arguments are a usage error");

    // A data directory too deep for a Unix socket's path.
    let deep = dir.path().join("d".repeat(110));
    let (code, _, err) = cli(&deep, &["daemon", "--listen", "127.40.9.1:0"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("over the limit of 107 bytes"), "{err}");

    let (_seed, seed) = bootstrap_node(&dir.path().join("seed"), [127, 40, 4, 1]).await;
    let alice = Daemon::start(&dir.path().join("alice"), [127, 40, 5, 1], &seed).await;
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&alice.data), 0o700);
    assert_eq!(mode(&alice.data.join("control.sock")), 0o600);

    // A second daemon on the same directory is refused, and the first keeps serving.
    let (code, _, err) = cli(&alice.data, &["daemon", "--listen", "127.40.5.1:0"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("another daemon is running on"), "{err}");
    assert_eq!(alice.cli_json(&["id"]).await["id"], alice.id.as_str());

    // The node's refusals: exit 1, a kind for scripts, what to do for people.
    let (kind, err) = refused(&alice, &["friend", "add", "not-an-address", "hi"]).await;
    assert_eq!(kind, "invalid_address");
    assert!(err.contains("`carrier address`"), "{err}");
    let (kind, err) = refused(&alice, &["friend", "remove", "nobody"]).await;
    assert_eq!(kind, "unknown_friend");
    assert!(err.contains("see `carrier friend list`"), "{err}");
    let (kind, _) = refused(&alice, &["friend", "accept", "nobody"]).await;
    assert_eq!(kind, "unknown_friend");
    let stranger = carrier::id::Keypair::from_seed(&[9; 32]).id().to_string();
    let stranger = stranger.as_str();
    let (kind, _) = refused(&alice, &["friend", "label", stranger, "x"]).await;
    assert_eq!(kind, "unknown_friend", "a valid ID that is no friend");
    let (kind, _) = refused(&alice, &["friend", "refuse", stranger]).await;
    assert_eq!(kind, "unknown_friend", "no request from that ID");
    let (kind, _) = refused(&alice, &["send", stranger, "hi"]).await;
    assert_eq!(kind, "unknown_friend", "a message to a stranger");
    let (kind, _) = refused(&alice, &["ack", "not-an-id"]).await;
    assert_eq!(kind, "bad_arguments");

    // Blocking and unblocking any ID.
    let (code, out, err) = alice.cli(&["friend", "block", stranger]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("blocked {stranger}")), "{out}");
    let requests = alice.cli_json(&["friend", "requests"]).await;
    assert_eq!(requests["blocked"], json!([stranger]));
    let (code, out, _) = alice.cli(&["friend", "unblock", stranger]).await;
    assert_eq!(code, 0);
    assert!(out.contains(&format!("unblocked {stranger}")), "{out}");
    let requests = alice.cli_json(&["friend", "requests"]).await;
    assert_eq!(requests["blocked"], json!([]));

    let own = alice.address.clone();
    let (code, out, _) = alice.cli(&["friend", "add", &own, "me", "--json"]).await;
    assert_eq!(code, 1);
    assert!(out.contains("\"yourself\""), "{out}");
    let long_hello = "h".repeat(1025);
    let bob_address = {
        // A real address of someone else: Bob's key, never started.
        let keypair = carrier::id::Keypair::generate();
        carrier::id::Address::new(keypair.id(), carrier::id::Nospam(7)).to_string()
    };
    let (code, out, _) = alice
        .cli(&["friend", "add", &bob_address, &long_hello, "--json"])
        .await;
    assert_eq!(code, 1);
    assert!(out.contains("\"hello_too_long\""), "{out}");

    // The control socket: bad lines get error replies, and the connection goes on.
    let mut raw = Control::connect(&alice.data).await;
    raw.writer.write_all(b"{not json\n").await.unwrap();
    let reply = raw.next().await.unwrap();
    assert_eq!(reply["error"]["kind"], "malformed", "{reply}");
    assert_eq!(raw.refused("fly", json!({})).await, "unknown_request");
    assert_eq!(
        raw.refused("friend_add", json!({ "address": 5 })).await,
        "bad_arguments"
    );
    // A refusal repeats a bounded part of what it refuses: a friend named by 100,000 bytes
    // gets a reply of a few hundred, never one over the line cap the client would refuse.
    let long_name = "n".repeat(100_000);
    for request in ["friend_remove", "friend_accept", "friend_unblock"] {
        let reply = raw.send(request, json!({ "friend": long_name })).await;
        assert_eq!(reply["error"]["kind"], "unknown_friend", "{request}");
        assert!(reply.to_string().len() < 1024, "{request}: {reply}");
    }
    assert_eq!(raw.ok("id", json!({})).await["id"], alice.id.as_str());

    // A line over 1 MiB: an error reply, and the connection is closed.
    let mut raw = Control::connect(&alice.data).await;
    let mut huge = vec![b'x'; (1 << 20) + 10];
    huge.push(b'\n');
    // The daemon may close before reading it all: the write may fail.
    let _ = raw.writer.write_all(&huge).await;
    let reply = raw.next().await.unwrap();
    assert_eq!(reply["error"]["kind"], "too_long", "{reply}");
    assert!(raw.next().await.is_none(), "closed after an oversized line");

    // Half a line, then the client's end: an error reply, and the connection is closed.
    let mut raw = Control::connect(&alice.data).await;
    raw.writer.write_all(b"{\"id\":1,\"requ").await.unwrap();
    raw.writer.shutdown().await.unwrap();
    let reply = raw.next().await.unwrap();
    assert_eq!(reply["error"]["kind"], "truncated", "{reply}");
    assert!(raw.next().await.is_none());

    // `carrier watch` whose reader went away (`carrier watch | head -n 1`) ends quietly,
    // without a panic: its replay holds at least the `connection` event.
    let mut replay = alice.control().await;
    let event = replay.next().await.unwrap();
    assert!(event.get("event").is_some(), "{event}");
    exits_quietly_with_its_reader_gone(&["watch", "--replay"], &alice.data).await;
    // So does a one-shot command (`carrier status | true`): the request was carried out.
    exits_quietly_with_its_reader_gone(&["status"], &alice.data).await;

    // A client that floods requests and reads no reply holds up only itself: the daemon
    // stops reading it once its queue and the socket are full, and serves the others.
    let mut flood = Control::connect(&alice.data).await;
    let flooding = tokio::spawn(async move {
        let requests = "{\"id\":1,\"request\":\"id\"}\n".repeat(300_000);
        let _ = flood.writer.write_all(requests.as_bytes()).await;
        flood
    });
    for _ in 0..3 {
        let mut other = Control::connect(&alice.data).await;
        assert_eq!(other.ok("id", json!({})).await["id"], alice.id.as_str());
    }
    assert_eq!(alice.cli_json(&["id"]).await["id"], alice.id.as_str());
    assert!(
        !flooding.is_finished(),
        "the daemon read 7 MB of requests nobody reads replies to"
    );
    flooding.abort();

    // Connections are capped (128, server::MAX_CONNECTIONS; some are open already): one
    // more is told `busy` and closed, and a slot freed serves again.
    async fn id_or_busy(data: &std::path::Path) -> (Control, Value) {
        let mut control = Control::connect(data).await;
        // The daemon may have closed it already: the reply tells.
        let _ = control
            .writer
            .write_all(b"{\"id\":1,\"request\":\"id\"}\n")
            .await;
        let reply = control.next().await.unwrap();
        (control, reply)
    }
    let mut held = Vec::new();
    let mut over = loop {
        assert!(held.len() <= 128, "no connection was refused");
        let (control, reply) = id_or_busy(&alice.data).await;
        if reply["ok"] == true {
            held.push(control);
            continue;
        }
        assert_eq!(reply["error"]["kind"], "busy", "{reply}");
        break control;
    };
    assert!(over.next().await.is_none(), "closed when over the cap");
    drop(held);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while id_or_busy(&alice.data).await.1["ok"] != true {
        assert!(tokio::time::Instant::now() < deadline, "no slot was freed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // The daemon still serves the next client.
    let mut next = Control::connect(&alice.data).await;
    assert_eq!(
        next.ok("address", json!({})).await["address"],
        alice.address.as_str()
    );
    assert_eq!(alice.cli_json(&["status"]).await["id"], alice.id.as_str());
    alice.stop().await;
}
