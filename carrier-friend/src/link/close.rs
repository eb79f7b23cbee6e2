//! Application close codes: why a link or a request connection was closed.
//!
//! They travel in QUIC's `CONNECTION_CLOSE` frame, so the peer learns exactly why (a refused
//! friend sees [`NOT_A_FRIEND`], not a timeout). Codes are part of the wire protocol: never
//! renumber one.

use quinn::VarInt;

/// A normal close: the side that closes is done with the link.
pub const DONE: VarInt = VarInt::from_u32(0);

/// `carrier/1`: the acceptance hook refused the peer's ID. Sent right after the handshake,
/// before any stream of the peer is accepted.
pub const NOT_A_FRIEND: VarInt = VarInt::from_u32(0x10);

/// `carrier/1`: the two friends dialled each other at once and this link lost the friend
/// layer's tie-break: the other link between them stays. Streams opened on it
/// fail with this code; their layer sends again on the link that stays.
pub const DUPLICATE: VarInt = VarInt::from_u32(0x11);

/// `carrier/1`: nothing arrived on the link for
/// [`SILENCE_LIMIT`](super::transport::SILENCE_LIMIT), though the dialling side's keep-alives
/// and their acknowledgements cross it every
/// [`KEEPALIVE_INTERVAL`](super::transport::KEEPALIVE_INTERVAL): the peer is taken for gone.
/// Usually nobody hears the close; a peer that does (the path failed one way only) dials
/// again.
pub const SILENT: VarInt = VarInt::from_u32(0x12);

/// `carrier-request/1`: the one request frame arrived whole; the connection's work is done.
pub const REQUEST_RECEIVED: VarInt = VarInt::from_u32(0x20);

/// `carrier-request/1`: the frame announced or carried more than
/// [`MAX_REQUEST_FRAME_BYTES`](super::MAX_REQUEST_FRAME_BYTES).
pub const REQUEST_TOO_LARGE: VarInt = VarInt::from_u32(0x21);

/// `carrier-request/1`: a second frame, on the same stream or on another one.
pub const REQUEST_EXTRA_FRAME: VarInt = VarInt::from_u32(0x22);

/// `carrier-request/1`: the stream ended inside the frame.
pub const REQUEST_MALFORMED: VarInt = VarInt::from_u32(0x23);

/// `carrier-request/1`: no whole frame within
/// [`REQUEST_TIMEOUT`](super::REQUEST_TIMEOUT) (the duration; this is the code saying it ran
/// out).
pub const REQUEST_TIMED_OUT: VarInt = VarInt::from_u32(0x24);

/// `carrier-request/1`: the frame arrived whole, but the receiver did not take it (it could
/// not store it, or did not answer within [`REQUEST_TIMEOUT`](super::REQUEST_TIMEOUT)): the
/// sender should try again later.
pub const REQUEST_NOT_TAKEN: VarInt = VarInt::from_u32(0x25);

/// The connection's ALPN is neither `carrier/1` nor `carrier-request/1` (rustls only lets
/// offered ones through, so this means a bug, not a peer's choice).
pub const UNKNOWN_ALPN: VarInt = VarInt::from_u32(0x30);
