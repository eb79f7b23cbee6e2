//! The relay side: who is registered, which sessions are open, and whether a frame may pass.
//!
//! Everything takes the time as an argument ([`Now`]); nothing here reads a clock or touches a
//! socket. The socket hands every relay frame to [`RelayTable::handle_control`] or
//! [`RelayTable::forward`] and sends what they say.
//!
//! The rules, each tested in `tests/relay_protocol.rs`:
//! - a node registers only under an ID it holds the key of (a signature over this relay's key
//!   and a token for its address), and only from the address the token proves;
//! - a session opens only to a registered node, and only for an opener whose address a token
//!   proves, so a spoofed source cannot aim relayed traffic at a victim;
//! - a data frame passes only from one end of its session to the other, byte for byte (never
//!   more out than in), within the session's fair share of the bandwidth budget;
//! - a reply to a control frame goes only to its sender and is never longer than the frame.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use crate::guard::rate_limit::{IpRateLimit, PerSecondBudget};
use crate::guard::token::TokenIssuer;
use crate::relay::fair::{FairBudget, Share};
use crate::relay::frame::{
    decode_data, register_signed_bytes, Control, RelayRefusal, SessionId, REGISTER_CONTEXT,
};
use crate::relay::limits::RelayLimits;
use crate::wire::entropy::Entropy;
use crate::wire::key::Key;
use crate::wire::path::canonical_addr;
use crate::wire::time::Now;
use crate::wire::token::Token;

/// A frame the relay sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayTransmit {
    /// Where to.
    pub dest: SocketAddr,
    /// The whole frame, class byte first.
    pub frame: Vec<u8>,
}

/// Why a data frame was not forwarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RelayDrop {
    /// Not a valid data frame.
    #[error("malformed data frame")]
    Malformed,
    /// No such session (never opened, closed, or expired).
    #[error("no such session")]
    NoSession,
    /// The sender is neither end of the session.
    #[error("sender is not an end of the session")]
    NotAnEnd,
    /// The session used its fair share of this second's budget, or the relay its budget.
    #[error("over the bandwidth budget")]
    OverBudget,
    /// The session reached a configured cap on bytes or duration and was closed.
    #[error("session cap reached")]
    CapReached,
}

/// What the relay did, since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayCounters {
    /// Relay frames received (control and data) and their bytes.
    pub frames_in: u64,
    /// Bytes of the frames received.
    pub bytes_in: u64,
    /// Frames sent (forwarded and control) and their bytes.
    pub frames_out: u64,
    /// Bytes of the frames sent.
    pub bytes_out: u64,
    /// Registrations accepted (new or renewed from a new address).
    pub registered: u64,
    /// Keep-alives taken.
    pub keepalives: u64,
    /// Registrations dropped for silence.
    pub registrations_expired: u64,
    /// Sessions opened.
    pub sessions_opened: u64,
    /// Sessions closed by an end, by idleness, by a cap or with their registration.
    pub sessions_closed: u64,
    /// Data frames forwarded.
    pub forwarded_frames: u64,
    /// Bytes of the data frames forwarded (header included: the same bytes went out).
    pub forwarded_bytes: u64,
    /// Data frames dropped for lack of a session, or from an address that is not an end.
    pub dropped_outside_session: u64,
    /// Data frames dropped over the bandwidth budget.
    pub dropped_over_budget: u64,
    /// Bytes of the data frames dropped over the budget.
    pub dropped_over_budget_bytes: u64,
    /// Frames that did not decode.
    pub malformed: u64,
    /// Refusals: a token that does not prove the sender's address.
    pub refused_bad_token: u64,
    /// Refusals: a registration whose signature is not the claimed ID's.
    pub refused_bad_signature: u64,
    /// Refusals: a keep-alive or session for a node not registered.
    pub refused_not_registered: u64,
    /// Refusals: the relay or the target is full.
    pub refused_full: u64,
    /// Refusals: a source over its per-source limits, or the signature budget spent.
    pub refused_rate_limited: u64,
}

#[derive(Debug)]
struct Registration {
    addr: SocketAddr,
    last_seen: Instant,
    sessions: usize,
}

#[derive(Debug)]
struct Session {
    opener: SocketAddr,
    target: Key,
    opened: Instant,
    last_used: Instant,
    bytes: u64,
    share: Share,
}

/// The relay's state: registrations, sessions, limits and counters.
#[derive(Debug)]
pub struct RelayTable {
    key: Key,
    limits: RelayLimits,
    tokens: TokenIssuerDebug,
    entropy: Entropy,
    registrations: HashMap<Key, Registration>,
    by_addr: HashMap<SocketAddr, Key>,
    sessions: HashMap<SessionId, Session>,
    by_pair: HashMap<(SocketAddr, Key), SessionId>,
    registration_rate: IpRateLimit,
    session_rate: IpRateLimit,
    control_rate: IpRateLimit,
    verifications: PerSecondBudget,
    bandwidth: FairBudget,
    counters: RelayCounters,
}

/// The token issuer holds a secret: shown as nothing in `Debug`.
struct TokenIssuerDebug(TokenIssuer);

impl std::fmt::Debug for TokenIssuerDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenIssuer(..)")
    }
}

impl RelayTable {
    /// A relay whose node key is `key`, with `seed` (32 random bytes from the OS) for its
    /// token secret and session IDs.
    pub fn new(key: Key, seed: [u8; 32], limits: RelayLimits) -> Self {
        let mut entropy = Entropy::from_seed(seed);
        let tokens = TokenIssuer::new(entropy.bytes32(), limits.token_epoch.as_secs());
        let rate =
            |(per_sec, burst): (u32, u32)| IpRateLimit::new(limits.sources_tracked, per_sec, burst);
        Self {
            key,
            tokens: TokenIssuerDebug(tokens),
            entropy,
            registrations: HashMap::new(),
            by_addr: HashMap::new(),
            sessions: HashMap::new(),
            by_pair: HashMap::new(),
            registration_rate: rate(limits.registrations_per_source),
            session_rate: rate(limits.sessions_per_source),
            control_rate: rate(limits.control_per_source),
            verifications: PerSecondBudget::new(limits.verifications_per_sec),
            bandwidth: FairBudget::new(limits.bandwidth_bytes_per_sec),
            counters: RelayCounters::default(),
            limits,
        }
    }

    /// The relay's node key, which registrations sign.
    pub fn key(&self) -> Key {
        self.key
    }

    /// Its limits.
    pub fn limits(&self) -> &RelayLimits {
        &self.limits
    }

    /// What it did so far.
    pub fn counters(&self) -> RelayCounters {
        self.counters
    }

    /// Registrations held now.
    pub fn registrations(&self) -> usize {
        self.registrations.len()
    }

    /// Sessions open now.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Whether `id` is registered, and from where.
    pub fn registered_addr(&self, id: &Key) -> Option<SocketAddr> {
        self.registrations.get(id).map(|r| r.addr)
    }

    /// A token for `addr` (what a [`Control::Challenge`] carries).
    pub fn issue_token(&self, addr: SocketAddr, now: Now) -> Token {
        self.tokens.0.issue(&canonical_addr(addr), now.unix_secs())
    }

    fn token_ok(&self, token: &Token, addr: &SocketAddr, now: Now) -> bool {
        self.tokens.0.check(token, addr, now.unix_secs())
    }

    /// Takes a control frame from `src`; returns the frames to send. Frames meant for a
    /// client (a challenge, an acknowledgement, a notice) are not the relay's and are ignored.
    pub fn handle_control(
        &mut self,
        now: Now,
        src: SocketAddr,
        frame: &[u8],
    ) -> Vec<RelayTransmit> {
        let src = canonical_addr(src);
        self.counters.frames_in += 1;
        self.counters.bytes_in += frame.len() as u64;
        let control = match Control::decode(frame) {
            Ok(control) => control,
            Err(_) => {
                self.counters.malformed += 1;
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        let reply = match control {
            Control::Hello { .. } => self.hello(now, src),
            Control::Register {
                id,
                token,
                signature,
            } => Some(self.register(now, src, id, token, signature, &mut out)),
            Control::KeepAlive { token } => self.keepalive(now, src, token),
            Control::Open { target, token } => Some(self.open(now, src, target, token, &mut out)),
            Control::Close { session } => {
                self.close(src, session, &mut out);
                None
            }
            Control::Challenge { .. }
            | Control::Registered { .. }
            | Control::KeepAliveAck { .. }
            | Control::Opened { .. }
            | Control::Incoming { .. }
            | Control::Closed { .. }
            | Control::Refused { .. } => None,
        };
        if let Some(reply) = reply {
            let reply = match reply {
                Ok(control) => control,
                Err(reason) => {
                    self.count_refusal(reason);
                    Control::Refused { reason }
                }
            }
            .encode();
            // Never more to the sender than it sent: no amplification, even from a spoofed
            // source.
            if reply.len() <= frame.len() {
                out.insert(
                    0,
                    RelayTransmit {
                        dest: src,
                        frame: reply,
                    },
                );
            }
        }
        for transmit in &out {
            self.counters.frames_out += 1;
            self.counters.bytes_out += transmit.frame.len() as u64;
        }
        out
    }

    fn count_refusal(&mut self, reason: RelayRefusal) {
        let counter = match reason {
            RelayRefusal::BadToken => &mut self.counters.refused_bad_token,
            RelayRefusal::BadSignature => &mut self.counters.refused_bad_signature,
            RelayRefusal::NotRegistered | RelayRefusal::NoSession => {
                &mut self.counters.refused_not_registered
            }
            RelayRefusal::Full => &mut self.counters.refused_full,
            RelayRefusal::RateLimited => &mut self.counters.refused_rate_limited,
        };
        *counter += 1;
    }

    fn hello(&mut self, now: Now, src: SocketAddr) -> Option<Result<Control, RelayRefusal>> {
        if !self.control_rate.allow(src.ip(), now.instant) {
            self.counters.refused_rate_limited += 1;
            return None;
        }
        Some(Ok(Control::Challenge {
            token: self.issue_token(src, now),
        }))
    }

    fn register(
        &mut self,
        now: Now,
        src: SocketAddr,
        id: carrier_id::CarrierId,
        token: Token,
        signature: carrier_id::Signature,
        out: &mut Vec<RelayTransmit>,
    ) -> Result<Control, RelayRefusal> {
        if !self.registration_rate.allow(src.ip(), now.instant) {
            return Err(RelayRefusal::RateLimited);
        }
        if !self.token_ok(&token, &src, now) {
            return Err(RelayRefusal::BadToken);
        }
        if !self.verifications.take(now.instant) {
            return Err(RelayRefusal::RateLimited);
        }
        let signed = register_signed_bytes(&self.key, &token);
        if id.verify(REGISTER_CONTEXT, &signed, &signature).is_err() {
            return Err(RelayRefusal::BadSignature);
        }
        self.expire(now, out);
        let key = Key::of_node(&id);
        // One registration per address: another ID registered from this address (the node
        // restarted with a new key) is replaced.
        if let Some(previous) = self.by_addr.get(&src).copied() {
            if previous != key {
                self.unregister(&previous, out);
            }
        }
        match self.registrations.get_mut(&key) {
            Some(registration) => {
                if registration.addr != src {
                    // The node moved (a new NAT mapping, or it restarted on another port):
                    // its sessions follow it, and it is told of each again, since it may
                    // not know them (a restarted node's first notice went to its old
                    // address, and an opener's retransmitted open would get that session).
                    self.by_addr.remove(&registration.addr);
                    registration.addr = src;
                    self.counters.registered += 1;
                    for (id, session) in &self.sessions {
                        if session.target == key {
                            out.push(RelayTransmit {
                                dest: src,
                                frame: Control::Incoming {
                                    session: *id,
                                    peer: session.opener,
                                }
                                .encode(),
                            });
                        }
                    }
                }
                registration.last_seen = now.instant;
            }
            None => {
                if self.registrations.len() >= self.limits.max_registrations {
                    return Err(RelayRefusal::Full);
                }
                self.registrations.insert(
                    key,
                    Registration {
                        addr: src,
                        last_seen: now.instant,
                        sessions: 0,
                    },
                );
                self.counters.registered += 1;
            }
        }
        self.by_addr.insert(src, key);
        Ok(Control::Registered {
            token: self.issue_token(src, now),
            keepalive_secs: u16::try_from(self.limits.keepalive_interval.as_secs())
                .unwrap_or(u16::MAX),
        })
    }

    fn keepalive(
        &mut self,
        now: Now,
        src: SocketAddr,
        token: Token,
    ) -> Option<Result<Control, RelayRefusal>> {
        if !self.control_rate.allow(src.ip(), now.instant) {
            self.counters.refused_rate_limited += 1;
            return None;
        }
        if !self.token_ok(&token, &src, now) {
            return Some(Err(RelayRefusal::BadToken));
        }
        let timeout = self.limits.registration_timeout;
        let Some(key) = self.by_addr.get(&src).copied() else {
            return Some(Err(RelayRefusal::NotRegistered));
        };
        let Some(registration) = self.registrations.get_mut(&key) else {
            return Some(Err(RelayRefusal::NotRegistered));
        };
        if now
            .instant
            .saturating_duration_since(registration.last_seen)
            > timeout
        {
            // Expired already: it must register again (its sessions are gone with it).
            let mut ignored = Vec::new();
            self.unregister(&key, &mut ignored);
            return Some(Err(RelayRefusal::NotRegistered));
        }
        registration.last_seen = now.instant;
        self.counters.keepalives += 1;
        Some(Ok(Control::KeepAliveAck {
            token: self.issue_token(src, now),
        }))
    }

    fn open(
        &mut self,
        now: Now,
        src: SocketAddr,
        target: Key,
        token: Token,
        out: &mut Vec<RelayTransmit>,
    ) -> Result<Control, RelayRefusal> {
        if !self.session_rate.allow(src.ip(), now.instant) {
            return Err(RelayRefusal::RateLimited);
        }
        if !self.token_ok(&token, &src, now) {
            return Err(RelayRefusal::BadToken);
        }
        self.expire(now, out);
        let Some(registration) = self.registrations.get(&target) else {
            return Err(RelayRefusal::NotRegistered);
        };
        if registration.addr == src {
            return Err(RelayRefusal::NoSession);
        }
        let target_addr = registration.addr;
        if let Some(&session) = self.by_pair.get(&(src, target)) {
            // A retransmitted open: the same session again, and the target told of it again
            // (the first notice is one datagram, and may have been lost).
            out.push(RelayTransmit {
                dest: target_addr,
                frame: Control::Incoming { session, peer: src }.encode(),
            });
            return Ok(Control::Opened { session, target });
        }
        if self.sessions.len() >= self.limits.max_sessions
            || registration.sessions >= self.limits.max_sessions_per_target
        {
            return Err(RelayRefusal::Full);
        }
        let mut session = SessionId(self.entropy.next_u64());
        while self.sessions.contains_key(&session) {
            session = SessionId(self.entropy.next_u64());
        }
        self.sessions.insert(
            session,
            Session {
                opener: src,
                target,
                opened: now.instant,
                last_used: now.instant,
                bytes: 0,
                share: Share::default(),
            },
        );
        self.by_pair.insert((src, target), session);
        if let Some(registration) = self.registrations.get_mut(&target) {
            registration.sessions += 1;
        }
        self.counters.sessions_opened += 1;
        out.push(RelayTransmit {
            dest: target_addr,
            frame: Control::Incoming { session, peer: src }.encode(),
        });
        Ok(Control::Opened { session, target })
    }

    fn close(&mut self, src: SocketAddr, id: SessionId, out: &mut Vec<RelayTransmit>) {
        let Some(session) = self.sessions.get(&id) else {
            return;
        };
        let target_addr = self.registrations.get(&session.target).map(|r| r.addr);
        let other = if src == session.opener {
            target_addr
        } else if Some(src) == target_addr {
            Some(session.opener)
        } else {
            // Not an end: nobody else may close a session.
            self.counters.dropped_outside_session += 1;
            return;
        };
        self.remove_session(id);
        if let Some(dest) = other {
            out.push(RelayTransmit {
                dest,
                frame: Control::Closed { session: id }.encode(),
            });
        }
    }

    fn remove_session(&mut self, id: SessionId) -> Option<Session> {
        let session = self.sessions.remove(&id)?;
        self.by_pair.remove(&(session.opener, session.target));
        if let Some(registration) = self.registrations.get_mut(&session.target) {
            registration.sessions = registration.sessions.saturating_sub(1);
        }
        self.counters.sessions_closed += 1;
        Some(session)
    }

    /// Drops a registration and its sessions, telling each opener.
    fn unregister(&mut self, key: &Key, out: &mut Vec<RelayTransmit>) {
        let Some(registration) = self.registrations.remove(key) else {
            return;
        };
        self.by_addr.remove(&registration.addr);
        let ids: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.target == *key)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(session) = self.remove_session(id) {
                out.push(RelayTransmit {
                    dest: session.opener,
                    frame: Control::Closed { session: id }.encode(),
                });
            }
        }
    }

    /// Drops silent registrations (and their sessions) and idle sessions; returns the
    /// notices to send to the ends that remain. The driver calls it about once a second;
    /// registrations and opens call it too before they count against the caps.
    pub fn poll_expired(&mut self, now: Now) -> Vec<RelayTransmit> {
        let mut out = Vec::new();
        self.expire(now, &mut out);
        for transmit in &out {
            self.counters.frames_out += 1;
            self.counters.bytes_out += transmit.frame.len() as u64;
        }
        out
    }

    fn expire(&mut self, now: Now, out: &mut Vec<RelayTransmit>) {
        let timeout = self.limits.registration_timeout;
        let silent: Vec<Key> = self
            .registrations
            .iter()
            .filter(|(_, r)| now.instant.saturating_duration_since(r.last_seen) > timeout)
            .map(|(key, _)| *key)
            .collect();
        for key in silent {
            self.counters.registrations_expired += 1;
            self.unregister(&key, out);
        }
        let idle: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| self.session_over(s, now.instant))
            .map(|(id, _)| *id)
            .collect();
        for id in idle {
            let target_addr = self
                .sessions
                .get(&id)
                .and_then(|s| self.registrations.get(&s.target))
                .map(|r| r.addr);
            if let Some(session) = self.remove_session(id) {
                for dest in [Some(session.opener), target_addr].into_iter().flatten() {
                    out.push(RelayTransmit {
                        dest,
                        frame: Control::Closed { session: id }.encode(),
                    });
                }
            }
        }
    }

    /// Whether a session is idle too long or past a configured cap.
    fn session_over(&self, session: &Session, now: Instant) -> bool {
        now.saturating_duration_since(session.last_used) > self.limits.session_idle_timeout
            || self
                .limits
                .max_session_duration
                .is_some_and(|cap| now.saturating_duration_since(session.opened) > cap)
            || self
                .limits
                .max_session_bytes
                .is_some_and(|cap| session.bytes >= cap)
    }

    /// Takes a data frame from `src`: the address to send the very same bytes to, or why not.
    /// The frame goes out unchanged, so the relay never sends more than it received.
    pub fn forward(
        &mut self,
        now: Now,
        src: SocketAddr,
        frame: &[u8],
    ) -> Result<SocketAddr, RelayDrop> {
        let src = canonical_addr(src);
        self.counters.frames_in += 1;
        self.counters.bytes_in += frame.len() as u64;
        let result = self.route(now, src, frame);
        match result {
            Ok(_) => {
                self.counters.forwarded_frames += 1;
                self.counters.forwarded_bytes += frame.len() as u64;
                self.counters.frames_out += 1;
                self.counters.bytes_out += frame.len() as u64;
            }
            Err(RelayDrop::Malformed) => self.counters.malformed += 1,
            Err(RelayDrop::NoSession | RelayDrop::NotAnEnd) => {
                self.counters.dropped_outside_session += 1;
            }
            Err(RelayDrop::OverBudget) => {
                self.counters.dropped_over_budget += 1;
                self.counters.dropped_over_budget_bytes += frame.len() as u64;
            }
            Err(RelayDrop::CapReached) => {}
        }
        result
    }

    fn route(&mut self, now: Now, src: SocketAddr, frame: &[u8]) -> Result<SocketAddr, RelayDrop> {
        let (id, _payload) = decode_data(frame).map_err(|_| RelayDrop::Malformed)?;
        let session = self.sessions.get(&id).ok_or(RelayDrop::NoSession)?;
        let registration = self
            .registrations
            .get(&session.target)
            .ok_or(RelayDrop::NoSession)?;
        let registration_alive = now
            .instant
            .saturating_duration_since(registration.last_seen)
            <= self.limits.registration_timeout;
        let dest = if src == session.opener {
            registration.addr
        } else if src == registration.addr {
            session.opener
        } else {
            return Err(RelayDrop::NotAnEnd);
        };
        if !registration_alive || self.session_over(session, now.instant) {
            let capped = registration_alive
                && now.instant.saturating_duration_since(session.last_used)
                    <= self.limits.session_idle_timeout;
            self.remove_session(id);
            return Err(if capped {
                RelayDrop::CapReached
            } else {
                RelayDrop::NoSession
            });
        }
        let bytes = u32::try_from(frame.len()).map_err(|_| RelayDrop::Malformed)?;
        let Some(session) = self.sessions.get_mut(&id) else {
            return Err(RelayDrop::NoSession);
        };
        if !self.bandwidth.admit(now.instant, &mut session.share, bytes) {
            return Err(RelayDrop::OverBudget);
        }
        session.last_used = now.instant;
        session.bytes += u64::from(bytes);
        Ok(dest)
    }

    /// Bytes forwarded within the bandwidth budget since the relay started.
    pub fn budget_used(&self) -> u64 {
        self.bandwidth.total()
    }
}
