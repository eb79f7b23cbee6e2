//! What a storer keeps: values and peer records with their rules (sequence numbers only grow,
//! compare-and-swap, owners fixed by key), TTLs, size caps and quotas per source address
//! prefix. The rules live here; where the items live is behind [`ItemStore`] (in memory), and
//! a storage made [`Storage::journaled`] also lists every change as an [`ItemWrite`] for its
//! driver to commit to the node's database: the rules never call into the database.

use std::collections::HashMap;

use crate::wire::key::Key;
use crate::wire::message::Refusal;
use crate::wire::path::Subnet;
use crate::wire::record::{PeerRecord, Value};

/// Caps on what one node stores for others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StorageLimits {
    /// Items stored in total.
    pub max_items: usize,
    /// Items first stored from one IPv4 /24 or IPv6 /64 (IDs are free, so quotas go by
    /// address prefix).
    pub max_items_per_subnet: usize,
}

impl Default for StorageLimits {
    fn default() -> Self {
        Self {
            max_items: 65_536,
            max_items_per_subnet: 4_096,
        }
    }
}

/// A stored value or record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// An immutable or mutable value.
    Value(Value),
    /// A node's peer record.
    Peer(PeerRecord),
}

impl Item {
    fn seq(&self) -> u64 {
        match self {
            Item::Value(v) => v.seq(),
            Item::Peer(p) => p.seq,
        }
    }
}

/// An item with its bookkeeping, as an [`ItemStore`] keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredItem {
    /// The item.
    pub item: Item,
    /// Unix time (ms) after which it is dropped.
    pub expires_unix_ms: u64,
    /// Unix time (ms) it was last stored or republished, by anyone.
    pub refreshed_unix_ms: u64,
    /// The prefix whose quota it counts against.
    pub source: Subnet,
}

/// Where stored items live. The in-memory [`MemoryItemStore`] serves the core and the
/// simulation; the node's database will implement it so items survive restarts.
pub trait ItemStore: Send {
    /// The item under `key`.
    fn get(&self, key: &Key) -> Option<StoredItem>;
    /// Stores or replaces the item under `key`.
    fn put(&mut self, key: Key, item: StoredItem);
    /// Removes and returns the item under `key`.
    fn remove(&mut self, key: &Key) -> Option<StoredItem>;
    /// Every key, in no particular order.
    fn keys(&self) -> Vec<Key>;
    /// Number of items.
    fn len(&self) -> usize;
    /// Whether there are no items.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Items in a hash map.
#[derive(Debug, Default)]
pub struct MemoryItemStore {
    items: HashMap<Key, StoredItem>,
}

impl FromIterator<(Key, StoredItem)> for MemoryItemStore {
    fn from_iter<I: IntoIterator<Item = (Key, StoredItem)>>(iter: I) -> Self {
        Self {
            items: iter.into_iter().collect(),
        }
    }
}

impl ItemStore for MemoryItemStore {
    fn get(&self, key: &Key) -> Option<StoredItem> {
        self.items.get(key).cloned()
    }
    fn put(&mut self, key: Key, item: StoredItem) {
        self.items.insert(key, item);
    }
    fn remove(&mut self, key: &Key) -> Option<StoredItem> {
        self.items.remove(key)
    }
    fn keys(&self) -> Vec<Key> {
        self.items.keys().copied().collect()
    }
    fn len(&self) -> usize {
        self.items.len()
    }
}

/// A change to the stored items, which a driver that keeps them on disk commits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemWrite {
    /// `key` now holds this item.
    Put(Key, StoredItem),
    /// `key` holds nothing any more.
    Removed(Key),
}

/// The storage rules over an [`ItemStore`].
pub struct Storage {
    store: Box<dyn ItemStore>,
    limits: StorageLimits,
    per_subnet: HashMap<Subnet, usize>,
    /// Changes not yet taken by the driver, when journaled.
    writes: Option<Vec<ItemWrite>>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("items", &self.store.len())
            .field("limits", &self.limits)
            .finish()
    }
}

impl Storage {
    /// Rules over `store`. Quota counts start from what `store` already holds.
    pub fn new(store: Box<dyn ItemStore>, limits: StorageLimits) -> Self {
        let mut per_subnet: HashMap<Subnet, usize> = HashMap::new();
        for key in store.keys() {
            if let Some(item) = store.get(&key) {
                *per_subnet.entry(item.source).or_default() += 1;
            }
        }
        Self {
            store,
            limits,
            per_subnet,
            writes: None,
        }
    }

    /// The same storage, listing every later change for [`Storage::take_writes`].
    pub fn journaled(mut self) -> Self {
        self.writes = Some(Vec::new());
        self
    }

    /// The changes since the last call (none unless [`Storage::journaled`]), oldest first.
    pub fn take_writes(&mut self) -> Vec<ItemWrite> {
        self.writes.as_mut().map(std::mem::take).unwrap_or_default()
    }

    fn put(&mut self, key: Key, stored: StoredItem) {
        if let Some(writes) = self.writes.as_mut() {
            writes.push(ItemWrite::Put(key, stored.clone()));
        }
        self.store.put(key, stored);
    }

    /// In memory.
    pub fn in_memory(limits: StorageLimits) -> Self {
        Self::new(Box::<MemoryItemStore>::default(), limits)
    }

    /// Items stored.
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }

    /// The live item under `key`.
    pub fn get(&self, key: &Key, now_unix_ms: u64) -> Option<Item> {
        self.store
            .get(key)
            .filter(|s| s.expires_unix_ms > now_unix_ms)
            .map(|s| s.item)
    }

    /// Stores a value received from `source`, to live `ttl_ms` from now.
    pub fn store_value(
        &mut self,
        value: Value,
        cas: Option<u64>,
        source: Subnet,
        now_unix_ms: u64,
        ttl_ms: u64,
    ) -> Result<(), Refusal> {
        let key = value.key();
        value.verify_for(&key).map_err(|_| Refusal::Invalid)?;
        let expires = now_unix_ms.saturating_add(ttl_ms);
        self.admit(key, Item::Value(value), cas, source, now_unix_ms, expires)
    }

    /// Stores a peer record received from `source`; its own expiry must lie within
    /// `max_ttl_ms` from now.
    pub fn store_peer(
        &mut self,
        record: PeerRecord,
        source: Subnet,
        now_unix_ms: u64,
        max_ttl_ms: u64,
    ) -> Result<(), Refusal> {
        record.verify().map_err(|_| Refusal::Invalid)?;
        let expires = record.expires_unix_ms();
        if expires <= now_unix_ms || expires > now_unix_ms.saturating_add(max_ttl_ms) {
            return Err(Refusal::Expiry);
        }
        self.admit(
            record.key(),
            Item::Peer(record),
            None,
            source,
            now_unix_ms,
            expires,
        )
    }

    fn admit(
        &mut self,
        key: Key,
        item: Item,
        cas: Option<u64>,
        source: Subnet,
        now_unix_ms: u64,
        expires: u64,
    ) -> Result<(), Refusal> {
        let existing = self
            .store
            .get(&key)
            .filter(|s| s.expires_unix_ms > now_unix_ms);
        if let Some(current) = existing {
            check_replacement(&current.item, &item, cas)?;
            let stored = StoredItem {
                item,
                expires_unix_ms: current.expires_unix_ms.max(expires),
                refreshed_unix_ms: now_unix_ms,
                source: current.source,
            };
            self.put(key, stored);
            return Ok(());
        }
        self.remove(&key);
        if self.store.len() >= self.limits.max_items {
            self.expire(now_unix_ms);
            if self.store.len() >= self.limits.max_items {
                return Err(Refusal::Quota);
            }
        }
        let used = self.per_subnet.get(&source).copied().unwrap_or(0);
        if used >= self.limits.max_items_per_subnet {
            return Err(Refusal::Quota);
        }
        self.per_subnet.insert(source, used + 1);
        self.put(
            key,
            StoredItem {
                item,
                expires_unix_ms: expires,
                refreshed_unix_ms: now_unix_ms,
                source,
            },
        );
        Ok(())
    }

    fn remove(&mut self, key: &Key) {
        if let Some(old) = self.store.remove(key) {
            if let Some(writes) = self.writes.as_mut() {
                writes.push(ItemWrite::Removed(*key));
            }
            if let Some(count) = self.per_subnet.get_mut(&old.source) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.per_subnet.remove(&old.source);
                }
            }
        }
    }

    /// Drops every item that has expired.
    pub fn expire(&mut self, now_unix_ms: u64) {
        for key in self.store.keys() {
            if self
                .store
                .get(&key)
                .is_some_and(|s| s.expires_unix_ms <= now_unix_ms)
            {
                self.remove(&key);
            }
        }
    }

    /// Items not stored or republished by anyone for `interval_ms`: the ones this node should
    /// now republish, at most `max` of them. They are marked refreshed, so each comes up once
    /// per interval.
    pub fn due_for_republish(
        &mut self,
        now_unix_ms: u64,
        interval_ms: u64,
        max: usize,
    ) -> Vec<Item> {
        let mut due = Vec::new();
        // Sorted, so a simulation replays identically whatever the map's hash order.
        let mut keys = self.store.keys();
        keys.sort_unstable();
        for key in keys {
            if due.len() >= max {
                break;
            }
            let Some(mut stored) = self.store.get(&key) else {
                continue;
            };
            if stored.expires_unix_ms <= now_unix_ms {
                continue;
            }
            if now_unix_ms.saturating_sub(stored.refreshed_unix_ms) >= interval_ms {
                stored.refreshed_unix_ms = now_unix_ms;
                due.push(stored.item.clone());
                self.put(key, stored);
            }
        }
        due
    }

    /// Items counted against `subnet`'s quota.
    pub fn used_by(&self, subnet: &Subnet) -> usize {
        self.per_subnet.get(subnet).copied().unwrap_or(0)
    }
}

/// Whether `new` may replace `current` under the same key.
fn check_replacement(current: &Item, new: &Item, cas: Option<u64>) -> Result<(), Refusal> {
    match (current, new) {
        (Item::Value(Value::Immutable(_)), Item::Value(Value::Immutable(_))) => Ok(()),
        (Item::Value(Value::Mutable(old)), Item::Value(Value::Mutable(new_value))) => {
            if old.owner != new_value.owner || old.salt != new_value.salt {
                return Err(Refusal::Invalid);
            }
            if let Some(expected) = cas {
                if expected != old.seq {
                    return Err(Refusal::CasMismatch);
                }
            }
            newer_or_same(current, new)
        }
        (Item::Peer(old), Item::Peer(new_record)) => {
            if old.id != new_record.id {
                return Err(Refusal::Invalid);
            }
            newer_or_same(current, new)
        }
        _ => Err(Refusal::Invalid),
    }
}

/// A higher sequence number replaces; the same one only as an identical copy (a republish).
fn newer_or_same(current: &Item, new: &Item) -> Result<(), Refusal> {
    if new.seq() > current.seq() || (new.seq() == current.seq() && new == current) {
        Ok(())
    } else {
        Err(Refusal::StaleSequence)
    }
}
