//! What a forwarder reports: [`ForwardEvent`]s, in [`ForwardEvents`].

use std::net::SocketAddr;

use carrier_mux::stream::msg::friend::dht::id::CarrierId;
use tokio::sync::mpsc;

/// Which end of a forwarded connection this node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The forwarding's end: a local program connected to this node's listener.
    Forwarding,
    /// The service's end: this node connected to one of its services for a friend.
    Serving,
}

/// What happens to services and forwardings, in the order this node saw it. Every refusal
/// and failure is also logged (`tracing`, target `carrier_forward`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwardEvent {
    /// A forwarded connection opened: its channel was accepted.
    Opened {
        /// This node's end.
        side: Side,
        /// The friend at the other end.
        friend: CarrierId,
        /// The service.
        service: String,
        /// The TCP peer here: the local program (forwarding) or the service (serving).
        peer: SocketAddr,
    },
    /// A forwarded connection closed, with what it carried.
    Closed {
        /// This node's end.
        side: Side,
        /// The friend at the other end.
        friend: CarrierId,
        /// The service.
        service: String,
        /// Bytes that came from the friend.
        bytes_in: u64,
        /// Bytes that went to the friend.
        bytes_out: u64,
        /// `None` if both ways ended cleanly, else what failed.
        error: Option<String>,
    },
    /// A local connection of a forwarding was closed at once: the friend refused it (an
    /// unknown service, one this node may not use, one that is not reachable there) or could
    /// not be reached.
    Refused {
        /// The friend.
        friend: CarrierId,
        /// The service asked for.
        service: String,
        /// The local program's address.
        peer: SocketAddr,
        /// Why.
        reason: String,
    },
    /// A friend asked for a service this node does not offer them (unknown, or not allowed:
    /// they are told the same); refused.
    Denied {
        /// The friend.
        friend: CarrierId,
        /// The service asked for (as sent, lossily decoded).
        service: String,
    },
    /// A friend's connection to a service failed: the service did not answer at its target.
    Unreachable {
        /// The friend.
        friend: CarrierId,
        /// The service.
        service: String,
        /// Its target.
        target: String,
        /// Why.
        reason: String,
    },
}

/// The forwarder's events ([`ForwardEvent`]); unbounded, so a slow reader costs memory,
/// never an event. Dropping it discards what follows.
#[derive(Debug)]
pub struct ForwardEvents {
    pub(crate) receiver: mpsc::UnboundedReceiver<ForwardEvent>,
}

impl ForwardEvents {
    /// The next event; `None` once the forwarder stopped.
    pub async fn recv(&mut self) -> Option<ForwardEvent> {
        self.receiver.recv().await
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<ForwardEvent> {
        self.receiver.try_recv().ok()
    }
}
