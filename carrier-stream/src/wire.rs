//! The frames of sessions and streams, bounded and strictly decoded.
//!
//! - The session request is an invite to the `session` extension whose data is an
//!   [`Offer`] (the requester's session ID); a confirming reply's data is an [`Accept`]
//!   naming the same ID.
//! - Every stream of a session is a bidirectional QUIC stream on
//!   [`Extension::STREAM`](carrier_msg::friend::Extension::STREAM). Its opener writes one
//!   [`Open`] frame, the acceptor one [`Answer`]; each is preceded by its length (u16,
//!   little-endian) and is at most [`MAX_FRAME_BYTES`]. Closing a session is the same
//!   exchange with [`Open::CloseSession`].
//! - A datagram of a datagram-mode stream is [`DATAGRAM_TAG_BYTES`] of tag (session ID,
//!   stream ID, little-endian) and the payload.
//!
//! Every frame is `VERSION ‖ postcard(frame)`, decoded with `decode_exact`: a malformed,
//! trailing, oversized or unknown-version frame is an error, never a panic.

use carrier_msg::friend::dht::bounded::BoundedBytes;
use carrier_msg::friend::dht::message::decode_exact;
use serde::{Deserialize, Serialize};

/// The wire version, the first byte of every frame.
pub(crate) const VERSION: u8 = 1;
/// The largest [`Open`] or [`Answer`] frame.
pub(crate) const MAX_FRAME_BYTES: usize = 512;
/// The longest reason a session is closed or a stream refused with.
pub(crate) const MAX_REASON_BYTES: usize = 255;
/// The tag in front of every datagram of a datagram-mode stream.
pub(crate) const DATAGRAM_TAG_BYTES: usize = 12;
/// The longest header a channel is opened with: what a channel's open frame holds within
/// the frames' cap (512 bytes) beside its IDs.
pub const MAX_CHANNEL_HEADER_BYTES: usize = 400;

/// The data of a session request (the invite).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Offer {
    pub(crate) session: u64,
}

/// What a session request that resumes a session adds after its [`Offer`]: a request without
/// it is exactly an `Offer`, as before resumes existed, so a node that knows no resumes still
/// reads every fresh request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Resume {
    /// Whether the sender of the resume requested the session originally: the receiver takes
    /// the other role, and so the other stream-ID parity.
    pub(crate) sender_requested: bool,
    /// Where the receiver's stream numbers go on (a stream's ID is twice its number plus the
    /// opener's parity): past every stream of the receiver's the sender still holds.
    pub(crate) next_stream: u32,
}

/// The data of a session request that resumes a session: an [`Offer`] and its [`Resume`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ResumeOffer {
    pub(crate) session: u64,
    pub(crate) resume: Resume,
}

/// A session request's data: its session ID, and what it resumes if it resumes one.
pub(crate) fn decode_offer(bytes: &[u8]) -> Result<(u64, Option<Resume>), WireError> {
    match decode::<Offer>(bytes) {
        Ok(Offer { session }) => Ok((session, None)),
        Err(plain) => match decode::<ResumeOffer>(bytes) {
            Ok(ResumeOffer { session, resume }) => Ok((session, Some(resume))),
            Err(_) => Err(plain),
        },
    }
}

/// The data of a confirming reply to a session request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Accept {
    pub(crate) session: u64,
}

/// The first frame on a session's QUIC stream, from its opener.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Open {
    /// A new stream of `session`: `kind` and `mode` as [`StreamKind`](crate::StreamKind) and
    /// [`StreamMode`](crate::StreamMode) numbers.
    Stream {
        session: u64,
        stream: u32,
        kind: u8,
        mode: u8,
    },
    /// The opener closes `session`, with a reason.
    CloseSession {
        session: u64,
        reason: BoundedBytes<MAX_REASON_BYTES>,
    },
    /// A new reliable stream of `session` with channels multiplexed on it: as
    /// [`Open::Stream`] in reliable mode, and either side may open channels on it.
    MultiplexedStream { session: u64, stream: u32, kind: u8 },
    /// A channel of the multiplexed `stream` of `session`, on a QUIC stream of its own: routed
    /// to that stream's inbox of channels with its `header` (the multiplexing layer's).
    Channel {
        session: u64,
        stream: u32,
        channel: u32,
        header: BoundedBytes<MAX_CHANNEL_HEADER_BYTES>,
    },
}

/// The acceptor's answer to an [`Open`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Answer {
    /// Taken: for a stream, data may flow.
    Ready,
    /// The acceptor knows no such session.
    UnknownSession,
    /// Refused, with a reason (an unknown kind or mode, a closed session).
    Refused(BoundedBytes<MAX_REASON_BYTES>),
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

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = vec![VERSION];
    // Invariant: postcard serializes these plain types into a Vec without failing.
    #[allow(clippy::expect_used)]
    let body = postcard::to_allocvec(value).expect("postcard encodes plain types");
    bytes.extend(body);
    bytes
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(WireError::TooLarge(bytes.len()));
    }
    let (&version, rest) = bytes.split_first().ok_or(WireError::Empty)?;
    if version != VERSION {
        return Err(WireError::Version(version));
    }
    decode_exact(rest).map_err(|_| WireError::Malformed)
}

/// `frame` encoded behind its length prefix, for a stream.
pub(crate) fn prefixed<T: Serialize>(frame: &T) -> Vec<u8> {
    let body = encode(frame);
    let mut bytes = u16::try_from(body.len())
        .unwrap_or(u16::MAX)
        .to_le_bytes()
        .to_vec();
    bytes.extend(body);
    bytes
}

/// The length a stream's prefix announces, if within [`MAX_FRAME_BYTES`].
pub(crate) fn frame_len(prefix: [u8; 2]) -> Result<usize, WireError> {
    let len = usize::from(u16::from_le_bytes(prefix));
    match len {
        0 => Err(WireError::Empty),
        len if len > MAX_FRAME_BYTES => Err(WireError::TooLarge(len)),
        len => Ok(len),
    }
}

/// A reason cut to [`MAX_REASON_BYTES`] at a character boundary.
pub(crate) fn reason(text: &str) -> BoundedBytes<MAX_REASON_BYTES> {
    let mut end = text.len().min(MAX_REASON_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    BoundedBytes::from_slice(&text.as_bytes()[..end]).unwrap_or_default()
}

/// The text of a reason from the wire (invalid UTF-8 replaced).
pub(crate) fn reason_text(reason: &BoundedBytes<MAX_REASON_BYTES>) -> String {
    String::from_utf8_lossy(reason.as_slice()).into_owned()
}

/// The tag of a datagram of stream `stream` in session `session`.
pub(crate) fn datagram_tag(session: u64, stream: u32) -> [u8; DATAGRAM_TAG_BYTES] {
    let mut tag = [0u8; DATAGRAM_TAG_BYTES];
    tag[..8].copy_from_slice(&session.to_le_bytes());
    tag[8..].copy_from_slice(&stream.to_le_bytes());
    tag
}

/// A datagram's session, stream and payload; `None` if it is shorter than its tag.
pub(crate) fn split_datagram(datagram: &[u8]) -> Option<(u64, u32, &[u8])> {
    if datagram.len() < DATAGRAM_TAG_BYTES {
        return None;
    }
    let (tag, payload) = datagram.split_at(DATAGRAM_TAG_BYTES);
    let session = u64::from_le_bytes(tag[..8].try_into().ok()?);
    let stream = u32::from_le_bytes(tag[8..].try_into().ok()?);
    Some((session, stream, payload))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frames_round_trip_and_the_largest_fits_its_cap() {
        let open = Open::CloseSession {
            session: u64::MAX,
            reason: reason(&"é".repeat(400)),
        };
        let bytes = encode(&open);
        assert!(bytes.len() <= MAX_FRAME_BYTES, "{} bytes", bytes.len());
        assert_eq!(decode::<Open>(&bytes).unwrap(), open);
        let stream = Open::Stream {
            session: u64::MAX,
            stream: u32::MAX,
            kind: 4,
            mode: 1,
        };
        assert_eq!(decode::<Open>(&encode(&stream)).unwrap(), stream);
        let refused = Answer::Refused(reason(&"x".repeat(300)));
        assert!(encode(&refused).len() <= MAX_FRAME_BYTES);
        assert_eq!(decode::<Answer>(&encode(&refused)).unwrap(), refused);
        let offer = Offer { session: 7 };
        assert_eq!(decode::<Offer>(&encode(&offer)).unwrap(), offer);
        let multiplexed = Open::MultiplexedStream {
            session: u64::MAX,
            stream: u32::MAX,
            kind: 4,
        };
        assert_eq!(decode::<Open>(&encode(&multiplexed)).unwrap(), multiplexed);
        let channel = Open::Channel {
            session: u64::MAX,
            stream: u32::MAX,
            channel: u32::MAX,
            header: BoundedBytes::from_slice(&[0xff; MAX_CHANNEL_HEADER_BYTES]).unwrap(),
        };
        let bytes = encode(&channel);
        assert!(bytes.len() <= MAX_FRAME_BYTES, "{} bytes", bytes.len());
        assert_eq!(decode::<Open>(&bytes).unwrap(), channel);
        assert_eq!(decode_offer(&encode(&offer)), Ok((7, None)));
        let resume = ResumeOffer {
            session: u64::MAX,
            resume: Resume {
                sender_requested: true,
                next_stream: u32::MAX,
            },
        };
        let bytes = encode(&resume);
        assert!(bytes.len() <= MAX_FRAME_BYTES);
        assert_eq!(
            decode_offer(&bytes),
            Ok((u64::MAX, Some(resume.resume.clone())))
        );
    }

    #[test]
    fn the_first_variants_keep_their_numbers() {
        // Appended variants leave the earlier ones' bytes as they were.
        let stream = Open::Stream {
            session: 1,
            stream: 2,
            kind: 0,
            mode: 0,
        };
        assert_eq!(encode(&stream)[1], 0);
        let close = Open::CloseSession {
            session: 1,
            reason: reason("x"),
        };
        assert_eq!(encode(&close)[1], 1);
        let multiplexed = Open::MultiplexedStream {
            session: 1,
            stream: 2,
            kind: 0,
        };
        assert_eq!(encode(&multiplexed)[1], 2);
    }

    #[test]
    fn a_resume_is_an_offer_with_bytes_after_it() {
        // A node that knows no resumes reads a fresh request as before, and refuses a resume
        // as malformed rather than take it for a fresh one.
        let fresh = encode(&Offer { session: 9 });
        let resume = encode(&ResumeOffer {
            session: 9,
            resume: Resume {
                sender_requested: false,
                next_stream: 3,
            },
        });
        assert!(resume.starts_with(&fresh));
        assert_eq!(decode::<Offer>(&resume), Err(WireError::Malformed));
        assert_eq!(
            decode_offer(&resume[..resume.len() - 1]),
            Err(WireError::Malformed)
        );
    }

    #[test]
    fn trailing_bytes_versions_and_lengths_are_refused() {
        let mut bytes = encode(&Answer::Ready);
        bytes.push(0);
        assert_eq!(decode::<Answer>(&bytes), Err(WireError::Malformed));
        assert_eq!(decode::<Answer>(&[]), Err(WireError::Empty));
        assert_eq!(decode::<Answer>(&[9, 0]), Err(WireError::Version(9)));
        assert_eq!(frame_len([0, 0]), Err(WireError::Empty));
        assert_eq!(frame_len([0x01, 0x02]), Err(WireError::TooLarge(513)));
        assert_eq!(frame_len([3, 0]), Ok(3));
    }

    #[test]
    fn a_reason_is_cut_at_a_character_boundary() {
        let cut = reason(&"é".repeat(200));
        assert_eq!(cut.as_slice().len(), 254);
        assert!(std::str::from_utf8(cut.as_slice()).is_ok());
    }

    #[test]
    fn a_datagram_tag_names_its_session_and_stream() {
        let mut datagram = datagram_tag(0x0102_0304_0506_0708, 9).to_vec();
        datagram.extend_from_slice(b"payload");
        assert_eq!(
            split_datagram(&datagram),
            Some((0x0102_0304_0506_0708, 9, &b"payload"[..]))
        );
        assert_eq!(split_datagram(&datagram[..11]), None);
        assert_eq!(
            split_datagram(&datagram[..12]),
            Some((0x0102_0304_0506_0708, 9, &[][..]))
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_a_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
            let _ = decode::<Open>(&bytes);
            let _ = decode::<Answer>(&bytes);
            let _ = decode::<Offer>(&bytes);
            let _ = decode::<Accept>(&bytes);
            let _ = decode_offer(&bytes);
            let _ = split_datagram(&bytes);
            if bytes.len() >= 2 {
                let _ = frame_len([bytes[0], bytes[1]]);
            }
        }

    }
}
