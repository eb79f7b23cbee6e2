//! The friend layer's signalling frames: what a friend-layer unidirectional stream carries,
//! exactly one bounded frame per stream (postcard, strictly decoded).

use serde::{Deserialize, Serialize};

use super::lan::LanKey;
use super::punch::{Candidates, MAX_CANDIDATES_FRAME_BYTES};

/// The largest signalling frame: the variant and the largest candidates frame.
pub(super) const MAX_SIGNAL_FRAME_BYTES: usize = 1 + MAX_CANDIDATES_FRAME_BYTES;

/// One signalling frame between friends, on their link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Signal {
    /// Hole punching's candidate addresses ([`super::punch`]).
    Candidates(Candidates),
    /// The sender's LAN key, whose tokens it advertises on its LAN ([`super::lan`]).
    LanKey(LanKey),
}

impl Signal {
    pub(super) fn encode(&self) -> Vec<u8> {
        carrier_dht::message::encode(self)
    }

    /// Reads a frame, refusing trailing bytes, frames over [`MAX_SIGNAL_FRAME_BYTES`] and
    /// candidates beyond their limit.
    pub(super) fn decode(bytes: &[u8]) -> Option<Signal> {
        if bytes.len() > MAX_SIGNAL_FRAME_BYTES {
            return None;
        }
        let frame: Signal = carrier_dht::message::decode_exact(bytes).ok()?;
        match &frame {
            Signal::Candidates(candidates) if !candidates.is_within_limits() => None,
            _ => Some(frame),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use carrier_dht::punch::MAX_CANDIDATES;
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn frames_round_trip_and_refuse_trailing_bytes_and_too_many_candidates() {
        let key = Signal::LanKey([0xAB; 32]);
        let bytes = key.encode();
        assert_eq!(bytes.len(), 33);
        assert_eq!(Signal::decode(&bytes), Some(key));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(Signal::decode(&trailing), None);
        assert_eq!(Signal::decode(&bytes[..32]), None);
        let largest = Signal::Candidates(Candidates {
            request: true,
            addrs: vec!["[2001:db8::1]:65535".parse().unwrap(); MAX_CANDIDATES],
        });
        let bytes = largest.encode();
        assert!(bytes.len() <= MAX_SIGNAL_FRAME_BYTES);
        assert_eq!(Signal::decode(&bytes), Some(largest));
        let too_many = Signal::Candidates(Candidates {
            request: false,
            addrs: vec!["10.0.0.1:1".parse().unwrap(); MAX_CANDIDATES + 1],
        });
        assert_eq!(Signal::decode(&too_many.encode()), None);
        // An unknown variant.
        assert_eq!(Signal::decode(&[2]), None);
        assert_eq!(Signal::decode(&[]), None);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Some(frame) = Signal::decode(&bytes) {
                // Whatever decodes is within its limits and decodes again from its encoding.
                prop_assert!(bytes.len() <= MAX_SIGNAL_FRAME_BYTES);
                prop_assert_eq!(Signal::decode(&frame.encode()), Some(frame));
            }
        }
    }
}
