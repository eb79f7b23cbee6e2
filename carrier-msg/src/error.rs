//! [`MsgError`]: every refusal its own variant.

use carrier_friend::dht::id::CarrierId;
use carrier_friend::dht::store::DatabaseError;
use carrier_friend::{AlreadyRegistered, FriendError};

use crate::MessageId;

/// Why the messenger refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MsgError {
    /// A message to this node itself.
    #[error("a message to yourself")]
    Yourself,
    /// A message to someone who is not a friend.
    #[error("{0} is not a friend")]
    NotAFriend(CarrierId),
    /// A message of no bytes.
    #[error("an empty message")]
    Empty,
    /// A message over [`MAX_MESSAGE_BYTES`](crate::MAX_MESSAGE_BYTES).
    #[error("a message of {len} bytes, over the cap of {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// `ack` of a message that is not in the inbox (never received, or acked already).
    #[error("no message {0} in the inbox")]
    UnknownMessage(MessageId),
    /// The messenger was shut down.
    #[error("the messenger is shut down")]
    Closed,
    /// The node has no database (its DHT was started without a data directory).
    #[error("the node has no data directory")]
    NoStore,
    /// Another messenger is running on this friend layer.
    #[error("a messenger runs on this node already")]
    AlreadyRunning(#[from] AlreadyRegistered),
    /// The friend layer failed.
    #[error(transparent)]
    Friend(#[from] FriendError),
    /// The node's database failed.
    #[error(transparent)]
    Database(#[from] DatabaseError),
}
