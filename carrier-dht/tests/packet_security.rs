//! Packet-level protection, with real key agreement: replays, stale timestamps, forged or
//! tampered packets, the amplification limit, tokens for stores, the Diffie-Hellman budget and
//! the per-IP rate limit. Each is shown by the node's counters.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use carrier_dht::id::Keypair;
use carrier_dht::message::{Message, Request, RequestBody};
use carrier_dht::packet::{seal, KeyAgreement, NONCE_BYTES};
use carrier_dht::{
    Contact, Event, Key, Node, NodeConfig, Now, Path, QueryOutcome, Transmit, MAX_DATAGRAM_BYTES,
};

const UNIX_MS: u64 = 1_767_225_600_000;

struct Pair {
    a: Node,
    b: Node,
    a_addr: SocketAddr,
    b_addr: SocketAddr,
    start: Instant,
    elapsed_ms: u64,
}

fn server_config() -> NodeConfig {
    NodeConfig {
        server: true,
        key_agreement: KeyAgreement::Real,
        ..NodeConfig::default()
    }
}

impl Pair {
    fn new(a_config: NodeConfig, b_config: NodeConfig) -> Self {
        Self {
            a: Node::new(a_config, Keypair::from_seed(&[1; 32]), [11; 32]),
            b: Node::new(b_config, Keypair::from_seed(&[2; 32]), [22; 32]),
            a_addr: "10.0.1.1:4000".parse().expect("addr"),
            b_addr: "10.0.2.1:4000".parse().expect("addr"),
            start: Instant::now(),
            elapsed_ms: 0,
        }
    }

    fn now(&self) -> Now {
        Now::new(
            self.start + Duration::from_millis(self.elapsed_ms),
            UNIX_MS + self.elapsed_ms,
        )
    }

    fn b_contact(&self) -> Contact {
        Contact {
            id: self.b.key(),
            addr: self.b_addr,
        }
    }

    /// Delivers everything in flight, both ways, until quiet; returns what went from a to b
    /// and from b to a.
    fn exchange(&mut self) -> (Vec<Transmit>, Vec<Transmit>) {
        let (mut to_b, mut to_a) = (Vec::new(), Vec::new());
        loop {
            self.elapsed_ms += 10;
            let now = self.now();
            let mut quiet = true;
            while let Some(t) = self.a.poll_transmit() {
                quiet = false;
                self.b
                    .handle_datagram(now, Path::Direct(self.a_addr), &t.contents);
                to_b.push(t);
            }
            while let Some(t) = self.b.poll_transmit() {
                quiet = false;
                self.a
                    .handle_datagram(now, Path::Direct(self.b_addr), &t.contents);
                to_a.push(t);
            }
            if quiet {
                return (to_b, to_a);
            }
        }
    }

    fn outcome(node: &mut Node) -> Option<QueryOutcome> {
        while let Some(event) = node.poll_event() {
            if let Event::QueryFinished(done) = event {
                return Some(done.outcome);
            }
        }
        None
    }
}

#[test]
fn replayed_request_is_dropped_and_counted() {
    let mut pair = Pair::new(server_config(), server_config());
    let contact = pair.b_contact();
    pair.a.ping(pair.now(), contact);
    let (to_b, _) = pair.exchange();
    assert_eq!(Pair::outcome(&mut pair.a), Some(QueryOutcome::Pong(true)));
    let answered = pair.b.counters().requests_answered;
    let now = pair.now();
    pair.b
        .handle_datagram(now, Path::Direct(pair.a_addr), &to_b[0].contents);
    assert_eq!(pair.b.counters().dropped_replayed, 1);
    assert_eq!(pair.b.counters().requests_answered, answered);
}

#[test]
fn request_outside_the_clock_skew_window_is_dropped() {
    let mut pair = Pair::new(server_config(), server_config());
    let contact = pair.b_contact();
    // a's clock is two minutes ahead of b's.
    let skewed = Now::new(pair.start, UNIX_MS + 120_000);
    pair.a.ping(skewed, contact);
    let transmit = pair.a.poll_transmit().expect("ping");
    pair.b
        .handle_datagram(pair.now(), Path::Direct(pair.a_addr), &transmit.contents);
    assert_eq!(pair.b.counters().dropped_stale, 1);
    assert!(pair.b.poll_transmit().is_none());
}

#[test]
fn tampered_forged_and_malformed_packets_are_dropped_and_counted() {
    let mut pair = Pair::new(server_config(), server_config());
    let contact = pair.b_contact();
    pair.a.ping(pair.now(), contact);
    let mut transmit = pair.a.poll_transmit().expect("ping");
    let last = transmit.contents.len() - 1;
    transmit.contents[last] ^= 1;
    let now = pair.now();
    let from = Path::Direct(pair.a_addr);
    pair.b.handle_datagram(now, from, &transmit.contents);
    assert_eq!(pair.b.counters().dropped_unauthenticated, 1);

    // Sealed under a key of a third party while claiming to be a.
    let mallory = Keypair::from_seed(&[9; 32]);
    let key = KeyAgreement::Real
        .pair_key(&mallory, &pair.b.key())
        .expect("key");
    let message = Message::Request(Request {
        txid: 1,
        unix_ms: UNIX_MS,
        token: None,
        body: RequestBody::Ping,
        padding: Default::default(),
    });
    let forged = seal(
        &key,
        pair.a.key(),
        false,
        [5; NONCE_BYTES],
        &message.encode(),
    );
    pair.b.handle_datagram(now, from, &forged);
    assert_eq!(pair.b.counters().dropped_unauthenticated, 2);

    pair.b.handle_datagram(now, from, &[0x01, 0x00, 0x02]);
    pair.b.handle_datagram(now, from, &[0x41; 200]);
    assert_eq!(pair.b.counters().dropped_malformed, 2);
    pair.b
        .handle_datagram(now, from, &vec![0x01; MAX_DATAGRAM_BYTES + 1]);
    assert_eq!(pair.b.counters().dropped_oversized, 1);
    assert!(pair.b.poll_transmit().is_none());
    assert_eq!(pair.b.counters().requests_answered, 0);
}

#[test]
fn replies_to_an_unproven_address_stay_within_three_times_the_request() {
    let mut pair = Pair::new(server_config(), server_config());
    let contact = pair.b_contact();
    pair.a.ping(pair.now(), contact);
    let (to_b, to_a) = pair.exchange();
    let sent: usize = to_b.iter().map(|t| t.contents.len()).sum();
    let got: usize = to_a.iter().map(|t| t.contents.len()).sum();
    assert!(got <= 3 * sent, "{got} bytes back for {sent}");
    // A lookup request without a token is padded so that a full reply fits 3x of it.
    let mut third = Node::new(server_config(), Keypair::from_seed(&[3; 32]), [3; 32]);
    third.bootstrap(pair.now(), &[contact]).expect("seed");
    let first = third.poll_transmit().expect("find_node");
    assert!(first.contents.len() >= carrier_dht::MIN_UNPROVEN_REQUEST_BYTES);
    assert!(3 * first.contents.len() >= MAX_DATAGRAM_BYTES);
}

#[test]
fn store_without_token_is_refused_then_retried_with_the_token() {
    let mut pair = Pair::new(server_config(), server_config());
    let b = pair.b_contact();
    // a has never heard from b, so it holds no token: b must refuse the first store.
    pair.a.bootstrap(pair.now(), &[b]).expect("seed");
    pair.exchange();
    let _ = Pair::outcome(&mut pair.a);
    let (_, key) = pair
        .a
        .put_immutable(pair.now(), b"stored with a token")
        .expect("put");
    pair.exchange();
    assert!(matches!(
        Pair::outcome(&mut pair.a),
        Some(QueryOutcome::Stored { acks: 1, .. })
    ));
    assert!(pair.b.storage().get(&key, UNIX_MS + 1_000_000).is_some());
}

#[test]
fn store_echoing_no_valid_token_is_refused() {
    let mut pair = Pair::new(server_config(), server_config());
    let key = carrier_dht::packet::KeyAgreement::Real
        .pair_key(pair.a.keypair(), &pair.b.key())
        .expect("key");
    let value = carrier_dht::Value::Immutable(carrier_dht::ImmutableValue::new(b"x").expect("cap"));
    for (txid, token) in [(1, None), (2, Some(carrier_dht::Token([0; 16])))] {
        let message = Message::Request(Request {
            txid,
            unix_ms: UNIX_MS,
            token,
            body: RequestBody::StoreValue {
                value: value.clone(),
                cas: None,
            },
            padding: Default::default(),
        });
        let packet = seal(
            &key,
            pair.a.key(),
            false,
            [txid as u8; NONCE_BYTES],
            &message.encode(),
        );
        let now = pair.now();
        pair.b
            .handle_datagram(now, Path::Direct(pair.a_addr), &packet);
    }
    assert_eq!(pair.b.counters().stores_refused, 2);
    assert!(pair.b.storage().is_empty());
}

#[test]
fn diffie_hellman_budget_caps_work_for_packets_from_fresh_identities() {
    let config = NodeConfig {
        dh_per_sec: 5,
        ip_packets_per_sec: 10_000,
        ip_burst: 10_000,
        ..server_config()
    };
    let mut victim = Node::new(config, Keypair::from_seed(&[2; 32]), [1; 32]);
    let start = Instant::now();
    let now = Now::new(start, UNIX_MS);
    for i in 0..50u8 {
        let attacker = Keypair::from_seed(&[i.wrapping_add(100); 32]);
        let key = KeyAgreement::Real
            .pair_key(&attacker, &victim.key())
            .expect("key");
        let message = Message::Request(Request {
            txid: u64::from(i),
            unix_ms: UNIX_MS,
            token: None,
            body: RequestBody::Ping,
            padding: Default::default(),
        });
        let packet = seal(
            &key,
            Key::of_node(&attacker.id()),
            true,
            [i; NONCE_BYTES],
            &message.encode(),
        );
        let from: SocketAddr = format!("10.9.{i}.1:5000").parse().expect("addr");
        victim.handle_datagram(now, Path::Direct(from), &packet);
    }
    let counters = victim.counters();
    assert_eq!(counters.dh_operations, 5);
    assert_eq!(counters.dropped_dh_budget, 45);
    assert_eq!(counters.requests_answered, 5);
}

#[test]
fn per_ip_rate_limit_drops_a_flood_before_any_work() {
    let config = NodeConfig {
        ip_packets_per_sec: 10,
        ip_burst: 10,
        ..server_config()
    };
    let mut victim = Node::new(config, Keypair::from_seed(&[2; 32]), [1; 32]);
    let now = Now::new(Instant::now(), UNIX_MS);
    let from: Path = Path::Direct("10.9.9.9:5000".parse().expect("addr"));
    let junk = vec![0x01; 300];
    for _ in 0..100 {
        victim.handle_datagram(now, from, &junk);
    }
    let counters = victim.counters();
    assert_eq!(counters.dropped_rate_limited, 90);
    assert!(counters.dh_operations <= 10);
    assert_eq!(counters.dropped(), 100);
}

#[test]
fn every_response_reports_the_address_seen_and_clients_stay_out_of_tables() {
    let client = NodeConfig {
        server: false,
        ..server_config()
    };
    let mut pair = Pair::new(client, server_config());
    let b = pair.b_contact();
    pair.a.bootstrap(pair.now(), &[b]).expect("seed");
    pair.exchange();
    // b answered a client: a learns its address, b never lists a.
    assert!(!pair.b.routing_table().contains(&pair.a.key()));
    assert!(pair.a.routing_table().contains(&pair.b.key()));
    assert_eq!(pair.b.counters().requests_answered, 1);
}
