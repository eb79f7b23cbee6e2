//! What a stream carries and how: [`StreamKind`] and [`StreamMode`], numbered on the wire.

/// What a stream carries: a label both sides see, chosen by the side that adds the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// Application data.
    Application,
    /// Text.
    Text,
    /// Messages.
    Message,
    /// Audio.
    Audio,
    /// Video.
    Video,
}

impl StreamKind {
    /// The number on the wire (never renumbered).
    pub(crate) fn byte(self) -> u8 {
        match self {
            StreamKind::Application => 0,
            StreamKind::Text => 1,
            StreamKind::Message => 2,
            StreamKind::Audio => 3,
            StreamKind::Video => 4,
        }
    }

    pub(crate) fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            0 => StreamKind::Application,
            1 => StreamKind::Text,
            2 => StreamKind::Message,
            3 => StreamKind::Audio,
            4 => StreamKind::Video,
            _ => return None,
        })
    }
}

/// How a stream's data travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamMode {
    /// Ordered and lossless, like TCP: a QUIC stream of its own.
    Reliable,
    /// Unordered and lossy, like UDP: QUIC datagrams of at most
    /// [`MAX_DATAGRAM_BYTES`](crate::MAX_DATAGRAM_BYTES), with the stream's own receive queue.
    Datagram,
}

impl StreamMode {
    /// The number on the wire (never renumbered).
    pub(crate) fn byte(self) -> u8 {
        match self {
            StreamMode::Reliable => 0,
            StreamMode::Datagram => 1,
        }
    }

    pub(crate) fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(StreamMode::Reliable),
            1 => Some(StreamMode::Datagram),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_modes_keep_their_numbers() {
        for byte in 0..=u8::MAX {
            if let Some(kind) = StreamKind::from_byte(byte) {
                assert_eq!(kind.byte(), byte);
            }
            if let Some(mode) = StreamMode::from_byte(byte) {
                assert_eq!(mode.byte(), byte);
            }
        }
        assert_eq!(StreamKind::Video.byte(), 4);
        assert_eq!(StreamMode::Datagram.byte(), 1);
        assert_eq!(StreamKind::from_byte(5), None);
        assert_eq!(StreamMode::from_byte(2), None);
    }
}
