//! The frames of the messages protocol, on a friend link and in mailbox letters.
//!
//! Every frame is `VERSION ‖ postcard(Frame)` (or `VERSION ‖ postcard(Large)` for a large
//! message on its own stream), decoded by [`decode_frame`] / [`decode_large`] with bounded
//! field types and `decode_exact`: a malformed, oversized, trailing or unknown-version frame
//! is an error, never a panic, and no decoder allocates beyond the frame's cap.
//!
//! - [`Batch`]: messages of up to [`MAX_SMALL_BYTES`] and explicit skips, each with its
//!   sequence in the sender's epoch for this friend.
//! - [`Large`]: one message over [`MAX_SMALL_BYTES`], with its own ID and the sequence it
//!   follows; it travels alone on its own stream so it never holds small ones up.
//! - [`Receipt`]: what the receiver committed, as sequence ranges and large-message IDs.
//!
//! On the `MESSAGES` stream a frame is preceded by its length (u32, little-endian); a letter
//! in the shared message mailbox is [`LETTER_TAG`] ‖ frame.

use carrier_friend::dht::bounded::{BoundedBytes, BoundedVec};
use carrier_friend::dht::message::decode_exact;
use serde::{Deserialize, Serialize};

use crate::MessageId;

/// The wire version, the first byte of every frame.
pub(crate) const VERSION: u8 = 1;
/// The first byte of a carrier-msg letter in the shared message mailbox (the friend layer's
/// letters start with `0xF1`; each layer leaves the other's alone).
pub(crate) const LETTER_TAG: u8 = 0x4D;
/// The largest message that keeps the gap-free sequence: 64 KiB.
pub(crate) const MAX_SMALL_BYTES: usize = 64 * 1024;
/// The largest message: 5 MiB.
pub(crate) const MAX_MESSAGE_BYTES: usize = 5 * 1024 * 1024;
/// Items one batch carries at most.
pub(crate) const MAX_BATCH_ITEMS: usize = 1024;
/// The largest batch or receipt frame on the `MESSAGES` stream (a batch is cut well below).
pub(crate) const MAX_FRAME_BYTES: usize = 1024 * 1024;
/// The largest large-message frame: the message and its header.
pub(crate) const MAX_LARGE_FRAME_BYTES: usize = MAX_MESSAGE_BYTES + 128;
/// Ranges and IDs one receipt carries at most.
pub(crate) const MAX_RECEIPT_ENTRIES: usize = 256;

/// A closed range of sequences, `first..=last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SeqRange {
    pub(crate) first: u64,
    pub(crate) last: u64,
}

/// One message of up to [`MAX_SMALL_BYTES`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Small {
    pub(crate) seq: u64,
    pub(crate) id: MessageId,
    /// When the sender's application sent it (Unix ms).
    pub(crate) sent_at_ms: u64,
    /// Sent while the receiver was offline (the sender held no link to it).
    pub(crate) offline: bool,
    pub(crate) body: BoundedBytes<MAX_SMALL_BYTES>,
}

/// What one sequence (or range of them) carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Item {
    /// A message.
    Message(Small),
    /// Sequences whose messages failed or expired: the receiver moves past them.
    Skip(SeqRange),
}

impl Item {
    /// The sequences this item covers.
    pub(crate) fn range(&self) -> SeqRange {
        match self {
            Item::Message(m) => SeqRange {
                first: m.seq,
                last: m.seq,
            },
            Item::Skip(range) => *range,
        }
    }
}

/// Items of one epoch, in sequence order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Batch {
    pub(crate) epoch: u64,
    pub(crate) items: BoundedVec<Item, MAX_BATCH_ITEMS>,
}

/// What the receiver committed to its inbox (or moved past, for skips).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Receipt {
    pub(crate) epoch: u64,
    pub(crate) delivered: BoundedVec<SeqRange, MAX_RECEIPT_ENTRIES>,
    pub(crate) large: BoundedVec<MessageId, MAX_RECEIPT_ENTRIES>,
}

/// A frame on the `MESSAGES` stream or in a letter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Frame {
    Batch(Batch),
    Receipt(Receipt),
}

/// One message over [`MAX_SMALL_BYTES`], alone on its stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Large {
    pub(crate) epoch: u64,
    pub(crate) id: MessageId,
    /// The sequence of the last small message sent before it (0: none): it is raised only
    /// after that one.
    pub(crate) after: u64,
    pub(crate) sent_at_ms: u64,
    pub(crate) offline: bool,
    pub(crate) body: BoundedBytes<MAX_MESSAGE_BYTES>,
}

/// Why bytes are not a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WireError {
    #[error("empty frame")]
    Empty,
    #[error("unknown wire version {0}")]
    Version(u8),
    #[error("frame of {0} bytes over its cap")]
    TooLarge(usize),
    #[error("malformed frame")]
    Malformed,
}

fn encode_versioned<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = vec![VERSION];
    // Invariant: postcard serializes these plain structs into a Vec without failing.
    #[allow(clippy::expect_used)]
    let body = postcard::to_allocvec(value).expect("postcard encodes plain structs");
    bytes.extend(body);
    bytes
}

fn decode_versioned<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    cap: usize,
) -> Result<T, WireError> {
    if bytes.len() > cap {
        return Err(WireError::TooLarge(bytes.len()));
    }
    let (&version, rest) = bytes.split_first().ok_or(WireError::Empty)?;
    if version != VERSION {
        return Err(WireError::Version(version));
    }
    decode_exact(rest).map_err(|_| WireError::Malformed)
}

/// Encodes a frame (without its length prefix).
pub(crate) fn encode_frame(frame: &Frame) -> Vec<u8> {
    encode_versioned(frame)
}

/// Decodes a frame of at most [`MAX_FRAME_BYTES`].
pub(crate) fn decode_frame(bytes: &[u8]) -> Result<Frame, WireError> {
    decode_versioned(bytes, MAX_FRAME_BYTES)
}

/// Encodes a large message's frame.
pub(crate) fn encode_large(large: &Large) -> Vec<u8> {
    encode_versioned(large)
}

/// Decodes a large message's frame of at most [`MAX_LARGE_FRAME_BYTES`].
pub(crate) fn decode_large(bytes: &[u8]) -> Result<Large, WireError> {
    decode_versioned(bytes, MAX_LARGE_FRAME_BYTES)
}

/// A mailbox letter holding `frame`.
pub(crate) fn encode_letter(frame: &Frame) -> Vec<u8> {
    let mut bytes = vec![LETTER_TAG];
    bytes.extend(encode_frame(frame));
    bytes
}

/// The frame in a carrier-msg letter; `None` if the letter is another layer's.
pub(crate) fn decode_letter(letter: &[u8]) -> Option<Result<Frame, WireError>> {
    match letter.split_first() {
        Some((&LETTER_TAG, frame)) => Some(decode_frame(frame)),
        _ => None,
    }
}

/// The length prefix of a frame on the `MESSAGES` stream.
pub(crate) fn length_prefix(len: usize) -> [u8; 4] {
    u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes()
}

#[cfg(test)]
mod tests;
