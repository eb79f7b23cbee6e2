//! Where a link's traffic goes: [`Topology`] and [`LinkPath`].

use std::net::{IpAddr, SocketAddr};

use carrier_dht::Path;

/// Where a link's traffic goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Topology {
    /// Straight to the friend, on a local network (a private, link-local, unique-local or
    /// loopback address).
    Lan,
    /// Straight to the friend, across the internet.
    P2p,
    /// Through a relay.
    Relayed,
}

impl Topology {
    /// The topology of `path`.
    pub fn of(path: &Path) -> Topology {
        match path {
            Path::Relayed { .. } => Topology::Relayed,
            Path::Direct(addr) if is_local(addr.ip()) => Topology::Lan,
            // A direct path to a public address, or a kind of path this crate does not know.
            _ => Topology::P2p,
        }
    }

    /// `lan`, `p2p` or `relayed`.
    pub fn name(self) -> &'static str {
        match self {
            Topology::Lan => "lan",
            Topology::P2p => "p2p",
            Topology::Relayed => "relayed",
        }
    }
}

impl std::fmt::Display for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a link runs now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkPath {
    /// LAN, P2P or relayed.
    pub topology: Topology,
    /// This node's socket.
    pub local: SocketAddr,
    /// The real path: the friend's address, or a relay's and the session on it.
    pub path: Path,
}

impl LinkPath {
    /// The link on `path` from the socket at `local`.
    pub fn new(local: SocketAddr, path: Path) -> LinkPath {
        LinkPath {
            topology: Topology::of(&path),
            local,
            path,
        }
    }

    /// The address packets go to: the friend's, or the relay's.
    pub fn remote(&self) -> SocketAddr {
        self.path.socket_addr()
    }
}

/// Whether `ip` is on a local network: private, link-local, unique-local or loopback.
pub fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private() || v4.is_loopback() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| is_local(IpAddr::V4(v4)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn direct(addr: &str) -> Path {
        Path::Direct(addr.parse().unwrap())
    }

    #[test]
    fn a_paths_topology_follows_its_kind_and_address() {
        assert_eq!(Topology::of(&direct("127.0.0.1:1")), Topology::Lan);
        assert_eq!(Topology::of(&direct("10.0.3.2:1")), Topology::Lan);
        assert_eq!(Topology::of(&direct("192.168.1.2:1")), Topology::Lan);
        assert_eq!(Topology::of(&direct("[fd00::1]:1")), Topology::Lan);
        assert_eq!(Topology::of(&direct("[::ffff:10.1.2.3]:1")), Topology::Lan);
        assert_eq!(Topology::of(&direct("198.18.1.5:1")), Topology::P2p);
        assert_eq!(Topology::of(&direct("[2001:db8::1]:1")), Topology::P2p);
        let relayed = Path::Relayed {
            relay: "198.18.1.9:7".parse().unwrap(),
            session: carrier_dht::SessionId(3),
        };
        assert_eq!(Topology::of(&relayed), Topology::Relayed);
        assert_eq!(Topology::Relayed.to_string(), "relayed");
    }
}
