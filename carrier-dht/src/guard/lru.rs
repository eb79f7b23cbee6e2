//! A bounded map that forgets its least recently used entry when full.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// A map of at most `capacity` entries; inserting into a full map evicts the least recently
/// used one. Amortized O(1): a use appends to a queue of (key, stamp), and eviction skips
/// queue entries whose stamp is stale.
#[derive(Debug, Clone)]
pub(crate) struct BoundedLru<K, V> {
    map: HashMap<K, (V, u64)>,
    order: VecDeque<(K, u64)>,
    capacity: usize,
    clock: u64,
}

impl<K: Hash + Eq + Clone, V> BoundedLru<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            clock: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    fn touch(&mut self, key: &K) -> u64 {
        self.clock += 1;
        self.order.push_back((key.clone(), self.clock));
        if self.order.len() > 4 * self.capacity + 16 {
            self.compact();
        }
        self.clock
    }

    fn compact(&mut self) {
        let map = &self.map;
        self.order
            .retain(|(k, stamp)| map.get(k).is_some_and(|(_, s)| s == stamp));
    }

    /// The value for `key`, marking it used.
    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        if !self.map.contains_key(key) {
            return None;
        }
        let stamp = self.touch(key);
        let entry = self.map.get_mut(key)?;
        entry.1 = stamp;
        Some(&mut entry.0)
    }

    /// The value for `key` without marking it used.
    pub(crate) fn peek(&self, key: &K) -> Option<&V> {
        self.map.get(key).map(|(v, _)| v)
    }

    /// Every entry, in no particular order, without marking any used.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter().map(|(k, (v, _))| (k, v))
    }

    pub(crate) fn contains(&self, key: &K) -> bool {
        self.map.contains_key(key)
    }

    /// Inserts or replaces, evicting the least recently used entry if the map is full.
    /// Returns the evicted entry.
    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<(K, V)> {
        let stamp = self.touch(&key);
        if let Some(entry) = self.map.get_mut(&key) {
            *entry = (value, stamp);
            return None;
        }
        let mut evicted = None;
        if self.map.len() >= self.capacity {
            while let Some((old, old_stamp)) = self.order.pop_front() {
                if self.map.get(&old).is_some_and(|(_, s)| *s == old_stamp) {
                    evicted = self.map.remove(&old).map(|(v, _)| (old, v));
                    break;
                }
            }
        }
        self.map.insert(key, (value, stamp));
        evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used() {
        let mut lru = BoundedLru::new(2);
        lru.insert(1, "a");
        lru.insert(2, "b");
        assert!(lru.get_mut(&1).is_some());
        let evicted = lru.insert(3, "c");
        assert_eq!(evicted, Some((2, "b")));
        assert!(lru.contains(&1) && lru.contains(&3));
        assert_eq!(lru.len(), 2);
    }

    #[test]
    fn stays_bounded_under_many_touches() {
        let mut lru = BoundedLru::new(8);
        for i in 0..10_000u32 {
            lru.insert(i % 13, i);
            let _ = lru.get_mut(&(i % 5));
        }
        assert!(lru.len() <= 8);
        assert!(lru.order.len() <= 4 * 8 + 16);
    }
}
