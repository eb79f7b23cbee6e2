//! Messages through `carrier daemon`: the client commands and the control socket, and the
//! chaos case: 1000 messages while either side is SIGKILLed at random, every message handled
//! exactly once by a script that acks what it handled.
#![allow(clippy::unwrap_used)] // Helpers outside #[test] functions unwrap too.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use support::{contact, seeds, Control, Daemon, PATIENCE};

/// Alice and Bob as daemons on 127.`subnet`.{1,2}.1, friends, both watching.
async fn friends(seed: &str, dir: &Path, subnet: u8) -> (Side, Side) {
    let mut alice = Side::start(dir.join("alice"), [127, subnet, 1, 1], seed).await;
    let mut bob = Side::start(dir.join("bob"), [127, subnet, 2, 1], seed).await;
    bob.control.ok("auto_accept", json!({})).await;
    let bob_address = bob.daemon().address.clone();
    alice
        .control
        .ok(
            "friend_add",
            json!({ "address": bob_address, "hello": "it is Alice" }),
        )
        .await;
    let (alice_id, bob_id) = (alice.id.clone(), bob.id.clone());
    alice.control.event("added", &bob_id).await;
    alice.control.event("connected", &bob_id).await;
    bob.control.event("connected", &alice_id).await;
    (alice, bob)
}

/// A daemon that may be killed and started again on its data directory.
struct Side {
    dir: PathBuf,
    ip: [u8; 4],
    seed: String,
    daemon: Option<Daemon>,
    control: Control,
    id: String,
}

impl Side {
    async fn start(dir: PathBuf, ip: [u8; 4], seed: &str) -> Side {
        let daemon = Daemon::start(&dir, ip, seed).await;
        let control = daemon.control().await;
        Side {
            id: daemon.id.clone(),
            dir,
            ip,
            seed: seed.to_string(),
            daemon: Some(daemon),
            control,
        }
    }

    fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().unwrap()
    }

    async fn kill(&mut self) {
        self.daemon.take().unwrap().kill().await;
    }

    /// Starts it again on its directory; the new control connection replays the events
    /// since the start (the messages raised again among them).
    async fn restart(&mut self) {
        let daemon = Daemon::start(&self.dir, self.ip, &self.seed).await;
        assert_eq!(daemon.id, self.id, "the same node");
        self.control = daemon.control().await;
        self.daemon = Some(daemon);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_from_the_command_line_are_listed_until_acked_and_misuse_is_refused() {
    let seeds = seeds(33).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut alice, mut bob) = friends(&contact(&seeds[0]), dir.path(), 34).await;
    let (a_id, b_id) = (alice.id.clone(), bob.id.clone());

    // A text, and a file of bytes that are not UTF-8.
    let sent = alice
        .daemon()
        .cli_json(&["send", &b_id, "hello", "Bob"])
        .await;
    assert_eq!(sent["friend"], json!(b_id));
    assert_eq!(sent["size"], json!(9));
    let file = dir.path().join("bytes.bin");
    std::fs::write(&file, [0xff, 0x00, 0x41]).unwrap();
    let binary = alice
        .daemon()
        .cli_json(&["send", &b_id, "--file", file.to_str().unwrap()])
        .await;
    let (text_id, binary_id) = (
        sent["id"].as_str().unwrap().to_string(),
        binary["id"].as_str().unwrap().to_string(),
    );
    bob.control.events_at_least("message", &a_id, 2).await;
    let messages: Vec<&Value> = bob
        .control
        .events
        .iter()
        .filter(|e| e["event"] == "message")
        .collect();
    assert_eq!(messages[0]["id"], json!(text_id));
    assert_eq!(messages[0]["text"], json!("hello Bob"));
    assert_eq!(messages[1]["hex"], json!("ff0041"));
    assert_eq!(messages[1]["size"], json!(3));

    // Both wait in the inbox until acked; the sender hears they were delivered.
    let inbox = bob.daemon().cli_json(&["inbox"]).await;
    let listed: Vec<&str> = inbox["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [text_id.as_str(), binary_id.as_str()]);
    let (code, human, _) = bob.daemon().cli(&["inbox"]).await;
    assert_eq!(code, 0);
    assert!(
        human.contains("hello Bob") && human.contains("binary"),
        "{human}"
    );
    bob.daemon().cli_json(&["ack", &text_id]).await;
    let inbox = bob.daemon().cli_json(&["inbox"]).await;
    assert_eq!(inbox["messages"].as_array().unwrap().len(), 1);
    alice.control.events_at_least("delivered", &b_id, 2).await;

    // Misuse, each its own kind.
    let refused = |reply: (i32, String, String)| -> String {
        assert_eq!(reply.0, 1, "{reply:?}");
        let value: Value = serde_json::from_str(reply.1.trim()).unwrap();
        value["error"]["kind"].as_str().unwrap().to_string()
    };
    assert_eq!(
        refused(bob.daemon().cli(&["ack", &text_id, "--json"]).await),
        "unknown_message",
        "acked twice"
    );
    assert_eq!(
        refused(bob.daemon().cli(&["ack", "not-an-id", "--json"]).await),
        "bad_arguments"
    );
    assert_eq!(
        refused(alice.daemon().cli(&["send", &b_id, "", "--json"]).await),
        "empty_message"
    );
    let stranger = carrier::id::Keypair::from_seed(&[7; 32]).id().to_string();
    assert_eq!(
        refused(
            alice
                .daemon()
                .cli(&["send", &stranger, "hi", "--json"])
                .await
        ),
        "unknown_friend"
    );
    let big = dir.path().join("big.bin");
    std::fs::write(&big, vec![1u8; 5 * 1024 * 1024 + 1]).unwrap();
    assert_eq!(
        refused(
            alice
                .daemon()
                .cli(&["send", &b_id, "--file", big.to_str().unwrap(), "--json"])
                .await
        ),
        "message_too_large"
    );
    let missing = dir.path().join("missing.bin");
    assert_eq!(
        refused(
            alice
                .daemon()
                .cli(&["send", &b_id, "--file", missing.to_str().unwrap(), "--json"])
                .await
        ),
        "unreadable"
    );
    let (code, _, stderr) = alice.daemon().cli(&["send", &b_id]).await;
    assert_eq!(code, 2, "no text and no file is a usage error: {stderr}");

    alice.daemon.take().unwrap().stop().await;
    bob.daemon.take().unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invites_from_the_command_line_are_confirmed_refused_and_misuse_is_refused() {
    let seeds = seeds(37).await;
    let dir = tempfile::tempdir().unwrap();
    let (alice, mut bob) = friends(&contact(&seeds[0]), dir.path(), 38).await;
    let (alice_data, b_id) = (alice.daemon().data.clone(), bob.id.clone());
    let refused = |reply: (i32, String, String)| -> String {
        assert_eq!(reply.0, 1, "{reply:?}");
        let value: Value = serde_json::from_str(reply.1.trim()).unwrap();
        value["error"]["kind"].as_str().unwrap().to_string()
    };

    // Nobody on Bob's node takes `chat` yet: refused at once.
    assert_eq!(
        refused(
            alice
                .daemon()
                .cli(&["invite", &b_id, "chat", "hi", "--json"])
                .await
        ),
        "unknown_extension"
    );

    // Bob takes `chat`; Alice's invite waits for his reply.
    let taken = bob.daemon().cli_json(&["invites", "chat"]).await;
    assert_eq!(taken["extensions"], json!(["chat"]));
    for (n, (status, reason)) in [(0, ""), (7, "not now")].into_iter().enumerate() {
        let data = alice_data.clone();
        let to = b_id.clone();
        let invite = tokio::spawn(async move {
            support::cli(
                &data,
                &[
                    "invite",
                    &to,
                    "chat",
                    "shall we?",
                    "--bundle",
                    "b1",
                    "--json",
                ],
            )
            .await
        });
        bob.control
            .events_at_least("invite", &alice.id, n + 1)
            .await;
        let pending = bob.daemon().cli_json(&["invites"]).await;
        let listed = &pending["invites"][0];
        assert_eq!(listed["data"], "shall we?");
        assert_eq!(listed["bundle"], "b1");
        let id = listed["id"].as_u64().unwrap().to_string();
        let mut reply = vec!["reply", id.as_str(), if status == 0 { "0" } else { "7" }];
        reply.push(if status == 0 { "welcome" } else { reason });
        bob.daemon().cli_json(&reply).await;
        let (code, stdout, stderr) = invite.await.unwrap();
        assert_eq!(code, 0, "{stderr}");
        let answer: Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(answer["status"], json!(status));
        if status == 0 {
            assert_eq!(answer["data"], "welcome");
        } else {
            assert_eq!(answer["reason"], reason);
        }
        // Replied once only.
        reply.push("--json");
        assert_eq!(refused(bob.daemon().cli(&reply).await), "already_replied");
    }
    assert_eq!(
        refused(
            bob.daemon()
                .cli(&["reply", "999", "0", "x", "--json"])
                .await
        ),
        "unknown_invite"
    );
    let long = "x".repeat(8193);
    assert_eq!(
        refused(
            alice
                .daemon()
                .cli(&["invite", &b_id, "chat", &long, "--json"])
                .await
        ),
        "invite_too_large"
    );
    assert_eq!(
        refused(
            alice
                .daemon()
                .cli(&["invite", &b_id, "chat", "", "--json"])
                .await
        ),
        "bad_arguments"
    );
}

/// A small deterministic generator (xorshift), seeded per run and printed, so a failing run
/// can be repeated with `CARRIER_CHAOS_SEED`.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// What the receiving script saw.
#[derive(Default)]
struct Receiver {
    /// Message number (its text) of each message ID.
    number: BTreeMap<String, u64>,
    /// The message numbers in the order they were first raised.
    first_raised: Vec<u64>,
    /// IDs whose ack the daemon confirmed.
    acked: BTreeSet<String>,
}

impl Receiver {
    /// Handles every event that came: records each message and acks it.
    async fn handle(&mut self, bob: &mut Side, events: Vec<Value>) {
        for event in events {
            if event["event"] != "message" {
                continue;
            }
            let id = event["id"].as_str().unwrap().to_string();
            assert!(
                !self.acked.contains(&id),
                "message {id} raised again after its ack was committed"
            );
            let number: u64 = event["text"].as_str().unwrap().parse().unwrap();
            if self.number.insert(id.clone(), number).is_none() {
                self.first_raised.push(number);
            }
            // A message raised twice before its ack (a restart in between) is acked once: the
            // second ack is refused as unknown, never confirmed twice.
            match bob.control.try_send("ack", json!({ "message": id })).await {
                Some(reply) if reply["ok"] == json!(true) => {
                    assert!(self.acked.insert(id.clone()), "{id} acked twice");
                }
                Some(reply) => {
                    assert_eq!(reply["error"]["kind"], "unknown_message", "{reply}");
                    assert!(self.acked.contains(&id), "{id} unknown but never acked");
                }
                // Bob went away: the ack may or may not be committed; the message is raised
                // again after the restart if it is not.
                None => {}
            }
        }
    }

    /// Reads what came on Bob's connection (for at most `wait`) and handles it.
    async fn drain(&mut self, bob: &mut Side, wait: Duration) {
        while bob.control.next_event(wait).await.is_some() {}
        // Events that come while an ack waits for its reply are kept on the connection:
        // handled in the next turn.
        loop {
            let events = std::mem::take(&mut bob.control.events);
            if events.is_empty() {
                return;
            }
            self.handle(bob, events).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_messages_survive_five_sigkills_and_are_handled_exactly_once_in_order() {
    const MESSAGES: u64 = 1000;
    let seed = std::env::var("CARRIER_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("chaos seed {seed} (CARRIER_CHAOS_SEED repeats it)");
    let mut rng = Rng(seed);

    let seeds = seeds(35).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut alice, mut bob) = friends(&contact(&seeds[0]), dir.path(), 36).await;
    let bob_id = bob.id.clone();

    // Five kills at random points: Alice and Bob once each at least, the rest either.
    let mut kills: BTreeMap<u64, bool> = BTreeMap::new();
    while kills.len() < 5 {
        let at = 50 + rng.below(MESSAGES - 100);
        let alice_dies = match kills.len() {
            0 => true,
            1 => false,
            _ => rng.below(2) == 0,
        };
        kills.insert(at, alice_dies);
    }
    let mut receiver = Receiver::default();
    // The messages whose send Alice's daemon confirmed: they must arrive.
    let mut confirmed: BTreeSet<u64> = BTreeSet::new();
    // Bob's restart waits this many more sends (he is offline meanwhile).
    let mut bob_down_for: Option<u64> = None;

    for n in 0..MESSAGES {
        if let Some(&alice_dies) = kills.get(&n) {
            if alice_dies {
                // The boundary: the send is written, and Alice dies before she answers.
                let line =
                    json!({ "id": 0, "request": "send", "friend": bob_id, "text": n.to_string() });
                use tokio::io::AsyncWriteExt;
                alice
                    .control
                    .writer
                    .write_all(format!("{line}\n").as_bytes())
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(rng.below(5))).await;
                alice.kill().await;
                alice.restart().await;
                eprintln!("killed Alice at message {n}");
                continue;
            } else if bob.daemon.is_some() {
                bob.kill().await;
                bob_down_for = Some(rng.below(60));
                eprintln!("killed Bob at message {n}");
            }
        }
        match alice
            .control
            .try_send("send", json!({ "friend": bob_id, "text": n.to_string() }))
            .await
        {
            Some(reply) => {
                assert_eq!(reply["ok"], json!(true), "{reply}");
                confirmed.insert(n);
            }
            None => panic!("Alice went away unasked at message {n}"),
        }
        match bob_down_for {
            Some(0) => {
                bob.restart().await;
                bob_down_for = None;
            }
            Some(left) => bob_down_for = Some(left - 1),
            None => receiver.drain(&mut bob, Duration::ZERO).await,
        }
    }
    if bob.daemon.is_none() {
        bob.restart().await;
    }

    // Everything confirmed arrives and is acked.
    let deadline = tokio::time::Instant::now() + 4 * PATIENCE;
    while !confirmed.iter().all(|n| {
        receiver
            .number
            .iter()
            .any(|(id, m)| m == n && receiver.acked.contains(id))
    }) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every confirmed message was handled: {} of {} acked",
            receiver.acked.len(),
            confirmed.len()
        );
        receiver.drain(&mut bob, Duration::from_millis(200)).await;
    }
    // Nothing is left in the inbox, and nothing comes again.
    let inbox = bob.control.ok("inbox", json!({})).await;
    assert_eq!(inbox["messages"], json!([]), "every message was acked");
    receiver.drain(&mut bob, Duration::from_secs(1)).await;

    // In order: each message first raised after every message sent before it.
    assert!(
        receiver.first_raised.windows(2).all(|w| w[0] < w[1]),
        "raised out of order: {:?}",
        receiver.first_raised
    );
    // Each number arrived under one ID: nothing was taken for two messages.
    let numbers: BTreeSet<u64> = receiver.number.values().copied().collect();
    assert_eq!(
        numbers.len(),
        receiver.number.len(),
        "a message arrived twice"
    );
    eprintln!(
        "{} messages confirmed, {} handled, kills at {kills:?}",
        confirmed.len(),
        receiver.acked.len()
    );
    alice.daemon.take().unwrap().stop().await;
    bob.daemon.take().unwrap().stop().await;
}
