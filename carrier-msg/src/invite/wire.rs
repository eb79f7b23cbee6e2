//! The invite stream's two frames: the invite the inviter writes, and the answer it reads
//! back. Each is the whole of its half of the stream (the half is finished after it), encoded
//! with postcard, versioned by its enum variant (new versions are new variants appended at
//! the end) and bounded: a decoder refuses anything malformed, oversized or trailing and never
//! allocates past the frame's cap.

use carrier_friend::dht::bounded::BoundedBytes;
use carrier_friend::dht::message::{decode_exact, encode};
use carrier_friend::dht::WireError;
use serde::{Deserialize, Serialize};

/// The most bytes of application data an invite or a confirming reply carries (the
/// original Carrier's `CARRIER_MAX_INVITE_DATA_LEN`).
pub const MAX_INVITE_DATA_BYTES: usize = 8192;
/// The most bytes of an invite's bundle (the original's `CARRIER_MAX_BUNDLE_LEN`).
pub const MAX_BUNDLE_BYTES: usize = 511;
/// The most bytes of a refusing reply's reason (the original's
/// `CARRIER_MAX_INVITE_REPLY_REASON_LEN`).
pub const MAX_REASON_BYTES: usize = 255;
/// The most bytes of an extension name (the original's `CARRIER_MAX_EXTENSION_NAME_LEN`).
pub const MAX_EXTENSION_NAME_BYTES: usize = 31;

/// postcard's length prefix of a field of `n` bytes, at most.
const fn prefix(n: usize) -> usize {
    if n < 0x80 {
        1
    } else if n < 0x4000 {
        2
    } else {
        3
    }
}

/// The largest encoded invite frame: variant, tag (u64 varint), timeout (u32 varint),
/// extension, bundle, data.
pub(crate) const MAX_INVITE_FRAME_BYTES: usize = 1
    + 10
    + 5
    + prefix(MAX_EXTENSION_NAME_BYTES)
    + MAX_EXTENSION_NAME_BYTES
    + prefix(MAX_BUNDLE_BYTES)
    + MAX_BUNDLE_BYTES
    + prefix(MAX_INVITE_DATA_BYTES)
    + MAX_INVITE_DATA_BYTES;

/// The largest encoded answer frame: variant, status (i32 zigzag varint), reason, data.
pub(crate) const MAX_ANSWER_FRAME_BYTES: usize = 1
    + 5
    + prefix(MAX_REASON_BYTES)
    + MAX_REASON_BYTES
    + prefix(MAX_INVITE_DATA_BYTES)
    + MAX_INVITE_DATA_BYTES;

/// What the inviter writes after the stream's kind byte.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum InviteFrame {
    /// Version 1.
    V1 {
        /// Chosen at random by the inviter for this invite and kept when it sends the invite
        /// again on a new link, so the invitee raises it once.
        tag: u64,
        /// How long the inviter still waits for the answer, in milliseconds: the invitee
        /// forgets the invite after that.
        timeout_ms: u32,
        /// The extension the invite is addressed to, UTF-8.
        extension: BoundedBytes<MAX_EXTENSION_NAME_BYTES>,
        /// The bundle, opaque.
        bundle: BoundedBytes<MAX_BUNDLE_BYTES>,
        /// The data, 1 to [`MAX_INVITE_DATA_BYTES`] bytes.
        data: BoundedBytes<MAX_INVITE_DATA_BYTES>,
    },
}

/// What the invitee writes back: the application's reply, or the layer's own refusal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum AnswerFrame {
    /// The application's reply: status 0 confirms (with data), anything else refuses (with a
    /// reason).
    Reply {
        /// 0 confirms; anything else refuses.
        status: i32,
        /// UTF-8, empty when confirming.
        reason: BoundedBytes<MAX_REASON_BYTES>,
        /// Empty when refusing.
        data: BoundedBytes<MAX_INVITE_DATA_BYTES>,
    },
    /// Nobody on the invitee's node registered the invite's extension.
    NoExtension,
    /// The invitee holds as many unanswered invites as it takes (from this friend or in all).
    Busy,
}

impl InviteFrame {
    pub(crate) fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes an invite and checks what the types cannot: the extension is UTF-8 and not
    /// empty, the data is not empty.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let frame: Self = decode_exact(bytes)?;
        let InviteFrame::V1 {
            extension, data, ..
        } = &frame;
        if extension.is_empty() || std::str::from_utf8(extension).is_err() || data.is_empty() {
            return Err(WireError::Malformed);
        }
        Ok(frame)
    }
}

impl AnswerFrame {
    pub(crate) fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes an answer and checks what the types cannot: a reason is UTF-8, a confirming
    /// reply has data and no reason, a refusal no data.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let frame: Self = decode_exact(bytes)?;
        if let AnswerFrame::Reply {
            status,
            reason,
            data,
        } = &frame
        {
            let shaped = if *status == 0 {
                reason.is_empty() && !data.is_empty()
            } else {
                data.is_empty()
            };
            if !shaped || std::str::from_utf8(reason).is_err() {
                return Err(WireError::Malformed);
            }
        }
        Ok(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn largest_invite() -> InviteFrame {
        InviteFrame::V1 {
            tag: u64::MAX,
            timeout_ms: u32::MAX,
            extension: BoundedBytes::new(vec![b'x'; MAX_EXTENSION_NAME_BYTES]).unwrap(),
            bundle: BoundedBytes::new(vec![0xff; MAX_BUNDLE_BYTES]).unwrap(),
            data: BoundedBytes::new(vec![0xff; MAX_INVITE_DATA_BYTES]).unwrap(),
        }
    }

    fn largest_answer() -> AnswerFrame {
        AnswerFrame::Reply {
            status: i32::MIN,
            reason: BoundedBytes::new(vec![b'r'; MAX_REASON_BYTES]).unwrap(),
            data: BoundedBytes::new(vec![0xff; MAX_INVITE_DATA_BYTES]).unwrap(),
        }
    }

    #[test]
    fn the_largest_frames_fit_their_caps_and_round_trip() {
        let invite = largest_invite();
        let bytes = invite.encode();
        assert!(bytes.len() <= MAX_INVITE_FRAME_BYTES, "{}", bytes.len());
        assert_eq!(InviteFrame::decode(&bytes).unwrap(), invite);
        // A refusal with the longest reason; the confirming reply with the most data.
        let refusal = largest_answer();
        let AnswerFrame::Reply { reason, .. } = refusal.clone() else {
            unreachable!()
        };
        let refusal = AnswerFrame::Reply {
            status: i32::MIN,
            reason,
            data: BoundedBytes::default(),
        };
        let confirm = AnswerFrame::Reply {
            status: 0,
            reason: BoundedBytes::default(),
            data: BoundedBytes::new(vec![7; MAX_INVITE_DATA_BYTES]).unwrap(),
        };
        for answer in [
            refusal,
            confirm,
            AnswerFrame::NoExtension,
            AnswerFrame::Busy,
        ] {
            let bytes = answer.encode();
            assert!(bytes.len() <= MAX_ANSWER_FRAME_BYTES, "{}", bytes.len());
            assert_eq!(AnswerFrame::decode(&bytes).unwrap(), answer);
        }
        // Even a reply no sender would build stays within the cap.
        assert!(largest_answer().encode().len() <= MAX_ANSWER_FRAME_BYTES);
    }

    #[test]
    fn the_variants_keep_their_bytes() {
        // On the wire: never renumbered.
        assert_eq!(AnswerFrame::NoExtension.encode(), [1]);
        assert_eq!(AnswerFrame::Busy.encode(), [2]);
        assert_eq!(largest_invite().encode()[0], 0);
    }

    #[test]
    fn oversized_trailing_and_misshapen_frames_are_refused() {
        let mut bytes = largest_invite().encode();
        bytes.push(0);
        assert_eq!(InviteFrame::decode(&bytes), Err(WireError::Trailing(1)));

        // Data one byte over the cap: built by hand, since the types refuse it.
        let over = (
            1u8,
            2u8,
            1u8,
            b'x',
            0u8,
            vec![1u8; MAX_INVITE_DATA_BYTES + 1],
        );
        let bytes = postcard::to_allocvec(&(0u8, over)).unwrap();
        assert!(InviteFrame::decode(&bytes).is_err());

        let invite = |extension: &[u8], data: &[u8]| {
            InviteFrame::V1 {
                tag: 1,
                timeout_ms: 1,
                extension: BoundedBytes::from_slice(extension).unwrap(),
                bundle: BoundedBytes::default(),
                data: BoundedBytes::from_slice(data).unwrap(),
            }
            .encode()
        };
        assert!(InviteFrame::decode(&invite(b"chat", b"d")).is_ok());
        assert!(InviteFrame::decode(&invite(b"", b"d")).is_err());
        assert!(InviteFrame::decode(&invite(&[0xff, 0xfe], b"d")).is_err());
        assert!(InviteFrame::decode(&invite(b"chat", b"")).is_err());

        let reply = |status: i32, reason: &[u8], data: &[u8]| {
            AnswerFrame::Reply {
                status,
                reason: BoundedBytes::from_slice(reason).unwrap(),
                data: BoundedBytes::from_slice(data).unwrap(),
            }
            .encode()
        };
        assert!(AnswerFrame::decode(&reply(0, b"", b"d")).is_ok());
        assert!(AnswerFrame::decode(&reply(0, b"", b"")).is_err());
        assert!(AnswerFrame::decode(&reply(0, b"why", b"d")).is_err());
        assert!(AnswerFrame::decode(&reply(-3, b"no", b"")).is_ok());
        assert!(AnswerFrame::decode(&reply(-3, b"", b"")).is_ok());
        assert!(AnswerFrame::decode(&reply(-3, b"no", b"d")).is_err());
        assert!(AnswerFrame::decode(&reply(-3, &[0xc3], b"")).is_err());
        assert!(AnswerFrame::decode(&[3]).is_err(), "an unknown variant");
        assert!(AnswerFrame::decode(&[]).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_into_the_invite_decoder_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..9000)
        ) {
            // Never a panic; what decodes encodes to a frame that decodes the same.
            if let Ok(frame) = InviteFrame::decode(&bytes) {
                prop_assert_eq!(InviteFrame::decode(&frame.encode()).unwrap(), frame);
            }
        }

        #[test]
        fn arbitrary_bytes_into_the_answer_decoder_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..9000)
        ) {
            if let Ok(frame) = AnswerFrame::decode(&bytes) {
                prop_assert_eq!(AnswerFrame::decode(&frame.encode()).unwrap(), frame);
            }
        }

        #[test]
        fn invites_round_trip(
            tag in any::<u64>(),
            timeout_ms in any::<u32>(),
            extension in "[a-z]{1,31}",
            bundle in proptest::collection::vec(any::<u8>(), 0..=MAX_BUNDLE_BYTES),
            data in proptest::collection::vec(any::<u8>(), 1..=MAX_INVITE_DATA_BYTES),
        ) {
            let frame = InviteFrame::V1 {
                tag,
                timeout_ms,
                extension: BoundedBytes::new(extension.into_bytes()).unwrap(),
                bundle: BoundedBytes::new(bundle).unwrap(),
                data: BoundedBytes::new(data).unwrap(),
            };
            let bytes = frame.encode();
            prop_assert!(bytes.len() <= MAX_INVITE_FRAME_BYTES);
            prop_assert_eq!(InviteFrame::decode(&bytes).unwrap(), frame);
        }
    }
}
