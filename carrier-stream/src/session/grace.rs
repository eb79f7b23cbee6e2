//! How long a session waits for its friend's link to come back: the grace period, without
//! I/O. The driver tells it when links go down and come up, with `now`; it says which
//! sessions ran out of time and when it next needs to be asked.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Deactivated sessions and when each stops waiting.
#[derive(Debug)]
pub(crate) struct Grace<K> {
    period: Duration,
    deadlines: HashMap<K, Instant>,
}

impl<K: Copy + Eq + Hash> Grace<K> {
    pub(crate) fn new(period: Duration) -> Self {
        Self {
            period,
            deadlines: HashMap::new(),
        }
    }

    /// Session `key` lost its link at `now`: it waits one period (an earlier deadline
    /// stands).
    pub(crate) fn link_down(&mut self, key: K, now: Instant) {
        self.deadlines.entry(key).or_insert(now + self.period);
    }

    /// Session `key`'s link is back (or the session ended): it waits no more. Whether it was
    /// waiting.
    pub(crate) fn link_up(&mut self, key: &K) -> bool {
        self.deadlines.remove(key).is_some()
    }

    /// The sessions whose period ended by `now`, forgotten here.
    pub(crate) fn expired(&mut self, now: Instant) -> Vec<K> {
        let over: Vec<K> = self
            .deadlines
            .iter()
            .filter(|(_, deadline)| **deadline <= now)
            .map(|(key, _)| *key)
            .collect();
        for key in &over {
            self.deadlines.remove(key);
        }
        over
    }

    /// The sessions waiting.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &K> {
        self.deadlines.keys()
    }

    /// When [`expired`](Self::expired) next has something, if ever.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.values().min().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_expires_one_period_after_its_link_went_down_unless_it_came_back() {
        let start = Instant::now();
        let period = Duration::from_secs(10);
        let mut grace = Grace::new(period);
        assert_eq!(grace.poll_timeout(), None);
        grace.link_down(1, start);
        grace.link_down(2, start + Duration::from_secs(3));
        grace.link_down(1, start + Duration::from_secs(5));
        assert_eq!(
            grace.poll_timeout(),
            Some(start + period),
            "the first deadline stands"
        );
        assert!(grace.expired(start + Duration::from_secs(9)).is_empty());
        assert!(grace.link_up(&2));
        assert!(!grace.link_up(&2));
        assert_eq!(grace.expired(start + period), vec![1]);
        assert!(grace.expired(start + Duration::from_secs(60)).is_empty());
        assert_eq!(grace.poll_timeout(), None);
    }
}
