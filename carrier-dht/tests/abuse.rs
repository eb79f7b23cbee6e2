//! A node under attack on real sockets: a flood of garbage and wrongly keyed packets from many
//! source addresses, replayed stores, and stores from an address the token was not issued to.
//! Everything is checked by counters, never by timings.

// Helpers of these tests unwrap as the tests do: a failure is the test failing.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use carrier_dht::id::Keypair;
use carrier_dht::message::{Message, Request, RequestBody};
use carrier_dht::packet::{self, KeyAgreement, DHT_CLASS_V1};
use carrier_dht::socket::{Conditioner, Fate};
use carrier_dht::{BootstrapNode, Dht, DhtConfig, Key, Value};

const DH_PER_SEC: u32 = 300;
const SOURCES: usize = 200;
const PACKETS_PER_SOURCE: usize = 500;

fn server(ip: [u8; 4], seed: u8) -> DhtConfig {
    let mut config = DhtConfig::new(SocketAddr::from((ip, 0)));
    config.keypair = Some(Keypair::from_seed(&[seed; 32]));
    config.query_timeout = Duration::from_secs(20);
    config.node.server = true;
    config.node.dh_per_sec = DH_PER_SEC;
    config
}

/// A small deterministic generator, so a failure can be replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Waits until the node's received counter stops moving: the flood has been taken in.
async fn settle(node: &Dht) {
    let mut last = u64::MAX;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = node.counters().received;
        if now == last {
            return;
        }
        last = now;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_garbage_and_wrongly_keyed_packets_leaves_the_node_serving() {
    let target = Dht::bind(server([127, 0, 150, 1], 1)).await.unwrap();
    let to = target.local_addr();
    let target_key = Key::of_node(&target.id());
    let started = Instant::now();

    // Identities whose packets are well formed but sealed under the wrong key: each new one
    // costs the target a Diffie-Hellman, which the budget must bound.
    let impostors: Vec<Keypair> = (0..2_000u32)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..4].copy_from_slice(&i.to_le_bytes());
            seed[31] = 0xee;
            Keypair::from_seed(&seed)
        })
        .collect();

    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut sent = 0usize;
    for source in 0..SOURCES {
        let ip = [127, 3, source as u8, 1];
        let socket = tokio::net::UdpSocket::bind(SocketAddr::from((ip, 0)))
            .await
            .unwrap();
        for i in 0..PACKETS_PER_SOURCE {
            let packet = match i % 5 {
                // Random bytes in Carrier's classes.
                0 => {
                    let len = 1 + rng.next() as usize % 1300;
                    let mut p = rng.bytes(len);
                    p[0] &= 0x3f;
                    p
                }
                // A DHT header with a random "sender" and a random body.
                1 => {
                    let len = 60 + rng.next() as usize % 600;
                    let mut p = rng.bytes(len);
                    p[0] = DHT_CLASS_V1;
                    p
                }
                // Well formed, from a valid ID, sealed under the wrong key.
                2 | 3 => {
                    let impostor = &impostors[rng.next() as usize % impostors.len()];
                    let wrong = KeyAgreement::Simulated
                        .pair_key(impostor, &target_key)
                        .unwrap();
                    let request = Message::Request(Request {
                        txid: rng.next(),
                        unix_ms: 0,
                        token: None,
                        body: RequestBody::Ping,
                        padding: Default::default(),
                    });
                    let nonce: [u8; 24] = rng.bytes(24).try_into().unwrap();
                    packet::seal(
                        &wrong,
                        Key::of_node(&impostor.id()),
                        false,
                        nonce,
                        &request.encode(),
                    )
                }
                // Oversized, and QUIC-class garbage nobody reads.
                _ => {
                    let len = 1_233 + rng.next() as usize % 700;
                    let mut p = rng.bytes(len);
                    if i % 2 == 0 {
                        p[0] |= 0x40;
                    } else {
                        p[0] = DHT_CLASS_V1;
                    }
                    p
                }
            };
            // Loopback may drop some of a burst when the target's buffer is full: that is
            // part of being flooded. What arrived is counted by the node.
            if socket.send_to(&packet, to).await.is_ok() {
                sent += 1;
            }
        }
    }
    settle(&target).await;
    let elapsed = started.elapsed();
    let counters = target.counters();
    println!(
        "sent {sent}, received {}, dropped {}, DH operations {} in {:.1} s",
        counters.received,
        counters.dropped(),
        counters.dh_operations,
        elapsed.as_secs_f64()
    );
    assert_eq!(sent, SOURCES * PACKETS_PER_SOURCE);
    assert!(counters.received > 0);
    assert_eq!(counters.requests_answered, 0, "no garbage was answered");
    // Fixed one-second windows: at most DH_PER_SEC in each window that began.
    let windows = elapsed.as_secs() + 1;
    assert!(
        counters.dh_operations <= u64::from(DH_PER_SEC) * windows,
        "{} DH operations in {windows} windows",
        counters.dh_operations
    );
    for (len, cap) in target.table_sizes() {
        assert!(len <= cap, "a table holds {len}, over its cap {cap}");
    }
    // Nobody reads QUIC here, so every QUIC-class datagram accepted is still queued: the
    // queue stayed within its cap, and the rest were dropped and counted.
    let socket = target.socket().stats();
    assert!(socket.quic_received <= carrier_dht::socket::QUEUE_CAPACITY as u64);
    assert!(socket.dropped > 0, "{socket:?}");

    // A legitimate node is still served.
    let mut config = server([127, 0, 151, 1], 2);
    config.bootstrap = vec![BootstrapNode::new(target.id(), to)];
    let honest = Dht::bind(config).await.unwrap();
    let before = target.counters();
    let joined = honest.bootstrap().await;
    let after = target.counters();
    assert!(
        matches!(joined, Ok(1)),
        "{joined:?}\nbefore {before:?}\nafter {after:?}\nhonest {:?}",
        honest.counters()
    );
    assert!(target.counters().requests_answered > 0);
}

/// Records every datagram a socket sends, so a test can replay one.
#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<(SocketAddr, Vec<u8>)>>);

impl Conditioner for Recorder {
    fn outgoing(&self, to: SocketAddr, data: &[u8]) -> Fate {
        self.0.lock().unwrap().push((to, data.to_vec()));
        Fate::Pass
    }
    fn incoming(&self, _from: SocketAddr, _data: &[u8]) -> Fate {
        Fate::Pass
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_and_spoofed_source_stores_are_refused() {
    let target = Dht::bind(server([127, 0, 160, 1], 3)).await.unwrap();
    let mut config = server([127, 0, 161, 1], 4);
    config.bootstrap = vec![BootstrapNode::new(target.id(), target.local_addr())];
    let writer = Dht::bind(config).await.unwrap();
    writer.bootstrap().await.unwrap();

    // The writer stores a mutable value; every datagram it sends is recorded.
    let recorder = std::sync::Arc::new(Recorder::default());
    writer.socket().set_conditioner(Some(recorder.clone()));
    let (key, acks) = writer.put_mutable(b"replay", 1, b"original").await.unwrap();
    assert_eq!(acks, 1);
    writer.socket().set_conditioner(None);
    let recorded = recorder.0.lock().unwrap().clone();
    // What the writer sent, opened with the writer's key: requests (lookups, the store) and
    // perhaps responses (to the target's check that the writer answers at its address).
    let writer_keys = Keypair::from_seed(&[4; 32]);
    let opened: Vec<Message> = recorded
        .iter()
        .map(|(_, d)| {
            let header = packet::Header::parse(d).unwrap().0;
            let key = KeyAgreement::Real
                .pair_key(&writer_keys, &Key::of_node(&target.id()))
                .unwrap();
            assert_eq!(header.sender, Key::of_node(&writer_keys.id()));
            Message::decode(&packet::open(&key, d, &header).unwrap()).unwrap()
        })
        .collect();
    let requests = opened
        .iter()
        .filter(|m| matches!(m, Message::Request(_)))
        .count() as u64;
    assert!(requests >= 1);

    // Replayed from the writer's own address: dropped as replays, nothing answered.
    let before = target.counters();
    for (to, datagram) in &recorded {
        writer.socket().send(*to, datagram).await.unwrap();
    }
    // Replayed from another address (as a source-spoofing attacker would): the token in the
    // store was issued to the writer's address, and the packet is a replay too.
    let attacker = tokio::net::UdpSocket::bind("127.0.162.1:0").await.unwrap();
    for (to, datagram) in &recorded {
        attacker.send_to(datagram, to).await.unwrap();
    }
    let expected = 2 * recorded.len() as u64;
    for _ in 0..100 {
        if target.counters().received - before.received >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = target.counters();
    assert_eq!(after.received - before.received, expected);
    assert_eq!(
        after.dropped_replayed - before.dropped_replayed,
        2 * requests,
        "every replayed request dropped: {after:?}"
    );
    assert_eq!(after.requests_answered, before.requests_answered);
    assert_eq!(after.stores_refused, before.stores_refused);

    // A fresh store signed by the writer's key but sent from another address with the token
    // the writer was given is refused: tokens bind the address they were issued to.
    let store_with_token = opened
        .iter()
        .find_map(|m| match m {
            Message::Request(r) if r.token.is_some() => Some(r.clone()),
            _ => None,
        })
        .expect("the writer's store carried a token");
    let pair = KeyAgreement::Real
        .pair_key(&writer_keys, &Key::of_node(&target.id()))
        .unwrap();
    let forged = Message::Request(Request {
        txid: store_with_token.txid ^ 0xffff,
        unix_ms: now_ms(),
        token: store_with_token.token,
        body: RequestBody::StoreValue {
            value: Value::Mutable(
                carrier_dht::MutableValue::sign(&writer_keys, b"replay", 9, b"forged").unwrap(),
            ),
            cas: None,
        },
        padding: Default::default(),
    });
    let datagram = packet::seal(
        &pair,
        Key::of_node(&writer_keys.id()),
        false,
        [7; 24],
        &forged.encode(),
    );
    let refused_before = target.counters().stores_refused;
    attacker
        .send_to(&datagram, target.local_addr())
        .await
        .unwrap();
    for _ in 0..100 {
        if target.counters().stores_refused > refused_before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(target.counters().stores_refused, refused_before + 1);
    match writer.get(key).await.unwrap() {
        Some(value) => assert_eq!((value.seq(), value.data()), (1, &b"original"[..])),
        None => panic!("the original value is gone"),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
