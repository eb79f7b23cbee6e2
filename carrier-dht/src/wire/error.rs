//! Errors of the wire formats: a malformed datagram or frame, an invalid record.

/// Why an incoming packet or frame was dropped before it reached the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The datagram is larger than [`crate::MAX_DATAGRAM_BYTES`].
    #[error("datagram of {0} bytes is oversized")]
    Oversized(usize),
    /// The datagram is too short to hold a header and a tag.
    #[error("datagram of {0} bytes is too short")]
    TooShort(usize),
    /// The first byte is not a DHT class this node speaks.
    #[error("unknown packet class {0:#04x}")]
    Class(u8),
    /// Unknown flag bits are set.
    #[error("unknown flags {0:#04x}")]
    Flags(u8),
    /// The sender ID is not a valid Carrier ID, or key agreement with it is weak.
    #[error("invalid sender ID")]
    BadSender,
    /// The tag does not verify under the pair key.
    #[error("packet failed authentication")]
    Unauthenticated,
    /// The frame does not decode.
    #[error("malformed frame")]
    Malformed,
    /// The frame decodes but bytes follow it.
    #[error("{0} trailing bytes after the frame")]
    Trailing(usize),
}

/// Why a stored record or value was refused by its own checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// A record format version this node does not know.
    #[error("unknown record version {0}")]
    Version(u8),
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// The value does not belong under the key it was offered for.
    #[error("value does not match its key")]
    WrongKey,
}
