//! Where a datagram comes from or goes to, and the address prefixes that limits are counted by.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// Names a relay session: in a relayed data frame's header, in the relay's control frames and
/// in [`Path::Relayed`]. Chosen by the relay at random.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SessionId(pub u64);

/// Where a datagram goes or came from: straight to a UDP address, or through a relay that
/// forwards it within a session. An enum the layers above match on rather than a bare
/// `SocketAddr`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Path {
    /// Straight to this UDP address.
    Direct(SocketAddr),
    /// Through the relay at `relay`, in its session `session` (the relay knows the other end).
    Relayed {
        /// Where the relay listens.
        relay: SocketAddr,
        /// The session at that relay.
        session: SessionId,
    },
}

impl Path {
    /// The UDP address the datagram physically travels to or from: the relay's for a relayed
    /// path.
    pub fn socket_addr(&self) -> SocketAddr {
        match self {
            Path::Direct(addr) => *addr,
            Path::Relayed { relay, .. } => *relay,
        }
    }

    /// The IP address the datagram physically travels to or from (the relay's for a relayed
    /// path), for rate limits and quotas of the DHT, which speaks only on direct paths.
    pub fn ip(&self) -> IpAddr {
        self.socket_addr().ip()
    }

    /// Whether the path goes through a relay.
    pub fn is_relayed(&self) -> bool {
        matches!(self, Path::Relayed { .. })
    }
}

impl From<SocketAddr> for Path {
    fn from(addr: SocketAddr) -> Self {
        Path::Direct(addr)
    }
}

impl fmt::Debug for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Direct(addr) => write!(f, "{addr}"),
            Path::Relayed { relay, session } => write!(f, "{relay}/{:016x}", session.0),
        }
    }
}

/// An IPv4-mapped IPv6 address (a dual-stack socket's view of an IPv4 peer) as the IPv4
/// address it carries, so a peer has one address whichever way a socket reports it.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// [`canonical_ip`] for a socket address; the port is kept.
pub fn canonical_addr(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(canonical_ip(addr.ip()), addr.port())
}

/// An IPv4 /24 or IPv6 /64: the unit a single operator can cheaply fill with addresses, so
/// the unit that bucket diversity, quotas and rate limits count by.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum Subnet {
    /// The first three octets of an IPv4 address.
    V4([u8; 3]),
    /// The first eight bytes of an IPv6 address.
    V6([u8; 8]),
}

impl Subnet {
    /// The subnet `ip` belongs to. IPv4-mapped IPv6 addresses count as IPv4.
    pub fn of(ip: IpAddr) -> Self {
        match canonical_ip(ip) {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                Subnet::V4([o[0], o[1], o[2]])
            }
            IpAddr::V6(v6) => {
                let o = v6.octets();
                let mut prefix = [0u8; 8];
                prefix.copy_from_slice(&o[..8]);
                Subnet::V6(prefix)
            }
        }
    }
}

/// Feeds `addr` to `hasher` unambiguously: its family, its IP's octets, its port
/// (little-endian). What address tokens and punch MACs bind an address with.
pub(crate) fn hash_addr(hasher: &mut blake3::Hasher, addr: &SocketAddr) {
    match addr {
        SocketAddr::V4(v4) => {
            hasher.update(&[4]);
            hasher.update(&v4.ip().octets());
        }
        SocketAddr::V6(v6) => {
            hasher.update(&[6]);
            hasher.update(&v6.ip().octets());
        }
    }
    hasher.update(&addr.port().to_le_bytes());
}
