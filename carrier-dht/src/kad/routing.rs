//! The Kademlia routing table: buckets of at most K servers by shared prefix length, with a
//! replacement cache, eviction after repeated timeouts, and a cap per address prefix.

use std::time::{Duration, Instant};

use crate::wire::key::{Distance, Key};
use crate::wire::message::{Contact, K};
use crate::wire::path::Subnet;

/// One server in the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its key and the address it answered on.
    pub contact: Contact,
    /// When it last answered.
    pub last_seen: Instant,
    /// Consecutive requests it left unanswered.
    pub failures: u8,
}

#[derive(Clone, Debug, Default)]
struct Bucket {
    /// Least recently seen first.
    entries: Vec<Entry>,
    /// Servers that answered while the bucket was full; most recent last.
    replacements: Vec<Contact>,
    /// Last time a lookup or answer touched this bucket, for refresh.
    touched: Option<Instant>,
}

impl Bucket {
    /// Appends every entry with its distance to `target`.
    fn distances_to(&self, target: &Key, group: &mut Vec<(Distance, Contact)>) {
        group.extend(
            self.entries
                .iter()
                .map(|e| (e.contact.id.distance(target), e.contact)),
        );
    }
}

/// Moves the closest of `group` into `out`, closest first, until `out` holds `n`; empties
/// `group`.
fn take_closest(group: &mut Vec<(Distance, Contact)>, out: &mut Vec<Contact>, n: usize) {
    let need = n.saturating_sub(out.len());
    if need == 0 {
        group.clear();
        return;
    }
    if group.len() > need {
        group.select_nth_unstable_by(need - 1, |x, y| x.0.cmp(&y.0));
        group.truncate(need);
    }
    group.sort_unstable_by_key(|x| x.0);
    out.extend(group.drain(..).map(|(_, c)| c));
}

/// What [`RoutingTable::insert`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Added to its bucket.
    Added,
    /// Already there: marked seen now (and moved if its address changed).
    Updated,
    /// The bucket was full: kept in the replacement cache.
    Cached,
    /// Refused: its own key, or its address prefix already fills its share of the bucket.
    Refused,
}

/// The routing table of one node. Only servers that answered a request at the address it was
/// sent to belong here; the node enforces that, the table enforces everything else.
#[derive(Clone, Debug)]
pub struct RoutingTable {
    own: Key,
    buckets: Vec<Bucket>,
    max_per_subnet: Option<usize>,
    replacement_cap: usize,
    max_failures: u8,
}

impl RoutingTable {
    /// An empty table for the node `own`.
    pub fn new(
        own: Key,
        max_per_subnet: Option<usize>,
        replacement_cap: usize,
        max_failures: u8,
    ) -> Self {
        Self {
            own,
            buckets: Vec::new(),
            max_per_subnet,
            replacement_cap,
            max_failures: max_failures.max(1),
        }
    }

    /// The node's own key.
    pub fn own(&self) -> Key {
        self.own
    }

    /// Bucket index of `key`: the length of the prefix it shares with ours.
    pub fn bucket_index(&self, key: &Key) -> usize {
        self.own.distance(key).leading_zeros()
    }

    fn subnet_fits(&self, bucket: &Bucket, contact: &Contact, ignoring: Option<&Key>) -> bool {
        let Some(limit) = self.max_per_subnet else {
            return true;
        };
        let subnet = Subnet::of(contact.addr.ip());
        let same = bucket
            .entries
            .iter()
            .filter(|e| Some(&e.contact.id) != ignoring)
            .filter(|e| Subnet::of(e.contact.addr.ip()) == subnet)
            .count();
        same < limit
    }

    /// Records that `contact` answered at its address now.
    pub fn insert(&mut self, contact: Contact, now: Instant) -> InsertOutcome {
        let index = self.bucket_index(&contact.id);
        if index >= 256 {
            return InsertOutcome::Refused;
        }
        if self.buckets.len() <= index {
            self.buckets.resize_with(index + 1, Bucket::default);
        }
        let bucket = &self.buckets[index];
        if let Some(pos) = bucket
            .entries
            .iter()
            .position(|e| e.contact.id == contact.id)
        {
            if bucket.entries[pos].contact.addr != contact.addr
                && !self.subnet_fits(bucket, &contact, Some(&contact.id))
            {
                return InsertOutcome::Refused;
            }
            let bucket = &mut self.buckets[index];
            let mut entry = bucket.entries.remove(pos);
            entry.contact = contact;
            entry.last_seen = now;
            entry.failures = 0;
            bucket.entries.push(entry);
            bucket.touched = Some(now);
            return InsertOutcome::Updated;
        }
        if !self.subnet_fits(bucket, &contact, None) {
            return InsertOutcome::Refused;
        }
        let cap = self.replacement_cap;
        let bucket = &mut self.buckets[index];
        bucket.touched = Some(now);
        if bucket.entries.len() < K {
            bucket.replacements.retain(|c| c.id != contact.id);
            bucket.entries.push(Entry {
                contact,
                last_seen: now,
                failures: 0,
            });
            return InsertOutcome::Added;
        }
        bucket.replacements.retain(|c| c.id != contact.id);
        if cap == 0 {
            return InsertOutcome::Refused;
        }
        if bucket.replacements.len() >= cap {
            bucket.replacements.remove(0);
        }
        bucket.replacements.push(contact);
        InsertOutcome::Cached
    }

    /// Records that `id` left a request unanswered. After `max_failures` in a row it is
    /// evicted and the most recent fitting replacement takes its place. Returns whether it
    /// was evicted.
    pub fn record_failure(&mut self, id: &Key) -> bool {
        let index = self.bucket_index(id);
        let Some(bucket) = self.buckets.get_mut(index) else {
            return false;
        };
        bucket.replacements.retain(|c| c.id != *id);
        let Some(pos) = bucket.entries.iter().position(|e| e.contact.id == *id) else {
            return false;
        };
        bucket.entries[pos].failures = bucket.entries[pos].failures.saturating_add(1);
        if bucket.entries[pos].failures < self.max_failures {
            return false;
        }
        let evicted = bucket.entries.remove(pos);
        // Promote the most recent replacement whose prefix still fits.
        let candidates: Vec<Contact> = self.buckets[index]
            .replacements
            .iter()
            .rev()
            .copied()
            .collect();
        for candidate in candidates {
            if self.subnet_fits(&self.buckets[index], &candidate, None) {
                let bucket = &mut self.buckets[index];
                bucket.replacements.retain(|c| c.id != candidate.id);
                bucket.entries.insert(
                    0,
                    Entry {
                        contact: candidate,
                        last_seen: evicted.last_seen,
                        failures: 0,
                    },
                );
                break;
            }
        }
        true
    }

    /// Removes `id` outright (it proved to be a client, or another node now).
    pub fn remove(&mut self, id: &Key) {
        let index = self.bucket_index(id);
        if let Some(bucket) = self.buckets.get_mut(index) {
            bucket.entries.retain(|e| e.contact.id != *id);
            bucket.replacements.retain(|c| c.id != *id);
        }
    }

    /// Whether `id` is in the table.
    pub fn contains(&self, id: &Key) -> bool {
        let index = self.bucket_index(id);
        self.buckets
            .get(index)
            .is_some_and(|b| b.entries.iter().any(|e| e.contact.id == *id))
    }

    /// Whether the bucket `id` falls in has room for it.
    pub fn has_room_for(&self, id: &Key) -> bool {
        let index = self.bucket_index(id);
        index < 256 && self.buckets.get(index).is_none_or(|b| b.entries.len() < K)
    }

    /// The `n` servers closest to `target`, closest first.
    ///
    /// Buckets are visited in the order of their distance to `target`, so only the buckets
    /// that hold the answer are sorted: bucket `b` (the prefix `target` shares with us) holds
    /// every entry closer than all others; then come the deeper buckets, which all share
    /// exactly `b` bits with `target`; then the shallower buckets, deepest first.
    pub fn closest(&self, target: &Key, n: usize) -> Vec<Contact> {
        let mut out = Vec::with_capacity(n.min(self.len()));
        if n == 0 {
            return out;
        }
        let b = self.bucket_index(target);
        let mut group = Vec::with_capacity(2 * K);
        if let Some(bucket) = self.buckets.get(b) {
            bucket.distances_to(target, &mut group);
            take_closest(&mut group, &mut out, n);
        }
        if out.len() < n {
            for bucket in self.buckets.iter().skip(b.saturating_add(1)) {
                bucket.distances_to(target, &mut group);
            }
            take_closest(&mut group, &mut out, n);
        }
        for bucket in self.buckets.iter().take(b).rev() {
            if out.len() >= n {
                break;
            }
            bucket.distances_to(target, &mut group);
            take_closest(&mut group, &mut out, n);
        }
        out
    }

    /// Servers in the table.
    pub fn len(&self) -> usize {
        self.buckets.iter().map(|b| b.entries.len()).sum()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every entry, bucket by bucket.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.buckets.iter().flat_map(|b| b.entries.iter())
    }

    /// Marks the bucket of `key` as used now (a lookup went through it).
    pub fn touch(&mut self, key: &Key, now: Instant) {
        let index = self.bucket_index(key);
        if let Some(bucket) = self.buckets.get_mut(index) {
            bucket.touched = Some(now);
        }
    }

    /// Indices of buckets not touched for `interval`, up to the deepest non-empty bucket.
    pub fn stale_buckets(&self, now: Instant, interval: Duration) -> Vec<usize> {
        let deepest = self
            .buckets
            .iter()
            .rposition(|b| !b.entries.is_empty())
            .map_or(0, |i| i + 1);
        (0..deepest)
            .filter(|&i| {
                self.buckets[i]
                    .touched
                    .is_none_or(|t| now.saturating_duration_since(t) >= interval)
            })
            .collect()
    }

    /// Checks the table's invariants; `Err` says which one broke. For tests.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for (index, bucket) in self.buckets.iter().enumerate() {
            if bucket.entries.len() > K {
                return Err(format!("bucket {index} holds {}", bucket.entries.len()));
            }
            if bucket.replacements.len() > self.replacement_cap {
                return Err(format!("bucket {index} replacement cache overflows"));
            }
            for entry in &bucket.entries {
                let id = entry.contact.id;
                if id == self.own {
                    return Err("own key in table".into());
                }
                if self.bucket_index(&id) != index {
                    return Err(format!("{id:?} in wrong bucket {index}"));
                }
                if !seen.insert(id) {
                    return Err(format!("{id:?} twice"));
                }
                if entry.failures >= self.max_failures {
                    return Err(format!("{id:?} kept after {} failures", entry.failures));
                }
            }
            if let Some(limit) = self.max_per_subnet {
                for entry in &bucket.entries {
                    let subnet = Subnet::of(entry.contact.addr.ip());
                    let same = bucket
                        .entries
                        .iter()
                        .filter(|e| Subnet::of(e.contact.addr.ip()) == subnet)
                        .count();
                    if same > limit {
                        return Err(format!("bucket {index} has {same} of {subnet:?}"));
                    }
                }
            }
        }
        Ok(())
    }
}
