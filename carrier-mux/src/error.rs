//! What channels fail at ([`MuxError`], one variant per case) and why they close
//! ([`CloseReason`]).

use carrier_stream::StreamError;

/// Why a channel closed, as both sides see it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// Closed on purpose, its work done.
    Normal,
    /// Closed because something took too long.
    Timeout,
    /// Closed because of an error.
    Error,
    /// The multiplexed stream or the friend's link went down under the channel; the text says
    /// which.
    Lost(String),
}

impl CloseReason {
    /// The number on the wire; [`Lost`](Self::Lost) never travels (the other side sees its
    /// own loss).
    pub(crate) fn code(&self) -> u8 {
        use crate::wire::close_code;
        match self {
            CloseReason::Normal => close_code::NORMAL,
            CloseReason::Timeout => close_code::TIMEOUT,
            CloseReason::Error | CloseReason::Lost(_) => close_code::ERROR,
        }
    }

    /// The reason a number on the wire names; an unknown number is an error.
    pub(crate) fn from_code(code: u8) -> Self {
        use crate::wire::close_code;
        match code {
            close_code::NORMAL => CloseReason::Normal,
            close_code::TIMEOUT => CloseReason::Timeout,
            _ => CloseReason::Error,
        }
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::Normal => f.write_str("closed normally"),
            CloseReason::Timeout => f.write_str("closed on a timeout"),
            CloseReason::Error => f.write_str("closed on an error"),
            CloseReason::Lost(why) => write!(f, "lost: {why}"),
        }
    }
}

/// What a [`Mux`](crate::Mux), a [`Channel`](crate::Channel) or a
/// [`ChannelRequest`](crate::ChannelRequest) refuses or fails at.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MuxError {
    /// The friend's application refused the channel, with its reason.
    #[error("the channel was refused: {0}")]
    Refused(String),
    /// A cookie longer than [`MAX_COOKIE_BYTES`](crate::MAX_COOKIE_BYTES).
    #[error("a cookie of {len} bytes exceeds the limit of {max} bytes")]
    CookieTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The friend did not answer a channel open within the open timeout.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The operation does not fit the state: a stream that is not multiplexed, a channel
    /// closed already.
    #[error("wrong state: {0}")]
    WrongState(String),
    /// No open channel has this ID here.
    #[error("unknown channel {0}")]
    UnknownChannel(u32),
    /// The multiplexed stream or the friend's link went down; the reason says which.
    #[error("the multiplexed stream is gone: {0}")]
    Gone(String),
    /// The sessions layer below failed (the session closed, the link broke under an open).
    #[error("the stream layer: {0}")]
    Stream(#[from] StreamError),
}
