//! The `carrier` program: `carrier demo` runs its network to the end and shows each step's
//! outcome (friends, messages, a session's streams, channels, a forwarded port);
//! `carrier node` prints its contact and serves: a DHT node joins the network through it.
#![allow(clippy::unwrap_used)]

use std::process::Stdio;
use std::time::Duration;

use carrier::dht::{BootstrapNode, Dht, DhtConfig};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const PROGRAM: &str = env!("CARGO_BIN_EXE_carrier");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_every_step_and_exits_cleanly() {
    let run = Command::new(PROGRAM)
        .args(["demo", "--servers", "4"])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the demo finished in time")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "demo failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    for line in [
        "4 DHT nodes form a Kademlia network",
        "Alice gets a friend request from Bob",
        "\"Hi Alice, it's Bob!\"",
        "Alice accepts: they are friends",
        "Bob sees it",
        "Bob sees her disconnected",
        "his description is \"back from lunch\"",
        "\"Lunch at one?\" reaches her",
        "he confirms with \"see you there\"",
        "the message waits sealed in her mailbox",
        "\"Running late, sorry!\" (offline: true)",
        // The session and its streams.
        "his handler for \"demo\" accepts it",
        "64 MiB arrived intact in",
        // Every channel's echo, and the refusal with Bob's reason.
        "channel 0 \"chat\": \"hello on chat\" echoed back",
        "channel 2 \"photos\": \"hello on photos\" echoed back",
        "channel 4 \"music\": \"hello on music\" echoed back",
        "\"videos\": Bob refuses the channel: \"no videos here, only chat, photos, music\"",
        // The page from Bob's web server, through the forwarded port.
        "             HTTP/1.1 200 OK\n             Hello from Bob's web server\n",
        "Done in",
        "Stopped in",
    ] {
        assert!(stdout.contains(line), "no {line:?} in:\n{stdout}");
    }
    // Datagrams may be lost, but not all of them.
    let datagrams = stdout
        .lines()
        .find_map(|line| {
            line.trim()
                .strip_suffix(" of 200 datagrams arrived, each one whole")
        })
        .unwrap_or_else(|| panic!("no datagram count in:\n{stdout}"));
    let arrived: u32 = datagrams.parse().unwrap();
    assert!((1..=200).contains(&arrived), "{arrived} datagrams arrived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_prints_its_contact_and_others_join_through_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Command::new(PROGRAM)
        .args(["node", "--bind", "127.0.0.1:0", "--data"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(node.stdout.take().unwrap()).lines();
    let contact = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("a contact line in time")
        .unwrap()
        .expect("a contact line");
    let seed: BootstrapNode = contact.parse().unwrap();

    let mut config = DhtConfig::new("127.0.0.1:0".parse().unwrap());
    config.bootstrap = vec![seed];
    config.node.max_per_subnet = None;
    let joiner = Dht::bind(config).await.unwrap();
    assert!(joiner.bootstrap().await.unwrap() > 0);
    let found = joiner
        .find_node(carrier::dht::Key::of_node(&joiner.id()))
        .await
        .unwrap();
    assert!(!found.is_empty(), "the node answered a lookup");
    joiner.shutdown().await.unwrap();

    // SIGTERM (a service manager's stop) shuts it down cleanly, as Ctrl-C does.
    let pid = node.id().unwrap().to_string();
    let kill = Command::new("kill").args(["-TERM", &pid]).status().await;
    assert!(kill.unwrap().success());
    let status = tokio::time::timeout(Duration::from_secs(30), node.wait())
        .await
        .expect("the node stopped in time")
        .unwrap();
    assert!(status.success(), "{status:?}");
    // Its identity stays in its data directory.
    assert!(dir.path().join("node.key").exists());
}
