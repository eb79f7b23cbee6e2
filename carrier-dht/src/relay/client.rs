//! The NATed side: which relays to register with, and the registrations kept alive. Sans-I/O
//! like the relay's table: frames in with the time, frames out.
//!
//! A node that is not a server registers with [`RelayClient::WANT`] relays, chosen by
//! [`choose_relays`]: at random among the servers with the lowest round-trip times, each in a
//! different /24 (or IPv6 /64), nodes that are not bootstrap nodes first. Registration is
//! hello, challenge (an address token), register (signed), registered; a keep-alive follows
//! every interval the relay asks for (15 s by default). A relay that answers nothing for
//! [`ClientTimings::silence`] is dropped, so the caller can choose another (and does not take
//! it again for [`ClientTimings::avoid`]); [`RelayClient::hints`] are the registered relays,
//! for the peer record (which has room for 3).
//!
//! Between keep-alives a dead relay is noticed from its silence on the node's traffic
//! ([`RelayClient::traffic`]): data went to it and nothing came back for
//! [`ClientTimings::retry`], so the client asks it with a keep-alive at once; a relay that
//! answers that is alive (the peer was the silent one), one that does not is dead
//! [`ClientTimings::silence`] later: about 6 s after the relay died, not 15 s or more.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use carrier_id::Keypair;

use crate::relay::frame::{Control, RelayRefusal, SessionId};
use crate::wire::entropy::Entropy;
use crate::wire::key::Key;
use crate::wire::path::{canonical_addr, Subnet};
use crate::wire::record::{RelayHint, MAX_PEER_RELAYS};
use crate::wire::token::Token;

/// A server that could relay for this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayCandidate {
    /// Its node key.
    pub id: Key,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its smoothed round-trip time, if measured.
    pub rtt: Option<Duration>,
    /// Whether it is one of the configured bootstrap nodes (chosen last: they carry the most
    /// load already).
    pub bootstrap: bool,
}

/// Chooses up to `want` relays from `candidates`: those with a measured round-trip time,
/// the lowest first, form a pool of `2 * want` (at least 6); the pool is shuffled; then
/// nodes that are not bootstrap nodes are taken before bootstrap nodes, never two in one /24.
pub fn choose_relays(
    candidates: &[RelayCandidate],
    want: usize,
    seed: [u8; 32],
) -> Vec<RelayCandidate> {
    let mut pool: Vec<RelayCandidate> = candidates
        .iter()
        .filter(|c| c.rtt.is_some())
        .copied()
        .collect();
    pool.sort_by_key(|c| c.rtt);
    pool.truncate((2 * want).max(6));
    let mut entropy = Entropy::from_seed(seed);
    for i in (1..pool.len()).rev() {
        let j = (entropy.next_u64() % (i as u64 + 1)) as usize;
        pool.swap(i, j);
    }
    let mut chosen = Vec::with_capacity(want);
    let mut subnets = HashSet::new();
    for bootstrap in [false, true] {
        for candidate in pool.iter().filter(|c| c.bootstrap == bootstrap) {
            if chosen.len() < want && subnets.insert(Subnet::of(candidate.addr.ip())) {
                chosen.push(*candidate);
            }
        }
    }
    chosen
}

/// The client's timings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientTimings {
    /// Hellos and registrations are sent again after this long without an answer.
    pub retry: Duration,
    /// A relay that answered nothing for this long since a frame was sent to it is dead.
    pub silence: Duration,
    /// A relay found dead is not taken again for this long.
    pub avoid: Duration,
}

impl Default for ClientTimings {
    fn default() -> Self {
        Self {
            retry: Duration::from_secs(1),
            silence: Duration::from_secs(5),
            avoid: Duration::from_secs(300),
        }
    }
}

/// Relays found dead that a client remembers at most (the oldest is forgotten first).
const MAX_AVOIDED: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Waiting for a challenge.
    Hello,
    /// Holding a token, waiting for the registration's answer.
    Registering(Token),
    /// Registered; keep-alives use the token.
    Registered { token: Token, keepalive: Duration },
}

#[derive(Debug)]
struct Held {
    candidate: RelayCandidate,
    stage: Stage,
    /// When a frame was last sent to it.
    sent: Option<Instant>,
    /// When it last answered (or when it was added).
    heard: Instant,
    /// The oldest frame sent since it last answered.
    unanswered_since: Option<Instant>,
    /// When [`RelayClient::traffic`] first saw data sent to it and none heard since.
    data_unanswered_since: Option<Instant>,
}

/// What a relay said that the layers above care about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// Registered (or registered again) with the relay.
    Registered(Key),
    /// A session this node asked for is open.
    Opened {
        /// The relay's address.
        relay: SocketAddr,
        /// The session.
        session: SessionId,
        /// The node it reaches.
        target: Key,
    },
    /// A peer opened a session to this node.
    Incoming {
        /// The relay's address.
        relay: SocketAddr,
        /// The session.
        session: SessionId,
        /// The peer's address as the relay sees it.
        peer: SocketAddr,
    },
    /// A session is gone.
    Closed {
        /// The relay's address.
        relay: SocketAddr,
        /// The session.
        session: SessionId,
    },
    /// The relay refused something.
    Refused {
        /// The relay's address.
        relay: SocketAddr,
        /// Why.
        reason: RelayRefusal,
    },
}

/// The registrations of a NATed node.
#[derive(Debug, Default)]
pub struct RelayClient {
    relays: Vec<Held>,
    timings: ClientTimings,
    /// Relays found dead, with when.
    avoided: Vec<(Key, Instant)>,
}

impl RelayClient {
    /// How many relays a node registers with.
    pub const WANT: usize = 3;

    /// A client with no relays yet.
    pub fn new(timings: ClientTimings) -> Self {
        Self {
            relays: Vec::new(),
            timings,
            avoided: Vec::new(),
        }
    }

    /// Starts registering with `candidate` unless it is held already, was found dead within
    /// [`ClientTimings::avoid`], or [`Self::WANT`] relays are held; returns whether it was
    /// added.
    pub fn add(&mut self, now: Instant, candidate: RelayCandidate) -> bool {
        let avoid = self.timings.avoid;
        self.avoided
            .retain(|(_, since)| now.saturating_duration_since(*since) < avoid);
        if self.relays.len() >= Self::WANT
            || self.relays.iter().any(|h| h.candidate.id == candidate.id)
            || self.avoided.iter().any(|(id, _)| *id == candidate.id)
        {
            return false;
        }
        self.relays.push(Held {
            candidate: RelayCandidate {
                addr: canonical_addr(candidate.addr),
                ..candidate
            },
            stage: Stage::Hello,
            sent: None,
            heard: now,
            unanswered_since: None,
            data_unanswered_since: None,
        });
        true
    }

    /// How many more relays it wants.
    pub fn missing(&self) -> usize {
        Self::WANT - self.relays.len()
    }

    /// Whether `candidate` may be added now (not held, not avoided as dead): what a caller
    /// filters its candidates with before [`choose_relays`].
    pub fn may_add(&self, now: Instant, candidate: &RelayCandidate) -> bool {
        !self.relays.iter().any(|h| h.candidate.id == candidate.id)
            && !self.avoided.iter().any(|(id, since)| {
                *id == candidate.id && now.saturating_duration_since(*since) < self.timings.avoid
            })
    }

    /// Takes the traffic the socket saw with `relay`: a data frame last sent to it at
    /// `last_sent`, one last heard from it at `last_heard`. Data heard from a relay is an
    /// answer (it is alive); data sent and nothing heard since for [`ClientTimings::retry`]
    /// makes the next [`poll_transmit`](Self::poll_transmit) ask the relay with a keep-alive
    /// (at most one per `retry`). Only relays this client is registered with are looked at.
    pub fn traffic(
        &mut self,
        now: Instant,
        relay: SocketAddr,
        last_sent: Option<Instant>,
        last_heard: Option<Instant>,
    ) {
        let relay = canonical_addr(relay);
        let retry = self.timings.retry;
        let Some(held) = self.relays.iter_mut().find(|h| h.candidate.addr == relay) else {
            return;
        };
        if let Some(heard) = last_heard {
            if heard > held.heard {
                held.heard = heard;
                held.data_unanswered_since = None;
                if held.unanswered_since.is_some_and(|since| since <= heard) {
                    held.unanswered_since = None;
                }
            }
        }
        let quiet_since = held.heard;
        if last_sent.is_none_or(|sent| sent <= quiet_since) {
            // Nothing sent since the relay was last heard from.
            held.data_unanswered_since = None;
            return;
        }
        let since = *held.data_unanswered_since.get_or_insert(now);
        let asked_lately = held
            .sent
            .is_some_and(|asked| now.saturating_duration_since(asked) < retry);
        if now.saturating_duration_since(since) >= retry
            && !asked_lately
            && matches!(held.stage, Stage::Registered { .. })
        {
            // Due at the next poll: `poll_transmit` sends a keep-alive to a relay with no
            // frame sent yet.
            held.sent = None;
        }
    }

    /// The relays it is registered with, for the peer record.
    pub fn hints(&self) -> Vec<RelayHint> {
        self.relays
            .iter()
            .filter(|h| matches!(h.stage, Stage::Registered { .. }))
            .take(MAX_PEER_RELAYS)
            .map(|h| RelayHint {
                id: h.candidate.id,
                addr: h.candidate.addr,
            })
            .collect()
    }

    /// The frames due now: hellos, registrations, keep-alives, each to its relay.
    pub fn poll_transmit(&mut self, now: Instant, keypair: &Keypair) -> Vec<(SocketAddr, Vec<u8>)> {
        let retry = self.timings.retry;
        let mut out = Vec::new();
        for held in &mut self.relays {
            let since = held.sent.map(|sent| now.saturating_duration_since(sent));
            let (due, frame) = match held.stage {
                Stage::Hello => (since.is_none_or(|s| s >= retry), Control::hello()),
                Stage::Registering(token) => (
                    since.is_none_or(|s| s >= retry),
                    Control::register(keypair, &held.candidate.id, token),
                ),
                Stage::Registered { token, keepalive } => (
                    since.is_none_or(|s| s >= keepalive),
                    Control::KeepAlive { token },
                ),
            };
            if due {
                held.sent = Some(now);
                held.unanswered_since.get_or_insert(now);
                out.push((held.candidate.addr, frame.encode()));
            }
        }
        out
    }

    /// Takes a control frame from `from`; frames from an address that is not one of its
    /// relays are ignored.
    pub fn handle(
        &mut self,
        now: Instant,
        from: SocketAddr,
        control: Control,
    ) -> Option<ClientEvent> {
        let from = canonical_addr(from);
        let held = self.relays.iter_mut().find(|h| h.candidate.addr == from)?;
        held.heard = now;
        held.unanswered_since = None;
        held.data_unanswered_since = None;
        match control {
            Control::Challenge { token } => {
                if held.stage == Stage::Hello {
                    held.stage = Stage::Registering(token);
                    held.sent = None;
                }
                None
            }
            Control::Registered {
                token,
                keepalive_secs,
            } => {
                held.stage = Stage::Registered {
                    token,
                    keepalive: Duration::from_secs(u64::from(keepalive_secs.max(1))),
                };
                held.sent = Some(now);
                Some(ClientEvent::Registered(held.candidate.id))
            }
            Control::KeepAliveAck { token } => {
                if let Stage::Registered { keepalive, .. } = held.stage {
                    held.stage = Stage::Registered { token, keepalive };
                }
                None
            }
            Control::Refused { reason } => {
                if matches!(reason, RelayRefusal::BadToken | RelayRefusal::NotRegistered) {
                    // Start over: a fresh token, a fresh registration.
                    held.stage = Stage::Hello;
                    held.sent = None;
                }
                Some(ClientEvent::Refused {
                    relay: from,
                    reason,
                })
            }
            Control::Opened {
                session, target, ..
            } => Some(ClientEvent::Opened {
                relay: from,
                session,
                target,
            }),
            Control::Incoming { session, peer } => Some(ClientEvent::Incoming {
                relay: from,
                session,
                peer,
            }),
            Control::Closed { session } => Some(ClientEvent::Closed {
                relay: from,
                session,
            }),
            Control::Hello { .. }
            | Control::Register { .. }
            | Control::KeepAlive { .. }
            | Control::Open { .. }
            | Control::Close { .. } => None,
        }
    }

    /// Drops the relays silent for [`ClientTimings::silence`] after a frame was sent to them;
    /// returns them, so the caller chooses others (and re-announces its record).
    pub fn expire(&mut self, now: Instant) -> Vec<RelayCandidate> {
        let silence = self.timings.silence;
        let mut dead = Vec::new();
        self.relays.retain(|held| {
            let silent = held
                .unanswered_since
                .is_some_and(|since| now.saturating_duration_since(since) >= silence);
            if silent {
                dead.push(held.candidate);
            }
            !silent
        });
        for candidate in &dead {
            if self.avoided.len() >= MAX_AVOIDED {
                self.avoided.remove(0);
            }
            self.avoided.push((candidate.id, now));
        }
        dead
    }

    /// The token for opening a session at the relay at `addr`, if registered there (a token
    /// for this node's address at that relay).
    pub fn token_at(&self, addr: SocketAddr) -> Option<Token> {
        let addr = canonical_addr(addr);
        self.relays
            .iter()
            .find(|h| h.candidate.addr == addr)
            .and_then(|h| match h.stage {
                Stage::Registered { token, .. } | Stage::Registering(token) => Some(token),
                Stage::Hello => None,
            })
    }
}
