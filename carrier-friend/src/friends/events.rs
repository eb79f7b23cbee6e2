//! What the friend layer lists and reports: [`Friend`], [`FriendRequest`],
//! [`OutgoingRequest`], [`FriendEvent`].

use carrier_dht::id::{Address, CarrierId};
use tokio::sync::mpsc;

use super::wire::{Presence, UserInfo};
use crate::link::LinkPath;

/// A friend in the friend list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Friend {
    /// The friend's Carrier ID.
    pub id: CarrierId,
    /// The local label given to the friend (empty until set).
    pub label: String,
    /// The user info the friend sent.
    pub info: UserInfo,
    /// The friend's presence, as it last told.
    pub presence: Presence,
    /// When the friendship started here (Unix seconds).
    pub since_unix_secs: u64,
}

/// A friend request someone sent this node, waiting for accept or refuse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FriendRequest {
    /// Who sent it (proved in the handshake, or the verified signer of the letter).
    pub from: CarrierId,
    /// The requester's user info.
    pub info: UserInfo,
    /// The requester's hello.
    pub hello: Vec<u8>,
    /// When it was taken (Unix seconds).
    pub received_unix_secs: u64,
}

/// A friend request this node sent, until the peer accepts it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingRequest {
    /// The address it was sent to.
    pub to: Address,
    /// The hello.
    pub hello: Vec<u8>,
    /// When it was sent (Unix seconds).
    pub sent_unix_secs: u64,
}

/// What the friend layer reports, each once, after the change it reports is committed.
///
/// An event is sent after its commit, so a node killed in between has the change but never
/// reports it: an application reads [`Friends::friends`](crate::Friends::friends) and
/// [`Friends::incoming_requests`](crate::Friends::incoming_requests) when it starts, then follows the events.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FriendEvent {
    /// A new friend request arrived (also listed by [`Friends::incoming_requests`](crate::Friends::incoming_requests)).
    Request(FriendRequest),
    /// A peer accepted this node's request: it is a friend now.
    Added(CarrierId),
    /// A friend removed this node: it is a friend no more.
    Removed(CarrierId),
    /// A friend's link is up: [`Friends::link`](crate::Friends::link) gives it. Sent once per time the friend comes
    /// online; a link replaced by another (a race of dials, a restart of the friend) does not
    /// count.
    Connected(CarrierId),
    /// A friend that was connected has no link any more: it shut down, vanished (seen within
    /// 22 s by default: a link that hears nothing for the
    /// [silence limit](crate::Liveness::silence_limit) is closed), or stopped being a
    /// friend (then after `Removed`).
    Disconnected(CarrierId),
    /// A friend's link moved to another path on the same connection: a relayed link went
    /// direct (hole punching), or a direct one fell back to its relay. Nothing above the
    /// link sees an interruption. [`Friends::link_path`](crate::Friends::link_path) gives
    /// the path at any time.
    PathChanged(CarrierId, LinkPath),
    /// A friend's user info changed (the new info).
    InfoChanged(CarrierId, UserInfo),
    /// A friend's presence changed (the new presence).
    PresenceChanged(CarrierId, Presence),
}

/// The receiving end of the friend layer's events. Unbounded: the events are few (requests
/// pass the stranger limit first), and none is lost while the application is busy.
pub type FriendEvents = mpsc::UnboundedReceiver<FriendEvent>;
