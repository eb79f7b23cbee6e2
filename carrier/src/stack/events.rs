//! The one event stream of a [`Carrier`](super::Carrier) node: what every layer reports, in
//! the order each layer reported it.

use tokio::sync::mpsc;

use super::connection::ConnectionStatus;
use crate::dht::DhtEvent;
use crate::forward::ForwardEvent;
use crate::friend::FriendEvent;
use crate::msg::invite::IncomingInvite;
use crate::msg::MessageEvent;
use crate::mux::ChannelReport;
use crate::stream::SessionReport;

/// Something a layer of the node reports.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Event {
    /// The node's own connection to the network changed (it starts offline).
    Connection(ConnectionStatus),
    /// The DHT node: where it stands (public address, NAT, reachability, role), joins.
    Dht(DhtEvent),
    /// Friend requests, friends added and removed, links up and down, presence, profiles.
    Friend(FriendEvent),
    /// Messages received, and the receipts of those sent.
    Message(MessageEvent),
    /// An invite to an extension whose invites the node takes
    /// ([`Carrier::take_invites`](super::Carrier::take_invites)); answer it with the
    /// messenger's invites.
    Invite(IncomingInvite),
    /// Sessions opened, deactivated, reactivated and closed, and every state of their
    /// streams.
    Session(SessionReport),
    /// Channels opened, refused, pended, resumed and closed, on the forwarder's muxes and
    /// on those started with [`Carrier::mux_config`](super::Carrier::mux_config).
    Channel(ChannelReport),
    /// Forwarded connections opened and closed, refused and denied, services unreachable.
    Forward(ForwardEvent),
}

/// The receiving end of a node's events. Unbounded: a slow reader costs memory, never a
/// lost event; dropping it discards them.
#[derive(Debug)]
pub struct Events {
    pub(super) receiver: mpsc::UnboundedReceiver<Event>,
}

impl Events {
    /// The next event; `None` once the node has shut down and every event was read.
    pub async fn recv(&mut self) -> Option<Event> {
        self.receiver.recv().await
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.receiver.try_recv().ok()
    }
}
