//! Timers of one node: adaptive request timeouts, retries, eviction after repeated timeouts,
//! and bucket refresh.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use carrier_dht::id::Keypair;
use carrier_dht::{Contact, Event, KeyAgreement, Node, NodeConfig, Now, Path, QueryOutcome};

const UNIX_MS: u64 = 1_767_225_600_000;

fn node(seed: u8) -> Node {
    let config = NodeConfig {
        server: true,
        key_agreement: KeyAgreement::Real,
        ..NodeConfig::default()
    };
    Node::new(config, Keypair::from_seed(&[seed; 32]), [seed; 32])
}

fn at(start: Instant, ms: u64) -> Now {
    Now::new(start + Duration::from_millis(ms), UNIX_MS + ms)
}

/// Delivers everything both ways until quiet, 5 ms per hop; returns the time reached.
fn exchange(
    start: Instant,
    mut ms: u64,
    a: &mut Node,
    b: &mut Node,
    a_addr: SocketAddr,
    b_addr: SocketAddr,
) -> u64 {
    loop {
        ms += 5;
        let mut quiet = true;
        while let Some(t) = a.poll_transmit() {
            quiet = false;
            b.handle_datagram(at(start, ms), Path::Direct(a_addr), &t.contents);
        }
        while let Some(t) = b.poll_transmit() {
            quiet = false;
            a.handle_datagram(at(start, ms), Path::Direct(b_addr), &t.contents);
        }
        if quiet {
            return ms;
        }
    }
}

fn finished(node: &mut Node) -> Option<QueryOutcome> {
    std::iter::from_fn(|| node.poll_event()).find_map(|e| match e {
        Event::QueryFinished(done) => Some(done.outcome),
        _ => None,
    })
}

#[test]
fn timeouts_adapt_to_the_measured_round_trip() {
    let start = Instant::now();
    let (mut a, mut b) = (node(1), node(2));
    let a_addr: SocketAddr = "10.0.1.1:4000".parse().expect("addr");
    let b_contact = Contact {
        id: b.key(),
        addr: "10.0.2.1:4000".parse().expect("addr"),
    };
    a.ping(at(start, 0), b_contact);
    assert_eq!(
        a.poll_timeout(),
        Some(start + NodeConfig::default().initial_rto)
    );
    // Answered in 20 ms, ten times over.
    let mut t = 0;
    for _ in 0..10 {
        t = exchange(start, t, &mut a, &mut b, a_addr, b_contact.addr);
        assert_eq!(finished(&mut a), Some(QueryOutcome::Pong(true)));
        a.ping(at(start, t), b_contact);
    }
    let deadline = a.poll_timeout().expect("timer");
    let rto = deadline - (start + Duration::from_millis(t));
    assert_eq!(
        rto,
        NodeConfig::default().min_rto,
        "a 20 ms peer gets the minimum timeout"
    );
}

#[test]
fn silent_node_is_retried_then_evicted() {
    let start = Instant::now();
    let (mut a, mut b) = (node(1), node(2));
    let a_addr: SocketAddr = "10.0.1.1:4000".parse().expect("addr");
    let b_contact = Contact {
        id: b.key(),
        addr: "10.0.2.1:4000".parse().expect("addr"),
    };
    // One answered ping puts b in a's table.
    a.ping(at(start, 0), b_contact);
    exchange(start, 0, &mut a, &mut b, a_addr, b_contact.addr);
    assert_eq!(finished(&mut a), Some(QueryOutcome::Pong(true)));
    assert!(a.routing_table().contains(&b.key()));
    // Now b is silent: each ping is sent twice, then counts as one failure; two failures evict.
    let mut now_ms = 100;
    for round in 0..2 {
        a.ping(at(start, now_ms), b_contact);
        let mut sends = 0;
        while let Some(deadline) = a.poll_timeout() {
            while a.poll_transmit().is_some() {
                sends += 1;
            }
            if let Some(outcome) = finished(&mut a) {
                assert_eq!(outcome, QueryOutcome::Pong(false));
                break;
            }
            now_ms = (deadline - start).as_millis() as u64 + 1;
            a.handle_timeout(at(start, now_ms));
        }
        assert_eq!(sends, 2, "round {round}: one retry");
    }
    assert!(!a.routing_table().contains(&b.key()));
    assert_eq!(a.counters().rpc_timeouts, 2);
}

#[test]
fn idle_buckets_are_refreshed_by_a_lookup() {
    let start = Instant::now();
    let (mut a, mut b) = (node(1), node(2));
    let a_addr: SocketAddr = "10.0.1.1:4000".parse().expect("addr");
    let b_contact = Contact {
        id: b.key(),
        addr: "10.0.2.1:4000".parse().expect("addr"),
    };
    a.ping(at(start, 0), b_contact);
    exchange(start, 0, &mut a, &mut b, a_addr, b_contact.addr);
    let _ = finished(&mut a);
    // The first tick arms maintenance; a tick after the refresh interval refreshes.
    a.handle_timeout(at(start, 20));
    assert!(a.poll_transmit().is_none());
    let later = NodeConfig::default().refresh_interval.as_millis() as u64 + 60_000;
    a.handle_timeout(at(start, later));
    let refresh = a.poll_transmit().expect("a refresh lookup goes out");
    assert_eq!(refresh.path, Path::Direct(b_contact.addr));
}

#[test]
fn a_bootstrap_nobody_answers_starts_over_then_fails() {
    let start = Instant::now();
    let mut a = node(1);
    let silent = Contact {
        id: node(2).key(),
        addr: "10.0.2.1:4000".parse().expect("addr"),
    };
    let id = a.bootstrap(at(start, 0), &[silent]).expect("started");
    // Every round sends the seed its lookup requests (each up to `lookup_attempts` times);
    // the rounds are the core's rule, not the driver's.
    let mut sent = 0;
    let outcome = loop {
        sent += std::iter::from_fn(|| a.poll_transmit()).count();
        if let Some(done) = std::iter::from_fn(|| a.poll_event()).find_map(|e| match e {
            Event::QueryFinished(done) if done.id == id => Some(done),
            _ => None,
        }) {
            break done;
        }
        let next = a.poll_timeout().expect("a timer while the bootstrap runs");
        let ms = (next - start).as_millis() as u64;
        assert!(ms < 600_000, "the bootstrap never finished");
        a.handle_timeout(at(start, ms));
    };
    assert!(outcome.closest.is_empty());
    assert_eq!(outcome.outcome, QueryOutcome::Nodes);
    let per_round = usize::from(NodeConfig::default().lookup_attempts);
    assert_eq!(sent, carrier_dht::BOOTSTRAP_ROUNDS * per_round);
}
