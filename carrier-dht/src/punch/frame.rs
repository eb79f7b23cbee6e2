//! The punch frames: a probe sent to a candidate address of the peer, and the answer sent
//! back to where a probe came from.
//!
//! ```text
//! | 0x04 | postcard(PunchFrame) |   at most MAX_PUNCH_FRAME_BYTES in all
//! ```

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::wire::error::WireError;
use crate::wire::message::{decode_exact, encode};

/// The first byte of a punch frame (below the QUIC bit 0x40, beside the DHT's 0x01 and the
/// relay's 0x02 and 0x03).
pub const PUNCH_CLASS: u8 = 0x04;

/// The largest punch frame: an answer naming an IPv6 address (65 bytes), with room to spare.
pub const MAX_PUNCH_FRAME_BYTES: usize = 96;

/// Bytes of a link's tag in a frame.
pub const TAG_BYTES: usize = 8;

/// Bytes of a frame's MAC.
pub const MAC_BYTES: usize = 16;

/// A punch frame, after its class byte.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PunchFrame {
    /// "Are you there?", sent to a candidate address of the peer.
    Probe {
        /// Names the link (derived from its key).
        tag: [u8; TAG_BYTES],
        /// Chosen by the prober; the answer repeats it.
        nonce: u64,
        /// Over the tag, the sender's role and the nonce.
        mac: [u8; MAC_BYTES],
    },
    /// "Here I am": the answer to a probe, sent to the address the probe came from.
    Answer {
        /// Names the link.
        tag: [u8; TAG_BYTES],
        /// The probe's nonce.
        nonce: u64,
        /// The address the probe was seen from: the prober's address on this path.
        seen: SocketAddr,
        /// Over the tag, the sender's role, the nonce and `seen`.
        mac: [u8; MAC_BYTES],
    },
}

impl PunchFrame {
    /// The datagram: the class byte, then the frame.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(48);
        out.push(PUNCH_CLASS);
        out.extend_from_slice(&encode(self));
        out
    }

    /// Reads a datagram, refusing anything but exactly one frame of the punch class.
    pub fn decode(datagram: &[u8]) -> Result<PunchFrame, WireError> {
        if datagram.len() > MAX_PUNCH_FRAME_BYTES {
            return Err(WireError::Oversized(datagram.len()));
        }
        match datagram.first() {
            None => Err(WireError::TooShort(0)),
            Some(&PUNCH_CLASS) => decode_exact(&datagram[1..]),
            Some(&other) => Err(WireError::Class(other)),
        }
    }

    /// The link's tag the frame names.
    pub fn tag(&self) -> [u8; TAG_BYTES] {
        match self {
            PunchFrame::Probe { tag, .. } | PunchFrame::Answer { tag, .. } => *tag,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_frame_fits_and_frames_round_trip() {
        let answer = PunchFrame::Answer {
            tag: [0xff; TAG_BYTES],
            nonce: u64::MAX,
            seen: "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"
                .parse()
                .unwrap(),
            mac: [0xff; MAC_BYTES],
        };
        let bytes = answer.encode();
        assert!(
            bytes.len() <= MAX_PUNCH_FRAME_BYTES,
            "{} bytes",
            bytes.len()
        );
        assert_eq!(PunchFrame::decode(&bytes).unwrap(), answer);
        let probe = PunchFrame::Probe {
            tag: [1; TAG_BYTES],
            nonce: 7,
            mac: [2; MAC_BYTES],
        };
        assert_eq!(PunchFrame::decode(&probe.encode()).unwrap(), probe);
    }

    #[test]
    fn other_classes_trailing_bytes_and_oversized_datagrams_are_refused() {
        let probe = PunchFrame::Probe {
            tag: [1; TAG_BYTES],
            nonce: 7,
            mac: [2; MAC_BYTES],
        };
        let mut bytes = probe.encode();
        bytes.push(0);
        assert!(PunchFrame::decode(&bytes).is_err());
        bytes.pop();
        bytes[0] = 0x01;
        assert!(matches!(
            PunchFrame::decode(&bytes),
            Err(WireError::Class(1))
        ));
        assert!(PunchFrame::decode(&[]).is_err());
        assert!(PunchFrame::decode(&[PUNCH_CLASS; 200]).is_err());
    }
}
