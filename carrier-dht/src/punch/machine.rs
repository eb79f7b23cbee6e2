//! [`Puncher`]: the rules of punching one link, without I/O.
//!
//! A link comes up relayed. Punching goes in *rounds*:
//!
//! 1. One end (the dialler, or either end when its addresses change) sends its candidate
//!    addresses through the link and asks for the other's ([`PunchOutput::Candidates`] with
//!    `request`); the other answers with its own at once and starts probing half a round trip
//!    later, when the answer reaches the asker, who starts on receipt: both probe at the same
//!    moment, so each side's outgoing probes open its NAT for the other's.
//! 2. Each side probes every candidate of the other every `probe_every` for `punch_for`
//!    (a fresh nonce per probe). A valid probe is answered at the address it came from (so a
//!    port that a symmetric NAT chose, which no candidate names, still gets its answer), and
//!    that address becomes an alias of the link ([`PunchOutput::Alias`]): QUIC packets the
//!    peer sends from it reach the same connection; while the round lasts it is probed too
//!    (a probe outside a round opens none, so a replayed probe cannot make this side probe
//!    a victim).
//! 3. The first valid answer to one of its own probes moves the link to the address it came
//!    from ([`PunchOutput::Direct`]). Each side moves on its own answer; QUIC sees nothing.
//! 4. A round that ends without an answer leaves the link relayed; the dialler tries again
//!    after `retry_initial`, doubling up to `retry_max`, and at once when addresses change.
//!
//! On the direct path, the link's datagram counts ([`Puncher::on_traffic`]: sent, and
//! received on direct paths) show whether it still carries: data sent and nothing heard
//! directly for `silence` sends probes to check it, and
//! for `fallback` moves the link back to its relay ([`PunchOutput::Relay`]) and schedules a
//! new round. While direct, the relay session is kept open ([`PunchOutput::KeepRelay`]
//! every `keep_relay_every`), so the fallback has somewhere to go.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::frame::PunchFrame;
use super::key::{PunchKey, Role};

/// Candidate addresses one side sends, at most (and remembers of the other, besides the
/// addresses valid probes came from).
pub const MAX_CANDIDATES: usize = 8;

/// Addresses valid probes came from that a link remembers as the peer's, at most.
const MAX_REFLEXIVE: usize = 4;

/// Nonces of probes sent that an answer may still name, at most.
const MAX_NONCES: usize = 256;

/// How long an answer to a probe is accepted after the probe.
const NONCE_LIFETIME: Duration = Duration::from_secs(10);

/// How often the direct path is probed while it is being checked.
const CHECK_EVERY: Duration = Duration::from_millis(250);

/// The timings of punching. The defaults suit the internet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PunchTimings {
    /// The wait between two probes to one candidate during a round.
    pub probe_every: Duration,
    /// How long a round probes.
    pub punch_for: Duration,
    /// How long an asker waits for the other side's candidates before the round fails.
    pub answer_wait: Duration,
    /// The wait before the next round after the first failure; it doubles with each.
    pub retry_initial: Duration,
    /// The longest wait between rounds.
    pub retry_max: Duration,
    /// A direct path with data sent and nothing heard this long is checked with probes.
    pub silence: Duration,
    /// A direct path with data sent and nothing heard this long is given up for the relay.
    pub fallback: Duration,
    /// How often the relay session is kept open while the link runs direct.
    pub keep_relay_every: Duration,
}

impl Default for PunchTimings {
    fn default() -> Self {
        PunchTimings {
            probe_every: Duration::from_millis(100),
            punch_for: Duration::from_secs(3),
            answer_wait: Duration::from_secs(5),
            retry_initial: Duration::from_secs(5),
            retry_max: Duration::from_secs(300),
            silence: Duration::from_millis(1500),
            fallback: Duration::from_secs(3),
            keep_relay_every: Duration::from_secs(20),
        }
    }
}

/// What the driver must do for the link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PunchOutput {
    /// Send this side's candidate addresses through the link; with `request`, the other side
    /// is asked to answer with its own.
    Candidates {
        /// Whether an answer is asked for.
        request: bool,
    },
    /// Send `datagram` (a punch frame) to `to` from the node's socket.
    Send {
        /// Where.
        to: SocketAddr,
        /// The encoded frame.
        datagram: Vec<u8>,
    },
    /// Datagrams from `addr` are the peer's: show them to the link's connection.
    Alias(SocketAddr),
    /// Move the link to the direct path to `addr`.
    Direct(SocketAddr),
    /// Move the link back to its relay.
    Relay,
    /// Send a keep-alive through the link's relay session.
    KeepRelay,
}

#[derive(Clone, Copy, Debug)]
struct DirectPath {
    addr: SocketAddr,
    /// When the link last heard anything (or an answer on this path came).
    alive: Instant,
    /// When the link first sent something not answered since it last heard anything.
    sent_since: Option<Instant>,
    last_check: Option<Instant>,
    last_keep_relay: Instant,
}

/// The punching of one link: see the module's documentation.
#[derive(Debug)]
pub struct Puncher {
    key: PunchKey,
    role: Role,
    timings: PunchTimings,
    /// The peer's candidates, as it sent them.
    remote: Vec<SocketAddr>,
    /// Addresses valid probes came from.
    reflexive: Vec<SocketAddr>,
    /// Addresses already announced as aliases.
    aliased: Vec<SocketAddr>,
    /// A request for candidates went out then, unanswered so far.
    asked: Option<Instant>,
    /// Probing from `.0` until `.1`.
    window: Option<(Instant, Instant)>,
    next_probe: Instant,
    nonces: VecDeque<(u64, Instant)>,
    next_nonce: u64,
    direct: Option<DirectPath>,
    failures: u32,
    next_round: Option<Instant>,
    counts: Option<(u64, u64)>,
    outputs: VecDeque<PunchOutput>,
}

impl Puncher {
    /// The punching of a link that came up relayed at `now`, on the end whose role is `role`.
    /// The dialler starts the first round at once. `seed` starts the nonces (any value: the
    /// MAC, not the nonce, is what a stranger cannot make).
    pub fn new(key: PunchKey, role: Role, timings: PunchTimings, seed: u64, now: Instant) -> Self {
        Puncher {
            key,
            role,
            timings,
            remote: Vec::new(),
            reflexive: Vec::new(),
            aliased: Vec::new(),
            asked: None,
            window: None,
            next_probe: now,
            nonces: VecDeque::new(),
            next_nonce: seed,
            direct: None,
            failures: 0,
            next_round: (role == Role::Dialler).then_some(now),
            counts: None,
            outputs: VecDeque::new(),
        }
    }

    /// The link's tag, what its frames carry.
    pub fn tag(&self) -> [u8; 8] {
        self.key.tag()
    }

    /// The direct address the link runs to, if it runs direct.
    pub fn direct(&self) -> Option<SocketAddr> {
        self.direct.map(|d| d.addr)
    }

    /// Rounds that failed in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The next thing to do, if any.
    pub fn pop_output(&mut self) -> Option<PunchOutput> {
        self.outputs.pop_front()
    }

    /// This side's addresses changed at `now` (a new public address, an interface up or
    /// down): a round starts at once, whatever the backoff.
    pub fn addresses_changed(&mut self, now: Instant) {
        self.failures = 0;
        self.next_round = None;
        self.asked = Some(now);
        self.outputs
            .push_back(PunchOutput::Candidates { request: true });
    }

    /// The other side's candidates arrived through the link at `now`: an answer to this
    /// side's request, or (`request`) its own request, answered here. `rtt` is the link's
    /// round trip (through the relay).
    pub fn on_candidates(
        &mut self,
        request: bool,
        candidates: &[SocketAddr],
        rtt: Duration,
        now: Instant,
    ) {
        self.remote = candidates.iter().copied().take(MAX_CANDIDATES).collect();
        self.remote.sort_unstable();
        self.remote.dedup();
        self.asked = None;
        self.next_round = None;
        if let Some(direct) = self.direct {
            if !self.remote.contains(&direct.addr) && !self.reflexive.contains(&direct.addr) {
                // The peer moved away from the path the link runs on.
                self.direct = None;
                self.outputs.push_back(PunchOutput::Relay);
            }
        }
        let start = if request {
            self.outputs
                .push_back(PunchOutput::Candidates { request: false });
            now + rtt / 2
        } else {
            now
        };
        self.open_window(start);
    }

    /// A punch frame `frame` came from `from` at `now`. Frames of other links, or that do
    /// not verify as the other end's, are ignored.
    pub fn on_frame(&mut self, from: SocketAddr, frame: &PunchFrame, now: Instant) {
        if !self.key.verifies(frame, self.role.other()) {
            return;
        }
        match *frame {
            PunchFrame::Probe { nonce, .. } => {
                let answer = self.key.answer(self.role, nonce, from);
                self.outputs.push_back(PunchOutput::Send {
                    to: from,
                    datagram: answer.encode(),
                });
                if !self.aliased.contains(&from) {
                    if self.aliased.len() >= MAX_REFLEXIVE {
                        self.aliased.remove(0);
                    }
                    self.aliased.push(from);
                    self.outputs.push_back(PunchOutput::Alias(from));
                }
                if !self.remote.contains(&from) && !self.reflexive.contains(&from) {
                    if self.reflexive.len() >= MAX_REFLEXIVE {
                        self.reflexive.remove(0);
                    }
                    self.reflexive.push(from);
                }
            }
            PunchFrame::Answer { nonce, .. } => {
                self.expire_nonces(now);
                let Some(at) = self.nonces.iter().position(|(n, _)| *n == nonce) else {
                    return;
                };
                self.nonces.remove(at);
                match self.direct.as_mut() {
                    Some(direct) if direct.addr == from => direct.alive = now,
                    Some(_) => {}
                    None => {
                        self.direct = Some(DirectPath {
                            addr: from,
                            alive: now,
                            sent_since: None,
                            last_check: None,
                            last_keep_relay: now,
                        });
                        self.failures = 0;
                        self.window = None;
                        self.next_round = None;
                        self.asked = None;
                        self.outputs.push_back(PunchOutput::Direct(from));
                    }
                }
            }
        }
    }

    /// The link's count of datagrams sent, and of datagrams received on direct paths (not
    /// through the relay: once the peer has fallen back, its datagrams still arrive that
    /// way), sampled at `now`: what shows whether the direct path still carries.
    pub fn on_traffic(&mut self, sent: u64, received: u64, now: Instant) {
        let before = self.counts.replace((sent, received));
        let Some(direct) = self.direct.as_mut() else {
            return;
        };
        let Some((sent_before, received_before)) = before else {
            return;
        };
        if received != received_before {
            direct.alive = now;
            direct.sent_since = None;
        } else if sent != sent_before && direct.sent_since.is_none() {
            direct.sent_since = Some(now);
        }
    }

    /// Everything due at `now`; returns when to look again at the latest (the driver also
    /// samples traffic between).
    pub fn poll(&mut self, now: Instant) -> Instant {
        let timings = self.timings;
        let mut next = now + timings.retry_max;
        if let Some(at) = self.next_round {
            if at <= now && self.direct.is_none() && self.window.is_none() && self.asked.is_none() {
                self.next_round = None;
                self.asked = Some(now);
                self.outputs
                    .push_back(PunchOutput::Candidates { request: true });
            } else {
                next = next.min(at.max(now + timings.probe_every));
            }
        }
        if let Some(asked) = self.asked {
            let end = asked + timings.answer_wait;
            if end <= now {
                self.asked = None;
                self.round_failed(now);
            } else {
                next = next.min(end);
            }
        }
        if let Some((start, end)) = self.window {
            if end <= now {
                self.window = None;
                if self.direct.is_none() {
                    self.round_failed(now);
                }
            } else if start > now {
                next = next.min(start);
            } else {
                if self.next_probe <= now {
                    let targets: Vec<SocketAddr> = self
                        .remote
                        .iter()
                        .chain(self.reflexive.iter())
                        .copied()
                        .collect();
                    for to in targets {
                        self.send_probe(to, now);
                    }
                    self.next_probe = now + timings.probe_every;
                }
                next = next.min(self.next_probe).min(end);
            }
        }
        if let Some(direct) = self.direct {
            // Silent since the first unanswered send (an idle path is not silent).
            let quiet = direct.sent_since.map_or(Duration::ZERO, |sent| {
                now.saturating_duration_since(sent.max(direct.alive))
            });
            if quiet >= timings.fallback {
                self.direct = None;
                self.outputs.push_back(PunchOutput::Relay);
                self.round_failed(now);
            } else {
                if quiet >= timings.silence
                    && direct
                        .last_check
                        .is_none_or(|at| now.saturating_duration_since(at) >= CHECK_EVERY)
                {
                    self.send_probe(direct.addr, now);
                    if let Some(d) = self.direct.as_mut() {
                        d.last_check = Some(now);
                    }
                }
                if now.saturating_duration_since(direct.last_keep_relay) >= timings.keep_relay_every
                {
                    self.outputs.push_back(PunchOutput::KeepRelay);
                    if let Some(d) = self.direct.as_mut() {
                        d.last_keep_relay = now;
                    }
                }
                next = next.min(now + CHECK_EVERY);
            }
        }
        next
    }

    fn open_window(&mut self, start: Instant) {
        let end = start + self.timings.punch_for;
        self.window = Some(match self.window {
            Some((s, e)) => (s.min(start), e.max(end)),
            None => {
                self.next_probe = start;
                (start, end)
            }
        });
    }

    fn send_probe(&mut self, to: SocketAddr, now: Instant) {
        self.expire_nonces(now);
        let nonce = self.fresh_nonce();
        if self.nonces.len() >= MAX_NONCES {
            self.nonces.pop_front();
        }
        self.nonces.push_back((nonce, now));
        self.outputs.push_back(PunchOutput::Send {
            to,
            datagram: self.key.probe(self.role, nonce).encode(),
        });
    }

    fn expire_nonces(&mut self, now: Instant) {
        while self
            .nonces
            .front()
            .is_some_and(|(_, at)| now.saturating_duration_since(*at) > NONCE_LIFETIME)
        {
            self.nonces.pop_front();
        }
    }

    /// A splitmix64 step: distinct nonces, never repeating within a link's life.
    fn fresh_nonce(&mut self) -> u64 {
        self.next_nonce = self.next_nonce.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.next_nonce;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn round_failed(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        if self.role == Role::Dialler {
            self.next_round = Some(now + self.backoff());
        }
    }

    /// The wait after the current run of failures.
    fn backoff(&self) -> Duration {
        let doublings = self.failures.saturating_sub(1).min(20);
        self.timings
            .retry_initial
            .saturating_mul(1u32 << doublings)
            .min(self.timings.retry_max)
    }
}
