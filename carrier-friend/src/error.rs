//! The crate's error types, one per operation family.

use carrier_dht::id::{AddressError, CarrierId, IdError};
use carrier_dht::store::DatabaseError;
use carrier_dht::DhtError;
use quinn::VarInt;

/// Building a TLS identity or configuration, or reading a presented key, failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// rustls refused the key or the configuration.
    #[error("rustls: {0}")]
    Rustls(#[source] rustls::Error),
    /// The presented key is not an Ed25519 SubjectPublicKeyInfo.
    #[error("the presented key is not an Ed25519 public key")]
    NotEd25519,
    /// The presented Ed25519 key is not a valid Carrier ID (non-canonical or small order).
    #[error("the presented key is not a valid Carrier ID: {0}")]
    BadKey(#[source] IdError),
    /// rustls accepted the configuration but quinn cannot use it for QUIC.
    #[error("the TLS configuration is unfit for QUIC: {0}")]
    NotForQuic(String),
}

/// The path table could not give a mapped address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// Every slot holds a path someone pinned; none can be evicted.
    #[error("the path table is full of pinned paths")]
    Full,
    /// The address is not one this table handed out.
    #[error("{0} is not a mapped address of this table")]
    NotMapped(std::net::SocketAddr),
}

/// Opening the link endpoint on the node's socket failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// The TLS identity or configuration could not be built.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The socket could not be wrapped (its address could not be read).
    #[error("the node socket: {0}")]
    Socket(#[source] std::io::Error),
}

/// Dialing a peer failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// No mapped address could be given to the path.
    #[error(transparent)]
    Path(#[from] PathError),
    /// The client TLS configuration could not be built.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// quinn refused to start the connection (endpoint closed, bad address, …).
    #[error("cannot start the connection: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The handshake failed: the peer is not the expected ID, did not answer, or refused us.
    #[error("handshake failed: {0}")]
    Handshake(#[from] quinn::ConnectionError),
}

/// Sending a friend request over `carrier-request/1` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The frame is larger than [`MAX_REQUEST_FRAME_BYTES`](crate::MAX_REQUEST_FRAME_BYTES).
    #[error("a request frame of {0} bytes exceeds the cap")]
    TooLarge(usize),
    /// The connection could not be made.
    #[error(transparent)]
    Dial(#[from] DialError),
    /// The connection failed while the frame was sent.
    #[error("the connection failed: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// Writing the frame failed.
    #[error("writing the frame failed: {0}")]
    Write(#[from] quinn::WriteError),
    /// The peer closed the connection with a code other than
    /// [`close::REQUEST_RECEIVED`](crate::close::REQUEST_RECEIVED).
    #[error("the peer refused the request with code {0}")]
    Refused(VarInt),
}

/// What the friend layer ([`Friends`](crate::Friends)) refuses or fails at.
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
    /// The hello is longer than [`MAX_HELLO_BYTES`](crate::MAX_HELLO_BYTES).
    #[error("a hello of {len} bytes exceeds the cap of {max}")]
    HelloTooLong {
        /// Its length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// The label is longer than [`MAX_LABEL_BYTES`](crate::MAX_LABEL_BYTES).
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
    Info(#[from] crate::wire::InfoError),
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
