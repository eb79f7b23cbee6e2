//! What sessions and streams refuse or fail at: [`StreamError`], one variant per case.

use carrier_msg::friend::dht::id::CarrierId;

/// What [`Sessions`](crate::Sessions), [`Session`](crate::Session) and
/// [`Stream`](crate::Stream) refuse or fail at. Each case is its own variant, so a caller can
/// tell them apart without reading messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The ID names nobody this node knows: no friend, no friend request either way.
    #[error("{0} is unknown here: no friend, no request")]
    UnknownFriend(CarrierId),
    /// The ID names a peer this node knows (a request waits, either way) that is not a friend.
    #[error("{0} is not a friend")]
    NotAFriend(CarrierId),
    /// The friend refused the session, with its status (never 0) and reason.
    #[error("refused with status {status}: {reason}")]
    Refused {
        /// The refusal's status.
        status: i32,
        /// The refusal's reason.
        reason: String,
    },
    /// The session is not (or no longer) known: closed here, or unknown to the peer.
    #[error("unknown session {0:#018x}")]
    UnknownSession(u64),
    /// The stream is not (or no longer) known to its session.
    #[error("unknown stream {0}")]
    UnknownStream(u32),
    /// The operation does not fit the state: sending on a closed stream, a datagram call on a
    /// reliable stream, a new stream on a deactivated or closed session.
    #[error("wrong state: {0}")]
    WrongState(String),
    /// A datagram longer than [`MAX_DATAGRAM_BYTES`](crate::MAX_DATAGRAM_BYTES).
    #[error("a datagram of {len} bytes exceeds the limit of {max} bytes")]
    DatagramTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Something the peer had to answer did not come in time (a stream open, a session
    /// request).
    #[error("timed out: {0}")]
    Timeout(String),
    /// The stream or the session's link failed under an operation (the link closed, the peer
    /// reset the stream); the reason says which.
    #[error("failed: {0}")]
    Failed(String),
    /// A bundle prefix already has a handler on this node.
    #[error("bundle prefix {0:?} already has a handler")]
    AlreadyHandled(String),
    /// An argument is outside its limit (a bundle or reason too long, a refusal with status
    /// 0).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// [`Sessions::shutdown`](crate::Sessions::shutdown) was called.
    #[error("the sessions layer is shut down")]
    Closed,
}
