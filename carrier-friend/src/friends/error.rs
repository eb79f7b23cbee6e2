//! What the friend layer refuses or fails at.

use carrier_dht::id::{AddressError, CarrierId};
use carrier_dht::store::DatabaseError;
use carrier_dht::DhtError;

use crate::link::EndpointError;

/// What the friend layer ([`Friends`](super::Friends)) refuses or fails at.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FriendError {
    /// A node cannot befriend itself.
    #[error("that is this node's own address")]
    Yourself,
    /// The text is not a valid Carrier address.
    #[error("invalid address: {0}")]
    InvalidAddress(#[from] AddressError),
    /// No pending request from this ID.
    #[error("no pending friend request from {0}")]
    UnknownRequest(CarrierId),
    /// Not a friend.
    #[error("{0} is not a friend")]
    NotAFriend(CarrierId),
    /// A friend request needs a hello of at least one byte.
    #[error("the hello is empty")]
    EmptyHello,
    /// The hello is longer than [`MAX_HELLO_BYTES`](super::wire::MAX_HELLO_BYTES).
    #[error("a hello of {len} bytes exceeds the cap of {max}")]
    HelloTooLong {
        /// Its length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// The label is longer than [`MAX_LABEL_BYTES`](super::wire::MAX_LABEL_BYTES).
    #[error("a label of {len} bytes exceeds the cap of {max}")]
    LabelTooLong {
        /// Its length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// The friend's peer record could not be found, or none of its addresses answered.
    #[error("{0} cannot be reached now")]
    Unreachable(CarrierId),
    /// A user-info field is longer than its cap (each field its own variant).
    #[error(transparent)]
    Info(#[from] super::wire::InfoError),
    /// The ID is on the block list.
    #[error("{0} is blocked")]
    Blocked(CarrierId),
    /// The node keeps nothing on disk (a [`Dht`](crate::dht::Dht) without a data directory):
    /// the friend layer needs the node's database.
    #[error("the node has no database: give it a data directory")]
    NoStore,
    /// The node's database failed.
    #[error(transparent)]
    Database(#[from] DatabaseError),
    /// The DHT failed.
    #[error(transparent)]
    Dht(#[from] DhtError),
    /// The QUIC endpoint could not be opened.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
}
