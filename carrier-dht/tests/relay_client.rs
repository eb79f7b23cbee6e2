//! The NATed side of relaying in virtual time: which relays it chooses, its registrations
//! kept alive against real relay tables, a silent relay noticed, and the relays listed in a
//! signed peer record.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use carrier_dht::id::Keypair;
use carrier_dht::relay::client::{
    choose_relays, ClientEvent, ClientTimings, RelayCandidate, RelayClient,
};
use carrier_dht::relay::frame::Control;
use carrier_dht::{Key, Now, PeerRecord, RelayLimits, RelayTable, Subnet};

fn candidate(i: u8, ip: [u8; 4], rtt_ms: Option<u64>, bootstrap: bool) -> RelayCandidate {
    RelayCandidate {
        id: Key([i; 32]),
        addr: SocketAddr::from((ip, 4000)),
        rtt: rtt_ms.map(Duration::from_millis),
        bootstrap,
    }
}

#[test]
fn relays_are_chosen_at_random_among_low_rtt_servers_in_distinct_subnets_bootstrap_last() {
    let mut candidates = vec![
        // Two in one /24.
        candidate(1, [192, 0, 2, 1], Some(10), false),
        candidate(2, [192, 0, 2, 2], Some(11), false),
        candidate(3, [198, 51, 100, 1], Some(12), false),
        candidate(4, [203, 0, 113, 1], Some(13), true),
        candidate(5, [203, 0, 114, 1], Some(14), false),
        // Unmeasured, and far away.
        candidate(6, [10, 1, 0, 1], None, false),
        candidate(7, [10, 2, 0, 1], Some(900), false),
    ];
    for i in 0..10u8 {
        candidates.push(candidate(
            100 + i,
            [10, 100 + i, 0, 1],
            Some(1000 + u64::from(i)),
            false,
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for seed in 0..50u8 {
        let chosen = choose_relays(&candidates, 3, [seed; 32]);
        assert_eq!(chosen.len(), 3);
        let subnets: std::collections::HashSet<_> =
            chosen.iter().map(|c| Subnet::of(c.addr.ip())).collect();
        assert_eq!(subnets.len(), 3, "one per /24: {chosen:?}");
        for c in &chosen {
            // The pool is the 6 lowest round-trip times: ids 1..=5 and 7.
            assert!(c.rtt.is_some_and(|rtt| rtt <= Duration::from_millis(900)));
            assert!(!c.bootstrap, "non-bootstrap servers suffice: {chosen:?}");
            seen.insert(c.id);
        }
    }
    // Random: over 50 seeds every eligible server was chosen at least once.
    for id in [1u8, 2, 3, 5, 7] {
        assert!(seen.contains(&Key([id; 32])), "{id} never chosen");
    }
    // With too few others, a bootstrap node fills in.
    let few = [
        candidate(1, [192, 0, 2, 1], Some(10), false),
        candidate(4, [203, 0, 113, 1], Some(13), true),
        candidate(2, [192, 0, 2, 2], Some(11), false),
    ];
    let chosen = choose_relays(&few, 3, [0; 32]);
    assert_eq!(chosen.len(), 2);
    assert!(chosen.iter().any(|c| c.bootstrap));
}

struct World {
    start: Instant,
    relays: Vec<(SocketAddr, RelayTable, bool)>,
}

impl World {
    fn now(&self, at: Instant) -> Now {
        Now::new(
            at,
            1_700_000_000_000 + at.duration_since(self.start).as_millis() as u64,
        )
    }

    /// Delivers the client's frames to live relays and their answers back.
    fn exchange(
        &mut self,
        client: &mut RelayClient,
        keys: &Keypair,
        me: SocketAddr,
        at: Instant,
    ) -> Vec<ClientEvent> {
        let mut events = Vec::new();
        for (to, frame) in client.poll_transmit(at, keys) {
            let now = self.now(at);
            let Some((_, table, alive)) = self.relays.iter_mut().find(|(a, _, _)| *a == to) else {
                continue;
            };
            if !*alive {
                continue;
            }
            for reply in table.handle_control(now, me, &frame) {
                assert_eq!(reply.dest, me);
                let control = Control::decode(&reply.frame).expect("decodes");
                events.extend(client.handle(at, to, control));
            }
        }
        events
    }
}

#[test]
fn a_nated_node_keeps_three_registrations_alive_and_notices_a_silent_relay() {
    let start = Instant::now();
    let keys = Keypair::from_seed(&[42; 32]);
    let me: SocketAddr = "192.0.2.200:5555".parse().expect("addr");
    let mut world = World {
        start,
        relays: Vec::new(),
    };
    let mut client = RelayClient::new(ClientTimings::default());
    for i in 0..3u8 {
        let relay_keys = Keypair::from_seed(&[i + 1; 32]);
        let c = RelayCandidate {
            id: Key::of_node(&relay_keys.id()),
            addr: SocketAddr::from(([198, 51, 100 + i, 1], 4000)),
            rtt: Some(Duration::from_millis(20)),
            bootstrap: false,
        };
        world.relays.push((
            c.addr,
            RelayTable::new(c.id, [i; 32], RelayLimits::default()),
            true,
        ));
        assert!(client.add(start, c));
    }
    assert_eq!(client.missing(), 0);
    // Hello/challenge, then register/registered: two exchanges.
    let mut events = world.exchange(&mut client, &keys, me, start);
    events.extend(world.exchange(&mut client, &keys, me, start));
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, ClientEvent::Registered(_)))
            .count(),
        3
    );
    assert_eq!(client.hints().len(), 3);

    // Ten minutes of keep-alives (the relays drop silent nodes after 45 s).
    let mut at = start;
    for _ in 0..600 {
        at += Duration::from_secs(1);
        world.exchange(&mut client, &keys, me, at);
        assert!(client.expire(at).is_empty());
    }
    for (_, table, _) in &world.relays {
        assert_eq!(table.registered_addr(&Key::of_node(&keys.id())), Some(me));
        assert!(table.counters().keepalives >= 39);
    }

    // One relay dies: within the keep-alive interval plus the silence limit it is dropped.
    world.relays[1].2 = false;
    let dead_at = at;
    let mut dead = Vec::new();
    while dead.is_empty() {
        at += Duration::from_secs(1);
        world.exchange(&mut client, &keys, me, at);
        dead = client.expire(at);
        assert!(
            at - dead_at <= Duration::from_secs(15 + 5 + 1),
            "not noticed"
        );
    }
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].addr, world.relays[1].0);
    assert_eq!(client.hints().len(), 2);
    assert_eq!(client.missing(), 1);

    // The registered relays go into the signed peer record (room for 3).
    let record = PeerRecord::sign(&keys, 1, 2_000_000_000, vec![me], client.hints()).expect("fits");
    record.verify().expect("verifies");
    assert_eq!(record.relays.len(), 2);
}

#[test]
fn a_relay_that_forgot_the_node_gets_a_fresh_registration() {
    let start = Instant::now();
    let keys = Keypair::from_seed(&[42; 32]);
    let me: SocketAddr = "192.0.2.200:5555".parse().expect("addr");
    let relay_keys = Keypair::from_seed(&[1; 32]);
    let c = RelayCandidate {
        id: Key::of_node(&relay_keys.id()),
        addr: "198.51.100.1:4000".parse().expect("addr"),
        rtt: Some(Duration::from_millis(20)),
        bootstrap: false,
    };
    let mut world = World {
        start,
        relays: vec![(
            c.addr,
            RelayTable::new(c.id, [1; 32], RelayLimits::default()),
            true,
        )],
    };
    let mut client = RelayClient::new(ClientTimings::default());
    client.add(start, c);
    world.exchange(&mut client, &keys, me, start);
    world.exchange(&mut client, &keys, me, start);
    assert_eq!(client.hints().len(), 1);
    // The relay restarts and knows nothing: the next keep-alive is refused, and the client
    // registers again.
    world.relays[0].1 = RelayTable::new(c.id, [2; 32], RelayLimits::default());
    let mut at = start;
    let mut refused = false;
    for _ in 0..20 {
        at += Duration::from_secs(1);
        for event in world.exchange(&mut client, &keys, me, at) {
            refused |= matches!(event, ClientEvent::Refused { .. });
        }
    }
    assert!(refused);
    assert_eq!(
        world.relays[0].1.registered_addr(&Key::of_node(&keys.id())),
        Some(me)
    );
    assert_eq!(client.hints().len(), 1);
    assert!(client.token_at(c.addr).is_some());
}

/// A client registered with three live relays in `world`, at `start`.
fn registered_with_three(world: &mut World, keys: &Keypair, me: SocketAddr) -> RelayClient {
    let mut client = RelayClient::new(ClientTimings::default());
    for i in 0..3u8 {
        let relay_keys = Keypair::from_seed(&[i + 1; 32]);
        let c = RelayCandidate {
            id: Key::of_node(&relay_keys.id()),
            addr: SocketAddr::from(([198, 51, 100 + i, 1], 4000)),
            rtt: Some(Duration::from_millis(20)),
            bootstrap: false,
        };
        world.relays.push((
            c.addr,
            RelayTable::new(c.id, [i; 32], RelayLimits::default()),
            true,
        ));
        assert!(client.add(world.start, c));
    }
    world.exchange(&mut client, keys, me, world.start);
    world.exchange(&mut client, keys, me, world.start);
    assert_eq!(client.hints().len(), 3);
    client
}

#[test]
fn a_relay_that_dies_under_traffic_is_found_dead_within_seconds_and_avoided() {
    let start = Instant::now();
    let keys = Keypair::from_seed(&[42; 32]);
    let me: SocketAddr = "192.0.2.200:5555".parse().expect("addr");
    let mut world = World {
        start,
        relays: Vec::new(),
    };
    let mut client = registered_with_three(&mut world, &keys, me);
    let relay = world.relays[0].0;
    let relay_candidate = RelayCandidate {
        id: Key::of_node(&Keypair::from_seed(&[1; 32]).id()),
        addr: relay,
        rtt: Some(Duration::from_millis(20)),
        bootstrap: false,
    };

    // A link runs through relay 0: data both ways every tick, answers included. A minute of
    // it costs no probe beyond the keep-alives.
    let mut at = start;
    let mut heard = None;
    for _ in 0..60 {
        at += Duration::from_secs(1);
        heard = Some(at - Duration::from_millis(3));
        client.traffic(at, relay, Some(at - Duration::from_millis(1)), heard);
        world.exchange(&mut client, &keys, me, at);
        assert!(client.expire(at).is_empty());
    }
    let keepalives = world.relays[0].1.counters().keepalives;
    assert!(keepalives <= 5, "{keepalives} keep-alives in a minute");

    // The relay dies mid-transfer: data still goes to it, nothing comes back. It is asked at
    // once and dropped within seconds, not after the next keep-alive (15 s) and its silence.
    world.relays[0].2 = false;
    let died = at;
    let mut dead = Vec::new();
    while dead.is_empty() {
        at += Duration::from_secs(1);
        client.traffic(at, relay, Some(at - Duration::from_millis(1)), heard);
        world.exchange(&mut client, &keys, me, at);
        dead = client.expire(at);
        assert!(at - died <= Duration::from_secs(8), "not noticed in time");
    }
    assert_eq!(dead, vec![relay_candidate]);
    assert_eq!(client.missing(), 1);
    // It is not taken again while avoided, even when it is the lowest-RTT server around.
    assert!(!client.may_add(at, &relay_candidate));
    assert!(!client.add(at, relay_candidate));
    let later = at + ClientTimings::default().avoid;
    assert!(client.may_add(later, &relay_candidate));
}

#[test]
fn a_live_relay_is_kept_when_the_peer_is_the_silent_one() {
    let start = Instant::now();
    let keys = Keypair::from_seed(&[42; 32]);
    let me: SocketAddr = "192.0.2.200:5555".parse().expect("addr");
    let mut world = World {
        start,
        relays: Vec::new(),
    };
    let mut client = registered_with_three(&mut world, &keys, me);
    let relay = world.relays[0].0;
    // Data goes out through relay 0 for half a minute and nothing comes back (the peer
    // vanished); the relay answers every keep-alive it is asked with, so it stays.
    let mut at = start;
    for _ in 0..30 {
        at += Duration::from_secs(1);
        client.traffic(at, relay, Some(at - Duration::from_millis(1)), None);
        world.exchange(&mut client, &keys, me, at);
        assert!(client.expire(at).is_empty());
    }
    assert_eq!(client.hints().len(), 3);
    // It was asked (about once per retry), more often than keep-alives alone would.
    assert!(world.relays[0].1.counters().keepalives >= 10);
}
