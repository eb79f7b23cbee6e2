//! The frames of channels, bounded and strictly decoded.
//!
//! - A channel's open carries a [`Hello`] as its header (carrier-stream's channel header):
//!   the cookie and the opener's credit.
//! - The acceptor's first frame on the channel's own QUIC stream is a [`Reply`]: accepted
//!   with its credit, or refused with a reason; then the bytes of the channel, unframed.
//! - On the multiplexed stream itself travel [`Control`] frames, both ways: pend, resume,
//!   credit, close with a reason.
//!
//! Every frame is `VERSION ‖ postcard(frame)`, decoded with `decode_exact`; on a stream each is
//! preceded by its length (u16, little-endian) and is at most [`MAX_FRAME_BYTES`]. A
//! malformed, trailing, oversized or unknown-version frame is an error, never a panic.

use carrier_stream::msg::friend::dht::bounded::BoundedBytes;
use carrier_stream::msg::friend::dht::message::decode_exact;
use serde::{Deserialize, Serialize};

/// The wire version, the first byte of every frame.
pub(crate) const VERSION: u8 = 1;
/// The largest frame.
pub(crate) const MAX_FRAME_BYTES: usize = 320;
/// The longest cookie a channel is opened with.
pub const MAX_COOKIE_BYTES: usize = 255;
/// The longest reason a channel is refused with.
pub const MAX_REASON_BYTES: usize = 255;

/// A channel's header: what its opener asks for, and how much it may be sent before it
/// grants more.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Hello {
    pub(crate) cookie: BoundedBytes<MAX_COOKIE_BYTES>,
    pub(crate) credit: u32,
}

/// The acceptor's first frame on a channel's QUIC stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Reply {
    /// Accepted: the opener may send `credit` bytes before it is granted more.
    Accepted { credit: u32 },
    /// Refused, with the application's reason.
    Refused(BoundedBytes<MAX_REASON_BYTES>),
}

/// A frame on the multiplexed stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Control {
    /// Stop sending on `channel` until resumed.
    Pend { channel: u32 },
    /// Go on sending on `channel`.
    Resume { channel: u32 },
    /// The receiver of `channel` consumed enough: its sender may send up to `limit` bytes in
    /// all.
    Credit { channel: u32, limit: u64 },
    /// The sender closed `channel`, with a reason ([`CloseCode`] numbers).
    Close { channel: u32, code: u8 },
}

/// The numbers of the close reasons on the wire; never renumbered. An unknown number is taken
/// as an error.
pub(crate) mod close_code {
    pub(crate) const NORMAL: u8 = 0;
    pub(crate) const TIMEOUT: u8 = 1;
    pub(crate) const ERROR: u8 = 2;
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

/// Reads one length-prefixed frame; `Ok(None)` at a clean end before its first byte.
pub(crate) async fn read_frame<T: serde::de::DeserializeOwned>(
    reader: &mut (impl tokio::io::AsyncRead + Unpin),
) -> Result<Option<T>, String> {
    use tokio::io::AsyncReadExt;
    let mut prefix = [0u8; 2];
    let n = reader
        .read(&mut prefix[..1])
        .await
        .map_err(|e| e.to_string())?;
    if n == 0 {
        return Ok(None);
    }
    reader
        .read_exact(&mut prefix[1..])
        .await
        .map_err(|e| e.to_string())?;
    let len = frame_len(prefix).map_err(|e| e.to_string())?;
    let mut body = vec![0u8; len];
    reader
        .read_exact(&mut body)
        .await
        .map_err(|e| e.to_string())?;
    decode(&body).map(Some).map_err(|e| e.to_string())
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frames_round_trip_and_the_largest_fit_their_caps() {
        let hello = Hello {
            cookie: BoundedBytes::from_slice(&[0xff; MAX_COOKIE_BYTES]).unwrap(),
            credit: u32::MAX,
        };
        let bytes = encode(&hello);
        assert!(bytes.len() <= MAX_FRAME_BYTES, "{} bytes", bytes.len());
        assert!(bytes.len() <= carrier_stream::MAX_CHANNEL_HEADER_BYTES);
        assert_eq!(decode::<Hello>(&bytes).unwrap(), hello);
        let refused = Reply::Refused(reason(&"é".repeat(300)));
        assert!(encode(&refused).len() <= MAX_FRAME_BYTES);
        assert_eq!(decode::<Reply>(&encode(&refused)).unwrap(), refused);
        let accepted = Reply::Accepted { credit: 7 };
        assert_eq!(decode::<Reply>(&encode(&accepted)).unwrap(), accepted);
        for control in [
            Control::Pend { channel: u32::MAX },
            Control::Resume { channel: 1 },
            Control::Credit {
                channel: u32::MAX,
                limit: u64::MAX,
            },
            Control::Close {
                channel: 3,
                code: close_code::ERROR,
            },
        ] {
            let bytes = encode(&control);
            assert!(bytes.len() <= MAX_FRAME_BYTES);
            assert_eq!(decode::<Control>(&bytes).unwrap(), control);
        }
    }

    #[test]
    fn control_frames_keep_their_numbers() {
        assert_eq!(encode(&Control::Pend { channel: 0 })[1], 0);
        assert_eq!(encode(&Control::Resume { channel: 0 })[1], 1);
        assert_eq!(
            encode(&Control::Credit {
                channel: 0,
                limit: 0
            })[1],
            2
        );
        assert_eq!(
            encode(&Control::Close {
                channel: 0,
                code: 0
            })[1],
            3
        );
    }

    #[test]
    fn trailing_bytes_versions_and_lengths_are_refused() {
        let mut bytes = encode(&Control::Pend { channel: 1 });
        bytes.push(0);
        assert_eq!(decode::<Control>(&bytes), Err(WireError::Malformed));
        assert_eq!(decode::<Control>(&[]), Err(WireError::Empty));
        assert_eq!(decode::<Control>(&[9, 0, 0]), Err(WireError::Version(9)));
        assert_eq!(
            decode::<Control>(&[VERSION; MAX_FRAME_BYTES + 1]),
            Err(WireError::TooLarge(MAX_FRAME_BYTES + 1))
        );
        assert_eq!(frame_len([0, 0]), Err(WireError::Empty));
        assert_eq!(frame_len([0x41, 0x01]), Err(WireError::TooLarge(321)));
        assert_eq!(frame_len([3, 0]), Ok(3));
    }

    #[test]
    fn a_frame_read_from_a_stream_and_a_clean_end() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut bytes = prefixed(&Control::Resume { channel: 9 });
            bytes.extend(prefixed(&Control::Pend { channel: 2 }));
            let mut reader = &bytes[..];
            assert_eq!(
                read_frame::<Control>(&mut reader).await.unwrap(),
                Some(Control::Resume { channel: 9 })
            );
            assert_eq!(
                read_frame::<Control>(&mut reader).await.unwrap(),
                Some(Control::Pend { channel: 2 })
            );
            assert_eq!(read_frame::<Control>(&mut reader).await.unwrap(), None);
            let cut = prefixed(&Control::Pend { channel: 2 });
            assert!(read_frame::<Control>(&mut &cut[..3]).await.is_err());
        });
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_a_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode::<Hello>(&bytes);
            let _ = decode::<Reply>(&bytes);
            let _ = decode::<Control>(&bytes);
            if bytes.len() >= 2 {
                let _ = frame_len([bytes[0], bytes[1]]);
            }
        }

        #[test]
        fn arbitrary_streams_never_panic_the_frame_reader(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async {
                let mut reader = &bytes[..];
                while let Ok(Some(_)) = read_frame::<Control>(&mut reader).await {}
            });
        }
    }
}
