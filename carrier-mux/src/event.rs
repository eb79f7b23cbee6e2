//! What a mux reports: [`MuxEvent`]s about its channels, named by [`ChannelId`].

use crate::error::CloseReason;

/// A channel's ID in its mux: chosen by the side that opens it (even from the side that
/// opened the multiplexed stream, odd from the other), so the two never collide.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId(pub u32);

impl std::fmt::Display for ChannelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "channel {}", self.0)
    }
}

/// What happens to a mux's channels, in the order this side learnt it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MuxEvent {
    /// The friend pended the channel: this side's writes on it wait.
    Pending(ChannelId),
    /// The friend resumed the channel: writes go on.
    Resumed(ChannelId),
    /// The channel closed: by the friend (with its reason), or lost with the multiplexed
    /// stream or the link ([`CloseReason::Lost`]).
    Closed(ChannelId, CloseReason),
}
