//! The bounded cache of (sender, transaction ID) pairs that stops replayed requests.

use std::collections::{HashSet, VecDeque};

use crate::wire::key::Key;

/// Remembers recent requests so a repeated (sender, txid) is dropped.
///
/// Requests outside the clock-skew window are refused before they get here, so entries only
/// need to outlive that window. The cache is bounded; when it is full the oldest entry goes,
/// and its timestamp becomes a floor: any request stamped at or before the floor is refused
/// too. So eviction never reopens a replay window; at worst, under a flood, honest requests
/// with lagging clocks are refused until the floor ages out.
#[derive(Debug)]
pub(crate) struct ReplayCache {
    seen: HashSet<(Key, u64)>,
    order: VecDeque<(Key, u64, u64)>,
    capacity: usize,
    floor_unix_ms: u64,
}

/// What the cache says about a request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Freshness {
    Fresh,
    Replayed,
}

impl ReplayCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            seen: HashSet::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            floor_unix_ms: 0,
        }
    }

    /// Records the request and says whether it was new. `oldest_valid_ms` is the start of the
    /// clock-skew window: entries older than it cannot be replayed anyway and are dropped.
    pub(crate) fn check_and_insert(
        &mut self,
        sender: Key,
        txid: u64,
        unix_ms: u64,
        oldest_valid_ms: u64,
    ) -> Freshness {
        while let Some((k, t, ts)) = self.order.front().copied() {
            if ts >= oldest_valid_ms {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&(k, t));
        }
        if unix_ms <= self.floor_unix_ms || self.seen.contains(&(sender, txid)) {
            return Freshness::Replayed;
        }
        if self.order.len() >= self.capacity {
            if let Some((k, t, ts)) = self.order.pop_front() {
                self.seen.remove(&(k, t));
                self.floor_unix_ms = self.floor_unix_ms.max(ts);
            }
        }
        self.seen.insert((sender, txid));
        self.order.push_back((sender, txid, unix_ms));
        Freshness::Fresh
    }

    pub(crate) fn len(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_pair_is_replayed_and_eviction_raises_the_floor() {
        let mut cache = ReplayCache::new(2);
        let a = Key([1; 32]);
        assert_eq!(cache.check_and_insert(a, 1, 100, 0), Freshness::Fresh);
        assert_eq!(cache.check_and_insert(a, 1, 100, 0), Freshness::Replayed);
        assert_eq!(cache.check_and_insert(a, 2, 101, 0), Freshness::Fresh);
        assert_eq!(cache.check_and_insert(a, 3, 102, 0), Freshness::Fresh);
        // (a, 1) was evicted, but its timestamp is now the floor.
        assert_eq!(cache.check_and_insert(a, 1, 100, 0), Freshness::Replayed);
        assert!(cache.len() <= 2);
    }
}
