//! Delay through the socket's test seam: the lab's kernel has no `netem` to delay packets.

use std::net::SocketAddr;
use std::time::Duration;

use carrier::dht::socket::{Conditioner, Fate};

/// Delays every datagram a node's socket sends and receives by a fixed time each way, so a
/// path between two delayed nodes has a round trip of twice the sum of their delays.
///
/// Install it with `dht.socket().set_conditioner(Some(Arc::new(SocketDelay::each_way(d))))`,
/// remove it with `set_conditioner(None)`. Only the node's own socket is slowed; plain
/// sockets in the same namespace are not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketDelay {
    each_way: Duration,
}

impl SocketDelay {
    /// Delays each datagram by `each_way`, outgoing and incoming alike.
    pub fn each_way(each_way: Duration) -> SocketDelay {
        SocketDelay { each_way }
    }

    /// The delay each datagram gets in each direction.
    pub fn delay(&self) -> Duration {
        self.each_way
    }
}

impl Conditioner for SocketDelay {
    fn outgoing(&self, _to: SocketAddr, _data: &[u8]) -> Fate {
        Fate::Delay(self.each_way)
    }

    fn incoming(&self, _from: SocketAddr, _data: &[u8]) -> Fate {
        Fate::Delay(self.each_way)
    }
}
