//! The socket's relayed paths as quinn sees them: each `(relay, session)` a node uses gets a
//! stand-in UDP address from a reserved IPv6 unique-local range ([`RELAYED_PREFIX`]) that
//! never reaches the wire. quinn sends to the stand-in; the socket wraps the packet in a relay
//! data frame and sends it to the relay. A data frame from the relay for that session comes up
//! to quinn from the stand-in, its header stripped.

use std::collections::HashMap;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};

use crate::wire::path::SessionId;

/// The /64 stand-in addresses come from: `fd72:656c:6179:6564::/64`, a unique-local
/// (RFC 4193) prefix spelling "relayed". Nothing is ever sent to it.
pub const RELAYED_PREFIX: [u8; 8] = [0xfd, 0x72, 0x65, 0x6c, 0x61, 0x79, 0x65, 0x64];

/// Relayed paths one socket holds at most.
pub const MAX_RELAYED_PATHS: usize = 4096;

/// Stand-in addresses both ways.
#[derive(Debug, Default)]
pub(crate) struct RelayedPaths {
    by_path: HashMap<(SocketAddr, SessionId), SocketAddr>,
    by_addr: HashMap<SocketAddr, (SocketAddr, SessionId)>,
    last: u64,
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
        Some(addr)
    }

    /// Forgets `(relay, session)`.
    pub(crate) fn remove(&mut self, relay: SocketAddr, session: SessionId) {
        if let Some(addr) = self.by_path.remove(&(relay, session)) {
            self.by_addr.remove(&addr);
        }
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
