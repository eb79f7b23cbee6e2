//! The link's error types, one per operation family.

use carrier_dht::id::IdError;
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
    /// A relayed path the node's socket does not use (`NodeSocket::add_relayed_path` first).
    #[error("the relayed path {0:?} is not in use on this socket")]
    NotInUse(carrier_dht::Path),
    /// A dial was given no path to try.
    #[error("no path to dial")]
    NoCandidates,
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
    /// The frame is larger than [`MAX_REQUEST_FRAME_BYTES`](super::MAX_REQUEST_FRAME_BYTES).
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
    /// [`close::REQUEST_RECEIVED`](super::close::REQUEST_RECEIVED).
    #[error("the peer refused the request with code {0}")]
    Refused(VarInt),
}
