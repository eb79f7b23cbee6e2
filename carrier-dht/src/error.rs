//! Error types of the DHT core.

use crate::bounded::TooLong;
use crate::message::Refusal;

/// Why an incoming packet or frame was dropped before it reached the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The datagram is larger than [`crate::packet::MAX_DATAGRAM_BYTES`].
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

/// Why a command given to a [`crate::Node`] could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// A payload or list is over its cap.
    #[error(transparent)]
    TooLarge(#[from] TooLong),
    /// The node knows no other node to ask: bootstrap it first.
    #[error("no known nodes: bootstrap first")]
    NotBootstrapped,
    /// The record or value is invalid as given.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The letter could not be sealed to its recipient.
    #[error(transparent)]
    Letter(#[from] crate::mailbox::LetterError),
}

/// Why storing a value or record was refused, by a storer or locally.
pub type StoreError = Refusal;
