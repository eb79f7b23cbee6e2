//! The friend layer's wire formats: what a friend request, an accept, a remove and an
//! acknowledgement look like on `carrier-request/1`, on a `carrier/1` control stream and in a
//! mailbox letter.
//!
//! Every frame is `version (1 byte) ‖ postcard(Body)`. Decoding is strict: an unknown version,
//! a malformed or trailing byte, a field over its cap, a name that is not UTF-8 or an empty
//! hello is an error, and no field allocates past its cap (bounded field types read the length
//! before allocating). A letter in the shared message mailbox is `LETTER_TAG ‖ frame`, so the
//! friend layer leaves letters of other layers alone.
//!
//! Who sent a frame is never in the frame: it is the Carrier ID the peer proved in the QUIC
//! handshake, or the verified signer of the mailbox letter.

use carrier_dht::bounded::{BoundedBytes, BoundedVec};
use carrier_dht::id::Nospam;
use serde::{Deserialize, Serialize};

use crate::outbox::OutboxId;

/// The longest hello of a friend request, in bytes (at least 1).
pub const MAX_HELLO_BYTES: usize = 1024;
/// The longest user name, in bytes of UTF-8.
pub const MAX_NAME_BYTES: usize = 63;
/// The longest user description, in bytes of UTF-8.
pub const MAX_DESCRIPTION_BYTES: usize = 127;
/// The longest local label of a friend, in bytes of UTF-8.
pub const MAX_LABEL_BYTES: usize = 63;

/// The version byte every friend-layer frame starts with.
pub(crate) const WIRE_VERSION: u8 = 1;
/// The first byte of the friend layer's letters in the message mailbox.
pub(crate) const LETTER_TAG: u8 = 0xF1;
/// The first byte of a friend-layer control stream on `carrier/1`.
pub(crate) const STREAM_CONTROL: u8 = 0x01;
/// A control stream's one-byte answer: the item was taken (stored, or known already).
pub(crate) const ANSWER_TAKEN: u8 = 1;
/// Item IDs one acknowledgement carries at most.
pub(crate) const MAX_ACKS: usize = 32;
/// The largest control frame on a `carrier/1` stream.
pub(crate) const MAX_CONTROL_FRAME_BYTES: usize = 2048;

/// What a user tells about themselves: a name and a description, both UTF-8 within their caps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "WireInfo", into = "WireInfo")]
pub struct UserInfo {
    name: String,
    description: String,
}

impl UserInfo {
    /// User info with `name` (at most [`MAX_NAME_BYTES`]) and `description` (at most
    /// [`MAX_DESCRIPTION_BYTES`]); `None` if either is too long.
    pub fn new(name: &str, description: &str) -> Option<Self> {
        (name.len() <= MAX_NAME_BYTES && description.len() <= MAX_DESCRIPTION_BYTES).then(|| Self {
            name: name.to_string(),
            description: description.to_string(),
        })
    }

    /// The user's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The user's description.
    pub fn description(&self) -> &str {
        &self.description
    }
}

#[derive(Serialize, Deserialize)]
struct WireInfo {
    name: BoundedBytes<MAX_NAME_BYTES>,
    description: BoundedBytes<MAX_DESCRIPTION_BYTES>,
}

impl TryFrom<WireInfo> for UserInfo {
    type Error = &'static str;
    fn try_from(wire: WireInfo) -> Result<Self, Self::Error> {
        let text = |b: Vec<u8>| String::from_utf8(b).map_err(|_| "not UTF-8");
        Ok(UserInfo {
            name: text(wire.name.into_vec())?,
            description: text(wire.description.into_vec())?,
        })
    }
}

impl From<UserInfo> for WireInfo {
    fn from(info: UserInfo) -> Self {
        // `UserInfo::new` and the decoder both keep the fields within their caps.
        WireInfo {
            name: BoundedBytes::new(info.name.into_bytes()).unwrap_or_default(),
            description: BoundedBytes::new(info.description.into_bytes()).unwrap_or_default(),
        }
    }
}

/// A friend request: on `carrier-request/1` or in the request mailbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RequestBody {
    /// The request's ID: the receiver keeps it to take the request once only.
    pub(crate) id: OutboxId,
    /// The requester's control sequence when it asked (see [`ControlBody::seq`]): a request
    /// older than a remove the receiver already applied from the requester is dropped.
    pub(crate) seq: u64,
    /// The nospam of the address the requester used.
    pub(crate) nospam: Nospam,
    /// The requester's user info.
    pub(crate) info: UserInfo,
    /// The requester's hello, 1 to [`MAX_HELLO_BYTES`] bytes.
    pub(crate) hello: BoundedBytes<MAX_HELLO_BYTES>,
}

/// A control item between two nodes: it changes whether they are friends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ControlBody {
    /// The item's ID, kept by the receiver to take it once only, and acknowledged.
    pub(crate) id: OutboxId,
    /// The sender's control sequence: a receiver ignores an item older than the newest it
    /// applied from that sender, so a late copy never undoes a newer change.
    pub(crate) seq: u64,
    /// What the item does.
    pub(crate) change: Change,
}

/// What a control item does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Change {
    /// The sender accepted the receiver's friend request; here is the sender's user info.
    Accept(UserInfo),
    /// The sender removed the receiver from its friends.
    Remove,
}

/// Every frame of the friend layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Body {
    /// A friend request.
    Request(RequestBody),
    /// A control item.
    Control(ControlBody),
    /// The sender took these items of the receiver's outbox: drop them.
    Ack(BoundedVec<OutboxId, MAX_ACKS>),
}

/// Why bytes are not a friend-layer frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WireError {
    /// Nothing at all.
    #[error("empty frame")]
    Empty,
    /// A version this build does not know.
    #[error("unknown frame version {0}")]
    Version(u8),
    /// postcard refused the body (malformed, over a cap, not UTF-8).
    #[error("malformed frame: {0}")]
    Malformed(postcard::Error),
    /// Bytes after the body.
    #[error("{0} bytes after the frame")]
    Trailing(usize),
    /// A request with an empty hello.
    #[error("a request with an empty hello")]
    EmptyHello,
}

/// `body` as a frame.
pub(crate) fn encode(body: &Body) -> Vec<u8> {
    let mut bytes = vec![WIRE_VERSION];
    // Serializing these plain types into a Vec cannot fail.
    bytes.extend(postcard::to_allocvec(body).unwrap_or_default());
    bytes
}

/// The body of a frame, strictly.
pub(crate) fn decode(bytes: &[u8]) -> Result<Body, WireError> {
    let (&version, rest) = bytes.split_first().ok_or(WireError::Empty)?;
    if version != WIRE_VERSION {
        return Err(WireError::Version(version));
    }
    let (body, trailing) = postcard::take_from_bytes::<Body>(rest).map_err(WireError::Malformed)?;
    if !trailing.is_empty() {
        return Err(WireError::Trailing(trailing.len()));
    }
    if let Body::Request(request) = &body {
        if request.hello.is_empty() {
            return Err(WireError::EmptyHello);
        }
    }
    Ok(body)
}

/// `body` as a letter for the message mailbox.
pub(crate) fn encode_letter(body: &Body) -> Vec<u8> {
    let mut bytes = vec![LETTER_TAG];
    bytes.extend(encode(body));
    bytes
}

/// The frame inside a friend-layer letter; `None` if the letter is another layer's.
pub(crate) fn letter_frame(letter: &[u8]) -> Option<&[u8]> {
    match letter.split_first() {
        Some((&LETTER_TAG, frame)) => Some(frame),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    fn request(hello: &[u8]) -> Body {
        Body::Request(RequestBody {
            id: OutboxId([7; 16]),
            seq: 1_764_000_000_000,
            nospam: Nospam(0xdead_beef),
            info: UserInfo::new("Alice", "likes QUIC").unwrap(),
            hello: BoundedBytes::from_slice(hello).unwrap(),
        })
    }

    #[test]
    fn every_body_round_trips() {
        let bodies = [
            request(b"hi"),
            request(&[9; MAX_HELLO_BYTES]),
            Body::Control(ControlBody {
                id: OutboxId([1; 16]),
                seq: 42,
                change: Change::Accept(UserInfo::new(&"n".repeat(63), &"d".repeat(127)).unwrap()),
            }),
            Body::Control(ControlBody {
                id: OutboxId([2; 16]),
                seq: u64::MAX,
                change: Change::Remove,
            }),
            Body::Ack(BoundedVec::new(vec![OutboxId([3; 16]); MAX_ACKS]).unwrap()),
        ];
        for body in bodies {
            let bytes = encode(&body);
            assert!(bytes.len() <= MAX_CONTROL_FRAME_BYTES);
            assert!(bytes.len() <= crate::MAX_REQUEST_FRAME_BYTES);
            assert_eq!(decode(&bytes).unwrap(), body);
            let letter = encode_letter(&body);
            assert_eq!(decode(letter_frame(&letter).unwrap()).unwrap(), body);
        }
    }

    #[test]
    fn malformed_frames_are_refused() {
        assert_eq!(decode(&[]), Err(WireError::Empty));
        let mut bytes = encode(&request(b"hi"));
        bytes[0] = 2;
        assert_eq!(decode(&bytes), Err(WireError::Version(2)));
        let mut bytes = encode(&request(b"hi"));
        bytes.push(0);
        assert_eq!(decode(&bytes), Err(WireError::Trailing(1)));
        let empty = Body::Request(RequestBody {
            id: OutboxId([7; 16]),
            seq: 1,
            nospam: Nospam(1),
            info: UserInfo::default(),
            hello: BoundedBytes::default(),
        });
        assert_eq!(decode(&encode(&empty)), Err(WireError::EmptyHello));
        // A hello one byte over the cap.
        let mut over = encode(&request(&[1; MAX_HELLO_BYTES]));
        let at = over.len() - MAX_HELLO_BYTES - 2;
        assert_eq!(&over[at..at + 2], &[0x80, 0x08], "varint 1024");
        over[at] = 0x81;
        over.push(1);
        assert!(matches!(decode(&over), Err(WireError::Malformed(_))));
        // A name that is not UTF-8.
        let mut bad = encode(&request(b"hi"));
        let name = bad.iter().position(|&b| b == b'A').unwrap();
        bad[name] = 0xff;
        assert!(matches!(decode(&bad), Err(WireError::Malformed(_))));
        assert_eq!(letter_frame(&[0x00, 1, 2]), None);
        assert_eq!(letter_frame(&[]), None);
    }

    #[test]
    fn user_info_respects_its_caps() {
        assert!(UserInfo::new(&"n".repeat(MAX_NAME_BYTES), "").is_some());
        assert!(UserInfo::new(&"n".repeat(MAX_NAME_BYTES + 1), "").is_none());
        assert!(UserInfo::new("", &"d".repeat(MAX_DESCRIPTION_BYTES + 1)).is_none());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2100)) {
            let _ = decode(&bytes);
            if let Some(frame) = letter_frame(&bytes) {
                let _ = decode(frame);
            }
        }

        #[test]
        fn arbitrary_bytes_after_a_valid_prefix_never_panic(
            tail in proptest::collection::vec(any::<u8>(), 0..64),
            cut in 0usize..200,
        ) {
            let mut bytes = encode(&request(b"hello there"));
            bytes.truncate(cut.min(bytes.len()));
            bytes.extend(tail);
            let _ = decode(&bytes);
        }
    }
}
