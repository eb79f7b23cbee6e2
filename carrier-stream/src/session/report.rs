//! [`SessionReport`]: what a node's sessions layer reports as a whole, to every subscriber
//! ([`Sessions::subscribe`](super::Sessions::subscribe)), for one event stream of the node
//! or a log. Each session's handle still reports to its holder ([`SessionEvent`]s,
//! a stream's states); these are the same facts, named by friend, session and stream.
//!
//! [`SessionEvent`]: super::SessionEvent

use std::sync::{Arc, Mutex, PoisonError};

use carrier_msg::friend::dht::id::CarrierId;
use tokio::sync::mpsc;

use crate::stream::{StateObserver, StreamKind, StreamMode, StreamState};

/// A fact about one of the node's sessions or their streams.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionReport {
    /// A session is open on both sides: requested here and accepted (`requester`), or a
    /// friend's request accepted here.
    Opened {
        /// The friend.
        peer: CarrierId,
        /// The session's ID.
        session: u64,
        /// The bundle it was requested for.
        bundle: String,
        /// Whether this side requested it.
        requester: bool,
    },
    /// The session's friend has no live link: its streams failed, new ones wait.
    Deactivated {
        /// The friend.
        peer: CarrierId,
        /// The session's ID.
        session: u64,
    },
    /// The link came back within the grace period: the session takes new streams again.
    Reactivated {
        /// The friend.
        peer: CarrierId,
        /// The session's ID.
        session: u64,
    },
    /// The session closed, with the reason.
    Closed {
        /// The friend.
        peer: CarrierId,
        /// The session's ID.
        session: u64,
        /// Why (the side that closed it gave it, or the layer: a grace period over).
        reason: String,
    },
    /// A stream of the session moved to `state` (each state once, in order).
    Stream {
        /// The friend.
        peer: CarrierId,
        /// The session's ID.
        session: u64,
        /// The stream's ID in its session.
        stream: u32,
        /// Its kind, as both sides see it.
        kind: StreamKind,
        /// Reliable or datagram.
        mode: StreamMode,
        /// The state it reached.
        state: StreamState,
    },
}

/// The receiving end of a [`Sessions::subscribe`](super::Sessions::subscribe). Unbounded:
/// a slow reader costs memory, never a lost report; dropping it unsubscribes.
pub type SessionReports = mpsc::UnboundedReceiver<SessionReport>;

/// The subscribers of a node's sessions layer; cheap to clone.
#[derive(Clone, Debug, Default)]
pub(crate) struct Reporter {
    subscribers: Arc<Mutex<Vec<mpsc::UnboundedSender<SessionReport>>>>,
}

impl Reporter {
    pub(crate) fn subscribe(&self) -> SessionReports {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.lock().push(sender);
        receiver
    }

    /// Tells every subscriber; those gone are forgotten.
    pub(crate) fn report(&self, report: SessionReport) {
        let mut subscribers = self.lock();
        if subscribers.is_empty() {
            return;
        }
        subscribers.retain(|s| s.send(report.clone()).is_ok());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<mpsc::UnboundedSender<SessionReport>>> {
        // Nothing panics while it is held; a poisoned list is still whole.
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// What a stream's state cell calls at each state it reaches.
    pub(crate) fn stream_observer(
        &self,
        peer: CarrierId,
        session: u64,
        stream: u32,
        kind: StreamKind,
        mode: StreamMode,
    ) -> StateObserver {
        let reporter = self.clone();
        Box::new(move |state: &StreamState| {
            reporter.report(SessionReport::Stream {
                peer,
                session,
                stream,
                kind,
                mode,
                state: state.clone(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_live_subscriber_gets_each_report_and_a_dropped_one_is_forgotten() {
        let reporter = Reporter::default();
        let mut first = reporter.subscribe();
        let second = reporter.subscribe();
        drop(second);
        let peer = carrier_msg::friend::dht::id::Keypair::generate().id();
        let observe = reporter.stream_observer(peer, 7, 2, StreamKind::Text, StreamMode::Reliable);
        observe(&StreamState::Connected);
        assert_eq!(
            first.try_recv().unwrap(),
            SessionReport::Stream {
                peer,
                session: 7,
                stream: 2,
                kind: StreamKind::Text,
                mode: StreamMode::Reliable,
                state: StreamState::Connected
            }
        );
        assert_eq!(reporter.lock().len(), 1);
    }
}
