//! The punching rules on a modelled internet, in virtual time: two [`Puncher`]s behind NATs
//! of each kind, linked through a relay (what their `Candidates` outputs cross, after half
//! the relayed round trip), probing each other through their NATs.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use carrier_dht::punch::{PunchFrame, PunchKey, PunchOutput, PunchTimings, Puncher, Role};

/// The relayed round trip.
const RTT: Duration = Duration::from_millis(60);
/// One way on a direct path.
const DIRECT_DELAY: Duration = Duration::from_millis(20);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Nat {
    /// No NAT: a public address, nothing filtered.
    None,
    /// Full cone: one public port, anyone may send to it.
    Open,
    /// Port-restricted cone: one public port, only addresses it sent to may answer.
    Moderate,
    /// Symmetric: a public port per destination, only that destination may answer.
    Strict,
}

struct Side {
    puncher: Puncher,
    nat: Nat,
    ip: [u8; 4],
    /// Destinations this side sent to (what its NAT lets back in).
    sent_to: HashSet<SocketAddr>,
    direct: Option<SocketAddr>,
    aliases: Vec<SocketAddr>,
    relays: usize,
    answers_sent: usize,
}

impl Side {
    fn new(puncher: Puncher, nat: Nat, ip: [u8; 4]) -> Side {
        Side {
            puncher,
            nat,
            ip,
            sent_to: HashSet::new(),
            direct: None,
            aliases: Vec::new(),
            relays: 0,
            answers_sent: 0,
        }
    }

    /// The public port used toward `to`.
    fn port_to(&self, to: SocketAddr) -> u16 {
        match self.nat {
            Nat::Strict => 20_000 + (to.port() % 1000) + u16::from(to.ip().to_string().len() as u8),
            _ => 4000,
        }
    }

    fn public_from(&self, to: SocketAddr) -> SocketAddr {
        SocketAddr::from((self.ip, self.port_to(to)))
    }

    /// What it sends as candidates: its public address where the port is the same for
    /// every peer.
    fn candidates(&self) -> Vec<SocketAddr> {
        match self.nat {
            Nat::Strict => Vec::new(),
            _ => vec![SocketAddr::from((self.ip, 4000))],
        }
    }

    /// Whether a datagram from `from` to its public port `port` gets in.
    fn admits(&self, from: SocketAddr, port: u16) -> bool {
        match self.nat {
            Nat::None | Nat::Open => port == 4000,
            Nat::Moderate => port == 4000 && self.sent_to.contains(&from),
            Nat::Strict => self.sent_to.contains(&from) && self.port_to(from) == port,
        }
    }
}

enum Delivery {
    Candidates {
        request: bool,
        list: Vec<SocketAddr>,
    },
    Datagram {
        from: SocketAddr,
        port: u16,
        data: Vec<u8>,
    },
}

struct World {
    now: Instant,
    sides: [Side; 2],
    /// (when, sequence) → (to side, what).
    queue: BTreeMap<(Instant, u64), (usize, Delivery)>,
    seq: u64,
}

impl World {
    fn new(dialler: Nat, accepter: Nat) -> World {
        let now = Instant::now();
        let key = PunchKey::from_exported([9; 32]);
        let timings = PunchTimings::default();
        let a = Puncher::new(key.clone(), Role::Dialler, timings, 1, now);
        let b = Puncher::new(key, Role::Accepter, timings, 2, now);
        World {
            now,
            sides: [
                Side::new(a, dialler, [198, 51, 100, 1]),
                Side::new(b, accepter, [203, 0, 113, 2]),
            ],
            queue: BTreeMap::new(),
            seq: 0,
        }
    }

    fn deliver(&mut self, after: Duration, to: usize, what: Delivery) {
        self.seq += 1;
        self.queue.insert((self.now + after, self.seq), (to, what));
    }

    /// Carries out what side `i` wants done.
    fn drain(&mut self, i: usize) {
        while let Some(output) = self.sides[i].puncher.pop_output() {
            match output {
                PunchOutput::Candidates { request } => {
                    let list = self.sides[i].candidates();
                    self.deliver(RTT / 2, 1 - i, Delivery::Candidates { request, list });
                }
                PunchOutput::Send { to, datagram } => {
                    if matches!(PunchFrame::decode(&datagram), Ok(PunchFrame::Answer { .. })) {
                        self.sides[i].answers_sent += 1;
                    }
                    let from = self.sides[i].public_from(to);
                    self.sides[i].sent_to.insert(to);
                    let other = &self.sides[1 - i];
                    if to.ip() == SocketAddr::from((other.ip, 0)).ip() {
                        let port = to.port();
                        self.deliver(
                            DIRECT_DELAY,
                            1 - i,
                            Delivery::Datagram {
                                from,
                                port,
                                data: datagram,
                            },
                        );
                    }
                }
                PunchOutput::Alias(addr) => self.sides[i].aliases.push(addr),
                PunchOutput::Direct(addr) => self.sides[i].direct = Some(addr),
                PunchOutput::Relay => {
                    self.sides[i].direct = None;
                    self.sides[i].relays += 1;
                }
                PunchOutput::KeepRelay => {}
            }
        }
    }

    /// Runs for `span` of virtual time in steps of 5 ms: both sides polled, what is due
    /// delivered.
    fn run_for(&mut self, span: Duration) {
        let end = self.now + span;
        while self.now < end {
            self.now += Duration::from_millis(5);
            for i in 0..2 {
                self.sides[i].puncher.poll(self.now);
                self.drain(i);
            }
            let due: Vec<(Instant, u64)> = self
                .queue
                .range(..=(self.now, u64::MAX))
                .map(|(k, _)| *k)
                .collect();
            for key in due {
                let (to, what) = self.queue.remove(&key).unwrap();
                match what {
                    Delivery::Candidates { request, list } => self.sides[to]
                        .puncher
                        .on_candidates(request, &list, RTT, self.now),
                    Delivery::Datagram { from, port, data } => {
                        if self.sides[to].admits(from, port) {
                            let frame = PunchFrame::decode(&data).unwrap();
                            self.sides[to].puncher.on_frame(from, &frame, self.now);
                        }
                    }
                }
                self.drain(to);
            }
        }
    }
}

fn goes_direct(dialler: Nat, accepter: Nat) -> bool {
    let hard = |n| matches!(n, Nat::Moderate | Nat::Strict);
    !(hard(dialler) && hard(accepter) && (dialler == Nat::Strict || accepter == Nat::Strict))
}

#[test]
fn every_pair_of_nat_kinds_goes_direct_within_a_round_unless_a_strict_nat_meets_a_filtering_one() {
    let kinds = [Nat::None, Nat::Open, Nat::Moderate, Nat::Strict];
    for dialler in kinds {
        for accepter in kinds {
            let mut world = World::new(dialler, accepter);
            world.run_for(Duration::from_secs(2));
            let direct = [world.sides[0].direct, world.sides[1].direct];
            if goes_direct(dialler, accepter) {
                let (a, b) = (&world.sides[0], &world.sides[1]);
                assert_eq!(
                    direct[0].map(|d| d.ip()),
                    Some(SocketAddr::from((b.ip, 0)).ip()),
                    "{dialler:?} × {accepter:?}: the dialler"
                );
                assert_eq!(
                    direct[1].map(|d| d.ip()),
                    Some(SocketAddr::from((a.ip, 0)).ip()),
                    "{dialler:?} × {accepter:?}: the accepter"
                );
                assert!(
                    !a.aliases.is_empty() && !b.aliases.is_empty(),
                    "{dialler:?} × {accepter:?}"
                );
            } else {
                assert_eq!(
                    direct,
                    [None, None],
                    "{dialler:?} × {accepter:?} stays relayed"
                );
            }
        }
    }
}

#[test]
fn a_round_that_fails_is_retried_with_backoff() {
    let mut world = World::new(Nat::Moderate, Nat::Strict);
    // Rounds: at 0, then 3 s of probing + 5 s, then + 10 s, then + 20 s.
    world.run_for(Duration::from_secs(9));
    assert_eq!(world.sides[0].puncher.failures(), 1);
    world.run_for(Duration::from_secs(4));
    assert_eq!(
        world.sides[0].puncher.failures(),
        2,
        "the second round failed too"
    );
    world.run_for(Duration::from_secs(10));
    assert_eq!(
        world.sides[0].puncher.failures(),
        2,
        "the third round waits 10 s"
    );
    world.run_for(Duration::from_secs(5));
    assert_eq!(world.sides[0].puncher.failures(), 3);
    assert_eq!([world.sides[0].direct, world.sides[1].direct], [None, None]);
}

#[test]
fn a_changed_address_starts_a_round_at_once() {
    let mut world = World::new(Nat::Moderate, Nat::Strict);
    world.run_for(Duration::from_secs(9));
    assert_eq!(world.sides[0].puncher.failures(), 1);
    // The strict side moves to a friendlier network and says so.
    world.sides[1].nat = Nat::Moderate;
    world.sides[1].puncher.addresses_changed(world.now);
    world.run_for(Duration::from_secs(1));
    assert!(world.sides[0].direct.is_some() && world.sides[1].direct.is_some());
}

#[test]
fn frames_from_a_stranger_or_another_link_change_nothing() {
    let now = Instant::now();
    let key = PunchKey::from_exported([9; 32]);
    let mut puncher = Puncher::new(key.clone(), Role::Accepter, PunchTimings::default(), 3, now);
    let stranger: SocketAddr = "192.0.2.66:6666".parse().unwrap();
    let other_link = PunchKey::from_exported([10; 32]);
    let forged = [
        other_link.probe(Role::Dialler, 1),
        other_link.answer(Role::Dialler, 1, stranger),
        // This link's own frames, reflected: they verify only as this side's.
        key.probe(Role::Accepter, 1),
        key.answer(Role::Accepter, 1, stranger),
        // An answer to a probe never sent.
        key.answer(Role::Dialler, 77, stranger),
        PunchFrame::Probe {
            tag: key.tag(),
            nonce: 1,
            mac: [0; 16],
        },
    ];
    for frame in &forged {
        puncher.on_frame(stranger, frame, now);
        puncher.poll(now);
    }
    assert_eq!(
        puncher.pop_output(),
        None,
        "nothing answered, aliased or moved"
    );
    assert_eq!(puncher.direct(), None);
}

#[test]
fn a_direct_path_that_goes_silent_under_traffic_falls_back_to_the_relay_within_seconds() {
    let mut world = World::new(Nat::Moderate, Nat::Moderate);
    world.run_for(Duration::from_secs(1));
    assert!(world.sides[0].direct.is_some());
    let start = world.now;
    let (mut sent, received) = (100u64, 50u64);
    world.sides[0].puncher.on_traffic(sent, received, world.now);
    // Idle: nothing sent, nothing heard, for a minute: the path is kept.
    for _ in 0..240 {
        world.run_for(Duration::from_millis(250));
        world.sides[0].puncher.on_traffic(sent, received, world.now);
    }
    assert!(
        world.sides[0].direct.is_some(),
        "an idle direct path is kept"
    );
    assert_eq!(world.sides[0].relays, 0);
    // The path dies (the peer's answers no longer come back) while data goes out.
    world.sides[1].nat = Nat::Strict;
    world.sides[1].sent_to.clear();
    let died = world.now;
    while world.sides[0].direct.is_some() {
        sent += 3;
        world.run_for(Duration::from_millis(250));
        world.sides[0].puncher.on_traffic(sent, received, world.now);
        assert!(
            world.now - died < Duration::from_secs(5),
            "no fallback within 5 s"
        );
    }
    assert_eq!(world.sides[0].relays, 1);
    assert!(world.now - died >= PunchTimings::default().fallback);
    assert!(world.now > start);
}
