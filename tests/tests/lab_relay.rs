//! Relays in the lab (issue 19): public relays and a bootstrap node on the internet, homes
//! behind symmetric and port-restricted cone NATs.
//!
//! - Two friends behind symmetric NATs (no direct path can ever work between them) become
//!   friends while both are NATed and link through a relay; a 64 MiB pipe runs over the link;
//!   the relay it runs through (a `carrier node` process) is SIGKILLed a quarter of the way,
//!   the same link moves to another relay and the bytes arrive complete and identical.
//! - A relay's rules across real NATs: no session to an unregistered node, none with a token
//!   another address was given (a spoofed source), no registration under someone else's ID,
//!   no data forwarded from outside a session; a flood through a session stays within the
//!   relay's bandwidth budget while the relay keeps answering DHT lookups.
#![allow(clippy::unwrap_used)]
#![cfg(target_os = "linux")]

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use carrier::dht::id::{CarrierId, Keypair};
use carrier::dht::relay::frame::{encode_data, Control};
use carrier::dht::socket::NodeSocket;
use carrier::dht::{Dht, Key, RelayLimits, RelayRefusal, SessionId, Token};
use serde_json::{json, Value};
use tests::lab::daemon::{DaemonOptions, LabDaemon};
use tests::lab::nodes::{lab_config, node_in, seed, wait_until, ANY};
use tests::lab::{ipv4, Device, NatBehaviour, NetworkLab};
use tests::program::carrier_program;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::process::Child;

/// How long an outcome may take: a bound, not a figure.
const PATIENCE: Duration = Duration::from_secs(90);

/// The bytes the friends pipe through the relay.
const TRANSFER_BYTES: u64 = 64 << 20;

/// Where in the transfer the relay in use is killed.
const KILL_AT: u64 = TRANSFER_BYTES / 4;

/// The friends' links close after this much silence (`--test-silence-secs`): failover must
/// move the link to another relay well within it.
const LINK_SILENCE: Duration = Duration::from_secs(20);

/// Relays (`carrier node` processes), each on a network of its own: the NATed nodes choose
/// relays in distinct /24s, and every host on the lab's public router shares one.
const RELAYS: usize = 4;

/// A `carrier node` in a lab host, SIGKILLed when dropped.
struct RelayNode {
    child: Child,
    addr: SocketAddr,
    /// Its log (stderr).
    log: std::path::PathBuf,
}

impl RelayNode {
    async fn start(device: &Device, dir: &Path, bootstrap: &Dht) -> RelayNode {
        let data = dir.join(device.name());
        let listen = SocketAddr::new(IpAddr::V4(ipv4(device).unwrap()), 0);
        let mut command = tokio::process::Command::new(carrier_program());
        command
            .args([
                "node",
                "--listen",
                &listen.to_string(),
                "--relay-log-secs",
                "1",
            ])
            .args(["--bootstrap", &seed(bootstrap).to_string(), "--data"])
            .arg(&data)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(data.with_extension("log")).unwrap())
            .kill_on_drop(true);
        let mut child = device.spawn_command(command).unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let contact = tokio::time::timeout(PATIENCE, stdout.next_line())
            .await
            .expect("the relay node started in time")
            .unwrap()
            .expect("the relay node printed its contact");
        let addr = contact.split_once('@').unwrap().1.parse().unwrap();
        RelayNode {
            child,
            addr,
            log: data.with_extension("log"),
        }
    }

    /// The fields of the last `relaying` line of its log, once one says it forwarded at
    /// least `bytes` (it logs every second, when that changed).
    async fn relaying_at_least(&self, bytes: u64) -> std::collections::HashMap<String, u64> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let log = without_colours(&std::fs::read_to_string(&self.log).unwrap_or_default());
            let last = log.lines().rev().find(|line| line.contains(" relaying "));
            let fields: std::collections::HashMap<String, u64> = last
                .into_iter()
                .flat_map(|line| line.split_whitespace())
                .filter_map(|field| {
                    let (name, value) = field.split_once('=')?;
                    Some((name.to_string(), value.parse().ok()?))
                })
                .collect();
            if fields.get("forwarded_bytes").is_some_and(|b| *b >= bytes) {
                return fields;
            }
            assert!(
                Instant::now() < deadline,
                "{} logged no relaying of {bytes} bytes: {last:?}",
                self.addr
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// `text` without ANSI colour sequences (`ESC [ … m`), in case a log has them.
fn without_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Alice and Bob, behind their NATs: DHT clients with short test intervals, but a link
/// closed only after 20 s of silence (as by default), the margin failover works within.
async fn start_daemon(device: &Device, dir: &Path, bootstrap: &Dht) -> LabDaemon {
    let options = DaemonOptions {
        silence_secs: Some(LINK_SILENCE.as_secs()),
        ..DaemonOptions::default()
    };
    LabDaemon::start(device, dir, &[seed(bootstrap)], &options).await
}

/// A new control connection to the daemon on `data` turned into a pipe (docs/CONTROL.md,
/// `pipe`): its reader (with what it buffered past the reply) and writer, once the session's
/// stream is open. A request the friend refuses because no listener waits there yet (the
/// friend's `pipe --listen` is a moment behind) is made again, as a user would.
async fn pipe(data: &Path, request: Value) -> (BufReader<OwnedReadHalf>, OwnedWriteHalf) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (read, mut writer) = UnixStream::connect(data.join("control.sock"))
            .await
            .unwrap()
            .into_split();
        let mut line = request.clone();
        line["id"] = json!(1);
        line["request"] = json!("pipe");
        writer
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        let mut reader = BufReader::new(read);
        let mut reply = String::new();
        tokio::time::timeout(PATIENCE, reader.read_line(&mut reply))
            .await
            .expect("the pipe opened in time")
            .unwrap();
        let reply: Value = serde_json::from_str(&reply).unwrap();
        let nobody_listens = reply["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("nobody listens"));
        if nobody_listens && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        assert_eq!(reply["ok"], true, "pipe: {reply}");
        return (reader, writer);
    }
}

/// The transfer's byte at each offset: a counter through splitmix64, so a lost, repeated or
/// reordered chunk anywhere shows.
fn expected(offset: u64, out: &mut [u8]) {
    for (i, byte) in out.iter_mut().enumerate() {
        let at = offset + i as u64;
        let mut z = (at / 8).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        *byte = z.to_le_bytes()[(at % 8) as usize];
    }
}

/// A bootstrap node on the public router that relays for nobody, so the NATed nodes' relays
/// are the `carrier node` processes the test can kill.
async fn bootstrap_node(device: &Device) -> Dht {
    let bind = SocketAddr::new(IpAddr::V4(ipv4(device).unwrap()), 0);
    let mut config = lab_config(bind, true, Vec::new());
    config.relay = None;
    node_in(device, config).await.unwrap()
}

/// The relays `id`'s newest record names, as `finder` finds it.
async fn relays_of(finder: &Dht, id: &CarrierId) -> Vec<SocketAddr> {
    match finder.find_peer(id).await {
        Ok(Some(record)) => record.relays.iter().map(|hint| hint.addr).collect(),
        _ => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "network lab: runs in the `lab` step of `cargo xtask ci`"]
async fn friends_behind_symmetric_nats_link_through_a_relay_and_a_transfer_survives_its_death() {
    let Some(lab) = NetworkLab::open("relayed_friends").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let bootstrap_host = lab.public_host("bootstrap").await.unwrap();
    let bootstrap = bootstrap_node(&bootstrap_host).await;
    let mut relays = Vec::new();
    for i in 0..RELAYS {
        let network = lab.isp(&format!("isp{i}")).await.unwrap();
        let host = lab.device_in(&network, &format!("relay{i}")).await.unwrap();
        relays.push(RelayNode::start(&host, dir.path(), &bootstrap).await);
    }
    let alice_home = lab
        .home("alice-home", NatBehaviour::Symmetric)
        .await
        .unwrap();
    let bob_home = lab.home("bob-home", NatBehaviour::Symmetric).await.unwrap();
    let alice_host = lab.device_in(&alice_home, "alice").await.unwrap();
    let bob_host = lab.device_in(&bob_home, "bob").await.unwrap();
    let started = Instant::now();
    let mut alice = start_daemon(&alice_host, dir.path(), &bootstrap).await;
    let mut bob = start_daemon(&bob_host, dir.path(), &bootstrap).await;
    let (a, b) = (alice.id(), bob.id());

    // Both register with relays and name them in their records (no address would do: a
    // symmetric NAT's port for the bootstrap node is not the one a friend would need).
    for id in [&a, &b] {
        let deadline = Instant::now() + PATIENCE;
        while relays_of(&bootstrap, id).await.len() < 2 {
            assert!(Instant::now() < deadline, "{id} never named two relays");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    // `status` shows the relays each holds.
    for daemon in [&mut alice, &mut bob] {
        let status = daemon.ok("status", json!({})).await;
        let held = status["relays"].as_array().unwrap();
        assert!(held.len() >= 2, "{status}");
        for relay in held {
            let addr: SocketAddr = relay.as_str().unwrap().parse().unwrap();
            assert!(relays.iter().any(|r| r.addr == addr), "{status}");
        }
    }

    // A friend request and its accept, both NATed, then one link through a relay.
    let address = alice.ok("address", json!({})).await["address"].clone();
    bob.ok(
        "friend_add",
        json!({ "address": address, "hello": "from one symmetric NAT to another" }),
    )
    .await;
    alice.events_at_least("request", &b, 1).await;
    alice
        .ok("friend_accept", json!({ "friend": b.to_string() }))
        .await;
    alice.events_at_least("connected", &b, 1).await;
    bob.events_at_least("connected", &a, 1).await;
    let linked = started.elapsed();
    let (_, via) = alice.link_to(&b).await;
    assert!(
        relays.iter().any(|relay| relay.addr == via),
        "Alice's link to Bob runs through a relay, not {via}"
    );
    // Both sides may have dialled at once: the friend layer settles on one link.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (alice_links, _) = alice.link_to(&b).await;
        let (bob_links, _) = bob.link_to(&a).await;
        if alice_links == 1 && bob_links == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the friends never settled on one link"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let connected = (alice.count("connected", &b), bob.count("connected", &a));
    let disconnected = (
        alice.count("disconnected", &b),
        bob.count("disconnected", &a),
    );

    // A pipe from Bob to Alice: Alice listens, Bob asks her for the session.
    let listening = {
        let data = alice.data().to_path_buf();
        tokio::spawn(async move { pipe(&data, json!({ "listen": true })).await })
    };
    let (_, mut to_alice) = pipe(bob.data(), json!({ "friend": a.to_string() })).await;
    let (mut from_bob, _alice_writer) = listening.await.unwrap();
    let sending = tokio::spawn(async move {
        let mut chunk = vec![0u8; 64 << 10];
        let mut offset = 0;
        while offset < TRANSFER_BYTES {
            expected(offset, &mut chunk);
            to_alice.write_all(&chunk).await.unwrap();
            offset += chunk.len() as u64;
        }
        to_alice.shutdown().await.unwrap();
        to_alice
    });
    let received = Arc::new(AtomicU64::new(0));
    let receiving = {
        let received = received.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 << 10];
            let mut want = vec![0u8; 64 << 10];
            let mut offset = 0u64;
            let mut last = Instant::now();
            let mut longest_gap = Duration::ZERO;
            loop {
                let n = from_bob.read(&mut buf).await.unwrap();
                if n == 0 {
                    return (offset, longest_gap);
                }
                longest_gap = longest_gap.max(last.elapsed());
                last = Instant::now();
                expected(offset, &mut want[..n]);
                assert!(
                    buf[..n] == want[..n],
                    "the bytes at {offset}..{} differ from those sent",
                    offset + n as u64
                );
                offset += n as u64;
                received.store(offset, Ordering::Relaxed);
            }
        })
    };

    // A quarter through, the relay carrying the link is killed outright.
    let transfer_started = Instant::now();
    assert!(
        wait_until(PATIENCE, || received.load(Ordering::Relaxed) >= KILL_AT).await,
        "a quarter of the transfer did not arrive in time"
    );
    let (_, via) = alice.link_to(&b).await;
    let dead = relays
        .iter()
        .position(|relay| relay.addr == via)
        .unwrap_or_else(|| panic!("the link runs through a relay, not {via}"));
    relays[dead].child.start_kill().unwrap();
    relays[dead].child.wait().await.unwrap();
    let killed = Instant::now();

    let (total, longest_gap) = tokio::time::timeout(PATIENCE, receiving)
        .await
        .expect("the transfer completed in time")
        .unwrap();
    assert_eq!(total, TRANSFER_BYTES, "every byte arrived, and no more");
    assert!(
        longest_gap < LINK_SILENCE,
        "the transfer stalled {longest_gap:?}, past the link's silence limit"
    );
    let done = transfer_started.elapsed();
    let mut to_alice = sending.await.unwrap();
    to_alice.shutdown().await.ok();

    // The same link carried on through another relay: no new link, no link lost.
    let (alice_links, now_via) = alice.link_to(&b).await;
    let (bob_links, _) = bob.link_to(&a).await;
    assert_eq!((alice_links, bob_links), (1, 1), "one link each");
    assert_ne!(now_via, via, "the link left the dead relay");
    assert!(
        relays.iter().any(|relay| relay.addr == now_via),
        "the link runs through another relay, not {now_via}"
    );
    assert_eq!(
        (alice.count("connected", &b), bob.count("connected", &a)),
        connected,
        "no new link was made"
    );
    assert_eq!(
        (
            alice.count("disconnected", &b),
            bob.count("disconnected", &a)
        ),
        disconnected,
        "the link was never lost"
    );
    // `carrier node` logs what it relays: the relay that took the link over carried most of
    // the transfer (the rest after the kill, less what was in flight), for its one
    // registration (or more) and session.
    let logged = relays
        .iter()
        .find(|relay| relay.addr == now_via)
        .unwrap()
        .relaying_at_least(TRANSFER_BYTES / 2)
        .await;
    assert!(
        logged["registrations"] >= 1 && logged["sessions"] >= 1,
        "{logged:?}"
    );
    eprintln!(
        "linked through a relay {linked:?} after the daemons started; 64 MiB in {done:?}, \
         the relay killed at {:?}, longest gap {longest_gap:?}; {via} -> {now_via}",
        killed - transfer_started
    );
}

/// A plain socket in `device`'s namespace, kept read (relay frames are handled by whoever
/// reads): an attacker's, speaking the relay protocol by hand.
async fn raw_socket(device: &Device) -> NodeSocket {
    device
        .spawn(async move |_| {
            let socket = NodeSocket::bind(ANY).unwrap();
            let reader = socket.clone();
            tokio::spawn(async move { while reader.recv_carrier().await.is_ok() {} });
            socket
        })
        .unwrap()
        .await
        .unwrap()
}

/// The next control frame a relay sends `socket`.
async fn answer(socket: &NodeSocket) -> Control {
    let datagram = tokio::time::timeout(Duration::from_secs(5), socket.recv_relay_control())
        .await
        .expect("the relay answered");
    Control::decode(&datagram.data).unwrap()
}

/// A token the relay at `relay` gives `socket`'s public address.
async fn token_for(socket: &NodeSocket, relay: SocketAddr) -> Token {
    socket
        .send(relay, &Control::hello().encode())
        .await
        .unwrap();
    match answer(socket).await {
        Control::Challenge { token } => token,
        other => panic!("expected a challenge, got {other:?}"),
    }
}

/// A QUIC-class payload of `len` bytes.
fn quic_payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| 0x40 | (i % 64) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "network lab: runs in the `lab` step of `cargo xtask ci`"]
async fn a_relay_across_real_nats_refuses_abuse_and_keeps_a_flood_within_its_budget() {
    let Some(lab) = NetworkLab::open("relay_abuse").await else {
        return;
    };
    let net = lab.nat_topology(1).await.unwrap();
    // The relay is the network's only server, so every lookup below is answered by it. Its
    // budget is small, so a flood from one host exceeds it many times over.
    const BUDGET: u32 = 256 << 10;
    let relay_addr = SocketAddr::new(IpAddr::V4(ipv4(&net.public[0]).unwrap()), 0);
    let mut config = lab_config(relay_addr, true, Vec::new());
    config.relay = Some(RelayLimits {
        bandwidth_bytes_per_sec: BUDGET,
        ..RelayLimits::default()
    });
    let relay = node_in(&net.public[0], config).await.unwrap();
    let relay_addr = relay.local_addr();
    let relay_key = Key::of_node(&relay.id());

    // Victor, behind the cone NAT, registers with it; Quentin, beside him, only looks up.
    let victor = node_in(
        &net.cone_devices[0],
        lab_config(ANY, false, vec![seed(&relay)]),
    )
    .await
    .unwrap();
    victor.bootstrap().await.unwrap();
    let mut config = lab_config(ANY, false, vec![seed(&relay)]);
    config.relay_client = false;
    let quentin = node_in(&net.cone_devices[1], config).await.unwrap();
    quentin.bootstrap().await.unwrap();
    let status = || relay.relay_status().unwrap();
    assert!(
        wait_until(PATIENCE, || status().1 == 1).await,
        "Victor registered with the relay"
    );
    let victim = Key::of_node(&victor.id());

    // Mallory, behind the symmetric NAT, with two sockets: two public addresses.
    let mallory = raw_socket(&net.symmetric_device).await;
    let elsewhere = raw_socket(&net.symmetric_device).await;
    let mallory_keys = Keypair::from_seed(&[7; 32]);

    // No session to a node that is not registered.
    let nobody = Key::of_node(&Keypair::from_seed(&[8; 32]).id());
    let t = token_for(&mallory, relay_addr).await;
    mallory
        .send(
            relay_addr,
            &Control::Open {
                target: nobody,
                token: t,
            }
            .encode(),
        )
        .await
        .unwrap();
    assert_eq!(
        answer(&mallory).await,
        Control::Refused {
            reason: RelayRefusal::NotRegistered
        }
    );

    // No session from a source the token was not given to: a spoofed source cannot have
    // received the relay's challenge, so it holds at best another address's token.
    let t = token_for(&mallory, relay_addr).await;
    elsewhere
        .send(
            relay_addr,
            &Control::Open {
                target: victim,
                token: t,
            }
            .encode(),
        )
        .await
        .unwrap();
    assert_eq!(
        answer(&elsewhere).await,
        Control::Refused {
            reason: RelayRefusal::BadToken
        }
    );
    assert_eq!(status().2, 0, "no session was opened");

    // No registration under Victor's ID without Victor's key.
    let t = token_for(&mallory, relay_addr).await;
    let Control::Register {
        token, signature, ..
    } = Control::register(&mallory_keys, &relay_key, t)
    else {
        unreachable!("register makes a registration")
    };
    let forged = Control::Register {
        id: victor.id(),
        token,
        signature,
    };
    mallory.send(relay_addr, &forged.encode()).await.unwrap();
    assert_eq!(
        answer(&mallory).await,
        Control::Refused {
            reason: RelayRefusal::BadSignature
        }
    );
    assert_eq!(status().1, 1, "only Victor is registered");

    // A session of Mallory's own to Victor is allowed; its ID used from another address
    // forwards nothing, nor does a made-up ID.
    let t = token_for(&mallory, relay_addr).await;
    mallory
        .send(
            relay_addr,
            &Control::Open {
                target: victim,
                token: t,
            }
            .encode(),
        )
        .await
        .unwrap();
    let Control::Opened { session, .. } = answer(&mallory).await else {
        panic!("Mallory's own session was refused")
    };
    let before = status().0;
    let heard = victor.socket().stats().relayed_received;
    for id in [session, SessionId(session.0 ^ 1)] {
        let frame = encode_data(id, &quic_payload(1000)).unwrap();
        for _ in 0..10 {
            elsewhere.send(relay_addr, &frame).await.unwrap();
        }
    }
    assert!(
        wait_until(PATIENCE, || status().0.dropped_outside_session
            >= before.dropped_outside_session + 20)
        .await,
        "the relay dropped every frame from outside the session"
    );
    assert_eq!(status().0.forwarded_frames, before.forwarded_frames);
    assert_eq!(victor.socket().stats().relayed_received, heard);

    // A flood through Mallory's session: about 8 MB/s for 3 s, 30 times the budget, while
    // Quentin's lookups (answered by the relay alone) keep succeeding.
    let before = status().0;
    let flooding = {
        let mallory = mallory.clone();
        tokio::spawn(async move {
            let frame = encode_data(session, &quic_payload(1200)).unwrap();
            let start = Instant::now();
            let mut sent = 0u64;
            while start.elapsed() < Duration::from_secs(3) {
                for _ in 0..32 {
                    if mallory.try_send(relay_addr, &frame).is_ok() {
                        sent += frame.len() as u64;
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (sent, start.elapsed())
        })
    };
    let mut lookups = 0;
    while !flooding.is_finished() {
        let found = tokio::time::timeout(Duration::from_secs(3), quentin.find_peer(&victor.id()))
            .await
            .expect("a lookup during the flood was answered in time");
        assert!(found.is_ok(), "a lookup during the flood failed: {found:?}");
        lookups += 1;
    }
    let (sent, took) = flooding.await.unwrap();
    let after = status().0;
    let forwarded = after.forwarded_bytes - before.forwarded_bytes;
    let allowed = u64::from(BUDGET) * (took.as_secs() + 2);
    assert!(
        sent > 4 * allowed,
        "the flood ({sent} bytes) was far over the budget"
    );
    assert!(
        forwarded <= allowed,
        "forwarded {forwarded} bytes in {took:?}, over the budget of {BUDGET} a second"
    );
    assert!(after.dropped_over_budget > before.dropped_over_budget);
    assert!(after.bytes_out <= after.bytes_in, "never more out than in");
    assert!(lookups >= 2, "lookups kept being answered ({lookups})");
    eprintln!(
        "flood: {sent} bytes sent in {took:?}, {forwarded} forwarded, {lookups} lookups answered"
    );
}
