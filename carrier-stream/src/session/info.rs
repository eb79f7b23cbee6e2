//! [`TransportInfo`]: how a session's link runs, from the link's current path.

use std::net::{IpAddr, SocketAddr};

use carrier_msg::friend::dht::id::CarrierId;
use carrier_msg::friend::dht::Path;
use carrier_msg::friend::Friends;

use crate::error::StreamError;

/// Where a session's traffic goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    /// Straight to the friend, on a local network (a private, link-local, unique-local or
    /// loopback address).
    Lan,
    /// Straight to the friend, across the internet.
    P2p,
    /// Through a relay.
    Relayed,
}

/// How a session's link runs now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransportInfo {
    /// LAN, P2P or relayed.
    pub topology: Topology,
    /// This node's socket.
    pub local: SocketAddr,
    /// The friend's address, or for a relayed path the relay's.
    pub remote: SocketAddr,
    /// The friend (the other end of a relayed path).
    pub peer: CarrierId,
}

fn is_local(ip: IpAddr) -> bool {
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

/// The topology of `path`.
pub(crate) fn topology(path: &Path) -> Topology {
    match path {
        Path::Relayed { .. } => Topology::Relayed,
        Path::Direct(addr) if is_local(addr.ip()) => Topology::Lan,
        // A direct path to a public address, or a kind of path this crate does not know yet.
        _ => Topology::P2p,
    }
}

pub(crate) fn transport_info(
    friends: &Friends,
    peer: &CarrierId,
) -> Result<TransportInfo, StreamError> {
    let link = friends
        .link(peer)
        .ok_or_else(|| StreamError::WrongState("the friend's link is down".into()))?;
    let mapped = link.connection().remote_address();
    let path = friends
        .endpoint()
        .paths()
        .path(mapped)
        .ok_or_else(|| StreamError::WrongState("the link has no path now".into()))?;
    Ok(TransportInfo {
        topology: topology(&path),
        local: friends.dht().local_addr(),
        remote: path.socket_addr(),
        peer: *peer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_names_its_topology() {
        let direct = |s: &str| Path::Direct(s.parse().unwrap_or_else(|_| unreachable!()));
        assert_eq!(topology(&direct("127.0.0.1:1")), Topology::Lan);
        assert_eq!(topology(&direct("192.168.1.2:1")), Topology::Lan);
        assert_eq!(topology(&direct("[fd00::1]:1")), Topology::Lan);
        assert_eq!(topology(&direct("203.0.113.9:1")), Topology::P2p);
        assert_eq!(topology(&direct("[2001:db8::1]:1")), Topology::P2p);
    }
}
