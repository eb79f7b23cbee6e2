//! The socket's relayed paths as quinn sees them: each `(relay, session)` a node uses gets a
//! stand-in UDP address from a reserved IPv6 unique-local range ([`RELAYED_PREFIX`]) that
//! never reaches the wire. quinn sends to the stand-in; the socket wraps the packet in a relay
//! data frame and sends it to the relay. A data frame from the relay for that session comes up
//! to quinn from the stand-in, its header stripped.
//!
//! Each relay in use also keeps when a data frame was last sent to it and last came from it
//! (atomics, so the hot path takes no write lock): a relay that stops answering while traffic
//! goes to it is how a node notices a dead relay within seconds ([`RelayTraffic`]).

use std::collections::HashMap;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::wire::path::SessionId;

/// The /64 stand-in addresses come from: `fd72:656c:6179:6564::/64`, a unique-local
/// (RFC 4193) prefix spelling "relayed". Nothing is ever sent to it.
pub const RELAYED_PREFIX: [u8; 8] = [0xfd, 0x72, 0x65, 0x6c, 0x61, 0x79, 0x65, 0x64];

/// Relayed paths one socket holds at most.
pub const MAX_RELAYED_PATHS: usize = 4096;

/// When data frames last went to a relay and last came from it, as [`NodeSocket::relay_traffic`]
/// reports it.
///
/// [`NodeSocket::relay_traffic`]: crate::socket::NodeSocket::relay_traffic
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayTraffic {
    /// The relay.
    pub relay: SocketAddr,
    /// When this node last sent a data frame to it, if ever.
    pub last_sent: Option<Instant>,
    /// When a data frame of one of this node's sessions last came from it, if ever.
    pub last_heard: Option<Instant>,
}

/// The two times of one relay, in milliseconds since the table's epoch plus one (0: never).
#[derive(Debug, Default)]
struct Times {
    sent: AtomicU64,
    heard: AtomicU64,
}

/// Stand-in addresses both ways.
#[derive(Debug)]
pub(crate) struct RelayedPaths {
    by_path: HashMap<(SocketAddr, SessionId), SocketAddr>,
    by_addr: HashMap<SocketAddr, (SocketAddr, SessionId)>,
    /// Each relay in use: how many paths use it, and its traffic times.
    relays: HashMap<SocketAddr, (usize, Arc<Times>)>,
    epoch: Instant,
    last: u64,
}

impl Default for RelayedPaths {
    fn default() -> Self {
        Self {
            by_path: HashMap::new(),
            by_addr: HashMap::new(),
            relays: HashMap::new(),
            epoch: Instant::now(),
            last: 0,
        }
    }
}

impl RelayedPaths {
    /// Whether `addr` is in the stand-in range.
    pub(crate) fn is_stand_in(addr: SocketAddr) -> bool {
        match addr {
            SocketAddr::V6(v6) => v6.ip().octets()[..8] == RELAYED_PREFIX,
            SocketAddr::V4(_) => false,
        }
    }

    /// The stand-in of `(relay, session)`: the one it has, or a new one; `None` when the
    /// table is full.
    pub(crate) fn add(&mut self, relay: SocketAddr, session: SessionId) -> Option<SocketAddr> {
        if let Some(addr) = self.by_path.get(&(relay, session)) {
            return Some(*addr);
        }
        if self.by_path.len() >= MAX_RELAYED_PATHS {
            return None;
        }
        self.last += 1;
        let mut octets = [0u8; 16];
        octets[..8].copy_from_slice(&RELAYED_PREFIX);
        octets[8..].copy_from_slice(&self.last.to_be_bytes());
        let addr = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(octets), 1, 0, 0));
        self.by_path.insert((relay, session), addr);
        self.by_addr.insert(addr, (relay, session));
        self.relays.entry(relay).or_default().0 += 1;
        Some(addr)
    }

    /// Forgets `(relay, session)`.
    pub(crate) fn remove(&mut self, relay: SocketAddr, session: SessionId) {
        if let Some(addr) = self.by_path.remove(&(relay, session)) {
            self.by_addr.remove(&addr);
            if let Some((paths, _)) = self.relays.get_mut(&relay) {
                *paths -= 1;
                if *paths == 0 {
                    self.relays.remove(&relay);
                }
            }
        }
    }

    /// Notes a data frame sent to `relay` now.
    pub(crate) fn note_sent(&self, relay: SocketAddr) {
        if let Some((_, times)) = self.relays.get(&relay) {
            times.sent.store(self.stamp(), Ordering::Relaxed);
        }
    }

    /// Notes a data frame of one of this node's sessions heard from `relay` now.
    pub(crate) fn note_heard(&self, relay: SocketAddr) {
        if let Some((_, times)) = self.relays.get(&relay) {
            times.heard.store(self.stamp(), Ordering::Relaxed);
        }
    }

    /// The traffic times of every relay in use.
    pub(crate) fn traffic(&self) -> Vec<RelayTraffic> {
        let at = |stamp: u64| {
            stamp
                .checked_sub(1)
                .map(|ms| self.epoch + Duration::from_millis(ms))
        };
        self.relays
            .iter()
            .map(|(relay, (_, times))| RelayTraffic {
                relay: *relay,
                last_sent: at(times.sent.load(Ordering::Relaxed)),
                last_heard: at(times.heard.load(Ordering::Relaxed)),
            })
            .collect()
    }

    fn stamp(&self) -> u64 {
        let ms = Instant::now()
            .saturating_duration_since(self.epoch)
            .as_millis();
        u64::try_from(ms).unwrap_or(u64::MAX - 1) + 1
    }

    /// The stand-in of `(relay, session)`, if the socket uses it.
    pub(crate) fn stand_in(&self, relay: SocketAddr, session: SessionId) -> Option<SocketAddr> {
        self.by_path.get(&(relay, session)).copied()
    }

    /// The relayed path a stand-in names.
    pub(crate) fn path(&self, addr: SocketAddr) -> Option<(SocketAddr, SessionId)> {
        self.by_addr.get(&addr).copied()
    }
}
