//! [`TransportInfo`]: how a session's link runs, from the link's current path.

use std::net::SocketAddr;

use carrier_msg::friend::dht::id::CarrierId;
use carrier_msg::friend::Friends;

use crate::error::StreamError;

pub use carrier_msg::friend::Topology;

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

pub(crate) fn transport_info(
    friends: &Friends,
    peer: &CarrierId,
) -> Result<TransportInfo, StreamError> {
    let link = friends
        .link(peer)
        .ok_or_else(|| StreamError::WrongState("the friend's link is down".into()))?;
    let path = friends
        .link_path(&link)
        .ok_or_else(|| StreamError::WrongState("the link has no path now".into()))?;
    Ok(TransportInfo {
        topology: path.topology,
        local: path.local,
        remote: path.remote(),
        peer: *peer,
    })
}
