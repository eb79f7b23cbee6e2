//! Where a datagram comes from or goes to, and the address prefixes that limits are counted by.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// Where a datagram goes or came from.
///
/// Today every path is a direct UDP address; relayed paths (through a relay node that forwards
/// for us) are a later variant, which is why this is an enum the layers above match on rather
/// than a bare `SocketAddr`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Path {
    /// Straight to this UDP address.
    Direct(SocketAddr),
}

impl Path {
    /// The UDP address the datagram physically travels to or from.
    pub fn socket_addr(&self) -> SocketAddr {
        match self {
            Path::Direct(addr) => *addr,
        }
    }

    /// The IP address, for rate limits and quotas.
    pub fn ip(&self) -> IpAddr {
        self.socket_addr().ip()
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
