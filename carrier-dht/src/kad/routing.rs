//! The Kademlia routing table: buckets of at most K servers by shared prefix length (more
//! near the node's own key, see [`RoutingTable::with_near_capacity`]), with a replacement
//! cache, eviction after repeated timeouts, and a cap per address prefix.

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
    /// Entries a near bucket may hold (K: no near buckets).
    near_capacity: usize,
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
            near_capacity: K,
        }
    }

    /// Lets *near* buckets hold up to `entries` servers (at least K). Buckets are near from
    /// `log2(2 × entries / K)` levels above the bucket of the node's K-th closest entry: the
    /// network holds about `K × 2^(i - b)` servers in the subtree of bucket `i` when the K-th
    /// closest entry falls in bucket `b`, so a near bucket's subtree holds about `2 ×
    /// entries` servers or fewer, and the table knows all or most of them. A node a few bits
    /// from a target then answers with the true K closest instead of K of that subtree's
    /// servers. Farther buckets keep K.
    pub fn with_near_capacity(mut self, entries: usize) -> Self {
        self.near_capacity = entries.max(K);
        self
    }

    /// The shallowest near bucket (see [`RoutingTable::with_near_capacity`]); 0 while the
    /// table holds fewer than K entries.
    fn near_from(&self) -> usize {
        if self.near_capacity <= K {
            return usize::MAX;
        }
        let levels = (2 * self.near_capacity / K).ilog2() as usize;
        let mut held = 0;
        for (index, bucket) in self.buckets.iter().enumerate().rev() {
            held += bucket.entries.len();
            if held >= K {
                return index.saturating_sub(levels);
            }
        }
        0
    }

    /// Servers bucket `index` may hold now: the near capacity for a near bucket, else K.
    pub fn bucket_capacity(&self, index: usize) -> usize {
        if index >= self.near_from() {
            self.near_capacity
        } else {
            K
        }
    }

    /// Moves the least recently seen entries of buckets over their capacity (buckets that
    /// stopped being near as deeper ones filled) to their replacement caches.
    fn trim(&mut self) {
        let near_from = self.near_from();
        let replacement_cap = self.replacement_cap;
        for bucket in self.buckets.iter_mut().take(near_from) {
            while bucket.entries.len() > K {
                let old = bucket.entries.remove(0);
                if replacement_cap > 0 {
                    if bucket.replacements.len() >= replacement_cap {
                        bucket.replacements.remove(0);
                    }
                    // Replacements are most recent last: it was the least recently seen.
                    bucket.replacements.insert(0, old.contact);
                }
            }
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
        let room = self.bucket_capacity(index);
        let bucket = &mut self.buckets[index];
        bucket.touched = Some(now);
        if bucket.entries.len() < room {
            bucket.replacements.retain(|c| c.id != contact.id);
            bucket.entries.push(Entry {
                contact,
                last_seen: now,
                failures: 0,
            });
            self.trim();
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
        index < 256
            && self
                .buckets
                .get(index)
                .is_none_or(|b| b.entries.len() < self.bucket_capacity(index))
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

    /// Indices of the near buckets shallower than the bucket of the K-th closest entry that
    /// are not full: the subtrees of a few dozen servers that a node's own lookup does not
    /// reach, and a lookup of a random key in each fills. None while every bucket is near:
    /// the network is then so small (about `2 × near entries` servers or fewer) that the table
    /// holds most of it already.
    pub fn sparse_near_buckets(&self) -> Vec<usize> {
        let near_from = self.near_from();
        if near_from == 0 || near_from == usize::MAX {
            return Vec::new();
        }
        let kth = self.kth_closest_bucket().unwrap_or(0);
        (near_from..kth)
            .filter(|&i| self.buckets[i].entries.len() < self.near_capacity)
            .collect()
    }

    /// Indices of the empty buckets shallower than the bucket of the K-th closest entry: the
    /// subtrees that hold about K servers or more in the network around us, of which the table
    /// knows none. A table whose every far bucket holds someone reaches any part of the
    /// network, one bit or more per hop; an empty one is a part it cannot reach (nodes that
    /// join in the same instant meet only their neighbours and leave them empty, see
    /// [`crate::Node::bootstrap`]). None while the table holds fewer than K entries.
    pub fn empty_far_buckets(&self) -> Vec<usize> {
        let Some(kth) = self.kth_closest_bucket() else {
            return Vec::new();
        };
        (0..kth)
            .filter(|&i| self.buckets[i].entries.is_empty())
            .collect()
    }

    /// The bucket of the K-th closest entry to our own key, if the table holds K entries.
    fn kth_closest_bucket(&self) -> Option<usize> {
        let mut held = 0;
        for (index, bucket) in self.buckets.iter().enumerate().rev() {
            held += bucket.entries.len();
            if held >= K {
                return Some(index);
            }
        }
        None
    }

    /// Checks the table's invariants; `Err` says which one broke. For tests.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for (index, bucket) in self.buckets.iter().enumerate() {
            if bucket.entries.len() > self.bucket_capacity(index) {
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
