//! The node's own connection to the network, as the original Carrier's connection-status
//! callback reported it: online while the node holds a DHT contact heard from recently,
//! offline once every contact went silent. A pure rule fed with `now`; the node polls it.

use std::time::{Duration, Instant};

/// Whether the node is connected to the Carrier network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnectionStatus {
    /// A DHT contact answered within the live window.
    Online,
    /// No DHT contact answered within the live window (or the node has none).
    Offline,
}

/// Tracks the node's connection and says when it changes.
#[derive(Clone, Debug)]
pub(crate) struct SelfConnection {
    /// A contact heard from within this long counts as live.
    live_window: Duration,
    status: ConnectionStatus,
}

impl SelfConnection {
    /// Offline until a contact is heard from; contacts heard within `live_window` are live.
    pub(crate) fn new(live_window: Duration) -> Self {
        SelfConnection {
            live_window,
            status: ConnectionStatus::Offline,
        }
    }

    /// The status as of the last observation.
    pub(crate) fn status(&self) -> ConnectionStatus {
        self.status
    }

    /// Takes the moment the most recently heard contact last answered (`None`: no contact at
    /// all); returns the new status when it changed.
    pub(crate) fn observe(
        &mut self,
        now: Instant,
        last_heard: Option<Instant>,
    ) -> Option<ConnectionStatus> {
        let live = last_heard
            .is_some_and(|heard| now.saturating_duration_since(heard) <= self.live_window);
        let status = if live {
            ConnectionStatus::Online
        } else {
            ConnectionStatus::Offline
        };
        (status != self.status).then(|| {
            self.status = status;
            status
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    const WINDOW: Duration = Duration::from_secs(60);

    #[test]
    fn a_node_starts_offline_and_stays_so_without_contacts() {
        let now = Instant::now();
        let mut connection = SelfConnection::new(WINDOW);
        assert_eq!(connection.status(), ConnectionStatus::Offline);
        assert_eq!(connection.observe(now, None), None);
        assert_eq!(connection.status(), ConnectionStatus::Offline);
    }

    #[test]
    fn a_contact_heard_makes_it_online_once() {
        let start = Instant::now();
        let mut connection = SelfConnection::new(WINDOW);
        assert_eq!(
            connection.observe(start, Some(start)),
            Some(ConnectionStatus::Online)
        );
        // Still live: no change reported again.
        assert_eq!(
            connection.observe(start + Duration::from_secs(30), Some(start)),
            None
        );
        assert_eq!(connection.status(), ConnectionStatus::Online);
    }

    #[test]
    fn every_contact_silent_past_the_window_makes_it_offline_and_a_new_answer_online() {
        let start = Instant::now();
        let mut connection = SelfConnection::new(WINDOW);
        connection.observe(start, Some(start));
        // At the window's edge the contact still counts.
        assert_eq!(connection.observe(start + WINDOW, Some(start)), None);
        assert_eq!(
            connection.observe(start + WINDOW + Duration::from_millis(1), Some(start)),
            Some(ConnectionStatus::Offline)
        );
        assert_eq!(
            connection.observe(start + 2 * WINDOW, Some(start)),
            None,
            "told once"
        );
        let later = start + 3 * WINDOW;
        assert_eq!(
            connection.observe(later, Some(later)),
            Some(ConnectionStatus::Online)
        );
    }

    #[test]
    fn losing_every_contact_makes_it_offline() {
        let start = Instant::now();
        let mut connection = SelfConnection::new(WINDOW);
        connection.observe(start, Some(start));
        assert_eq!(
            connection.observe(start + Duration::from_secs(1), None),
            Some(ConnectionStatus::Offline)
        );
    }

    #[test]
    fn a_clock_reading_older_than_the_contact_counts_as_live() {
        // `last_heard` may come from a later reading than `now`: no underflow, still live.
        let start = Instant::now();
        let mut connection = SelfConnection::new(WINDOW);
        assert_eq!(
            connection.observe(start, Some(start + Duration::from_secs(1))),
            Some(ConnectionStatus::Online)
        );
    }
}
