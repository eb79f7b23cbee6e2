//! [`ChannelReport`]: what the muxes of a node report about their channels to one
//! observer (set with [`MuxConfig::with_reports`](crate::MuxConfig::with_reports)), for one
//! event stream of the node or a log. Each mux still reports to its holder
//! ([`MuxEvent`](crate::MuxEvent)s, the results of opens); these are the same facts, named
//! by friend, session, stream and channel.

use bytes::Bytes;
use carrier_stream::msg::friend::dht::id::CarrierId;
use tokio::sync::mpsc;

use crate::error::CloseReason;
use crate::event::ChannelId;

/// A change of one channel of a mux.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelReport {
    /// The friend at the other end.
    pub peer: CarrierId,
    /// The session the multiplexed stream belongs to.
    pub session: u64,
    /// The multiplexed stream's ID in its session.
    pub stream: u32,
    /// The channel's ID in its mux.
    pub channel: ChannelId,
    /// What happened to it.
    pub change: ChannelChange,
}

/// What happened to a channel.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChannelChange {
    /// Open on both sides: this side's open the friend accepted (`by_friend` false), or the
    /// friend's open accepted here.
    Opened {
        /// The cookie it was opened with.
        cookie: Bytes,
        /// Whether the friend opened it.
        by_friend: bool,
    },
    /// An open refused, with the reason: this side's by the friend (`by_friend` false), or
    /// the friend's here.
    Refused {
        /// The cookie it was opened with.
        cookie: Bytes,
        /// Whether the friend opened it.
        by_friend: bool,
        /// The refusing side's reason.
        reason: String,
    },
    /// The friend pended it: this side's writes on it wait.
    Pending,
    /// The friend resumed it.
    Resumed,
    /// Closed by the friend with its reason, or lost with the stream or the link.
    Closed(CloseReason),
}

/// Where a mux's reports go, with the names of its stream; nothing when no observer is set.
#[derive(Debug)]
pub(crate) struct Reporter {
    pub(crate) to: Option<mpsc::UnboundedSender<ChannelReport>>,
    pub(crate) peer: CarrierId,
    pub(crate) session: u64,
    pub(crate) stream: u32,
}

impl Reporter {
    pub(crate) fn report(&self, channel: ChannelId, change: ChannelChange) {
        if let Some(to) = &self.to {
            // An observer that stopped listening is its own choice.
            let _ = to.send(ChannelReport {
                peer: self.peer,
                session: self.session,
                stream: self.stream,
                channel,
                change,
            });
        }
    }
}
