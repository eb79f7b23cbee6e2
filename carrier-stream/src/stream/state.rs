//! A stream's states and the rule of their order, without I/O: [`StreamState`].

use std::sync::{Mutex, PoisonError};

use tokio::sync::mpsc;

/// Where a stream is in its life. A stream reports each state once, in this order, skipping
/// none of the first four: `Initialized`, `TransportReady`, `Connecting`, `Connected`; then
/// possibly `Deactivated` (its link went down under it), and last `Closed` or `Failed`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamState {
    /// Created, nothing done yet.
    Initialized,
    /// The friend's link is up: the stream has a transport.
    TransportReady,
    /// The open is on its way to (or from) the friend.
    Connecting,
    /// Both sides hold the stream: data flows.
    Connected,
    /// The friend's link went down under the stream; `Failed` follows, since a QUIC stream
    /// cannot outlive its connection.
    Deactivated,
    /// Closed by either side, orderly.
    Closed,
    /// Failed, with the reason (the link lost, the peer reset it, an open timed out).
    Failed(String),
}

impl StreamState {
    fn rank(&self) -> u8 {
        match self {
            StreamState::Initialized => 0,
            StreamState::TransportReady => 1,
            StreamState::Connecting => 2,
            StreamState::Connected => 3,
            StreamState::Deactivated => 4,
            StreamState::Closed | StreamState::Failed(_) => 5,
        }
    }

    /// Whether the stream is over (`Closed` or `Failed`).
    pub fn is_terminal(&self) -> bool {
        self.rank() == 5
    }

    /// Whether a stream in this state may move to `next`: forward only, never out of an
    /// ending state.
    pub fn may_become(&self, next: &StreamState) -> bool {
        !self.is_terminal() && next.rank() > self.rank()
    }
}

/// Called by a stream's state cell with each state it reaches (the layer's reports).
pub(crate) type StateObserver = Box<dyn Fn(&StreamState) + Send + Sync>;

/// A stream's current state and the channel its changes are reported on, shared by the
/// stream and the session that may end it.
pub(crate) struct StateCell {
    current: Mutex<StreamState>,
    changes: mpsc::UnboundedSender<StreamState>,
    /// The current state for watchers that hold no stream ([`StateCell::watch`]).
    watch: tokio::sync::watch::Sender<StreamState>,
    /// Told of each state too, under the same lock, so in the same order.
    observer: Option<StateObserver>,
}

impl std::fmt::Debug for StateCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateCell")
            .field("current", &self.get())
            .finish_non_exhaustive()
    }
}

impl StateCell {
    /// A cell in `Initialized`, already reported, and its receiving end.
    pub(crate) fn new() -> (Self, mpsc::UnboundedReceiver<StreamState>) {
        let (changes, receiver) = mpsc::unbounded_channel();
        // The receiver is alive: it is returned just below.
        let _ = changes.send(StreamState::Initialized);
        let cell = StateCell {
            current: Mutex::new(StreamState::Initialized),
            changes,
            watch: tokio::sync::watch::Sender::new(StreamState::Initialized),
            observer: None,
        };
        (cell, receiver)
    }

    /// A cell as [`new`](Self::new) whose every state, `Initialized` first, `observer`
    /// is told of too.
    pub(crate) fn observed(
        observer: StateObserver,
    ) -> (Self, mpsc::UnboundedReceiver<StreamState>) {
        let (mut cell, receiver) = Self::new();
        observer(&StreamState::Initialized);
        cell.observer = Some(observer);
        (cell, receiver)
    }

    pub(crate) fn get(&self) -> StreamState {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Moves to `next` and reports it if the order allows; returns whether it moved.
    pub(crate) fn advance(&self, next: StreamState) -> bool {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if !current.may_become(&next) {
            return false;
        }
        *current = next.clone();
        if let Some(observer) = &self.observer {
            observer(&next);
        }
        self.watch.send_replace(next.clone());
        // Nobody following the states is the application's choice.
        let _ = self.changes.send(next);
        true
    }

    /// A watch of the state, for a task that holds no stream.
    pub(crate) fn watch(&self) -> tokio::sync::watch::Receiver<StreamState> {
        self.watch.subscribe()
    }

    /// The link went down: `Deactivated`, then `Failed` with `reason`.
    pub(crate) fn link_lost(&self, reason: &str) {
        self.advance(StreamState::Deactivated);
        self.advance(StreamState::Failed(reason.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_sees_the_latest_state() {
        let (cell, _changes) = StateCell::new();
        let mut watch = cell.watch();
        assert_eq!(*watch.borrow_and_update(), StreamState::Initialized);
        cell.advance(StreamState::Connected);
        cell.link_lost("gone");
        assert!(watch.has_changed().unwrap());
        assert_eq!(
            *watch.borrow_and_update(),
            StreamState::Failed("gone".into())
        );
    }

    #[test]
    fn states_only_move_forward_and_an_ending_is_final() {
        let (cell, mut changes) = StateCell::new();
        assert!(cell.advance(StreamState::TransportReady));
        assert!(!cell.advance(StreamState::Initialized));
        assert!(cell.advance(StreamState::Connecting));
        assert!(cell.advance(StreamState::Connected));
        cell.link_lost("gone");
        assert!(!cell.advance(StreamState::Closed));
        assert!(!cell.advance(StreamState::Connected));
        let mut seen = Vec::new();
        while let Ok(state) = changes.try_recv() {
            seen.push(state);
        }
        assert_eq!(
            seen,
            [
                StreamState::Initialized,
                StreamState::TransportReady,
                StreamState::Connecting,
                StreamState::Connected,
                StreamState::Deactivated,
                StreamState::Failed("gone".into()),
            ]
        );
        assert_eq!(cell.get(), StreamState::Failed("gone".into()));
    }

    #[test]
    fn closing_is_allowed_from_every_state_but_an_ending() {
        for from in [
            StreamState::Initialized,
            StreamState::TransportReady,
            StreamState::Connecting,
            StreamState::Connected,
            StreamState::Deactivated,
        ] {
            assert!(from.may_become(&StreamState::Closed), "{from:?}");
            assert!(
                from.may_become(&StreamState::Failed(String::new())),
                "{from:?}"
            );
        }
        assert!(!StreamState::Closed.may_become(&StreamState::Failed(String::new())));
        assert!(!StreamState::Failed(String::new()).may_become(&StreamState::Closed));
    }
}
