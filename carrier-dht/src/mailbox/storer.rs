//! What a storer keeps of mailboxes, and its rules: many items per mailbox key, each stored
//! once under its ID; a TTL the sender sets within the storer's cap; quotas in total, per
//! mailbox and per source address prefix; deletion only against the item's `d`; tombstones
//! so a deleted item is not handed back by a storer that missed the deletion.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::wire::key::Key;
use crate::wire::mailbox_item::{
    DeleteSecret, ItemId, MailboxItem, MAILBOX_ITEM_VERSION, MIN_SEALED_ITEM_BYTES,
};
pub use crate::wire::mailbox_item::{MAX_PAGE_ITEMS, PAGE_BUDGET_BYTES};
use crate::wire::message::{encode, Refusal};
use crate::wire::path::Subnet;

/// Caps on the mailbox items one node stores for others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MailboxLimits {
    /// Items stored in total.
    pub max_items: usize,
    /// Items in one mailbox (one recipient and day): a 64 KiB letter takes 98.
    pub max_items_per_mailbox: usize,
    /// Items first stored from one IPv4 /24 or IPv6 /64.
    pub max_items_per_subnet: usize,
    /// Longest an item may live: an item expiring later is refused. The default is the
    /// 7-day TTL senders use, plus an hour for senders whose clocks run ahead.
    pub max_ttl: Duration,
}

impl Default for MailboxLimits {
    fn default() -> Self {
        Self {
            max_items: 65_536,
            max_items_per_mailbox: 1_024,
            max_items_per_subnet: 4_096,
            max_ttl: Duration::from_secs(7 * 24 * 60 * 60 + 60 * 60),
        }
    }
}

/// A change to the mailboxes a storer holds, which a driver that keeps them on disk commits
/// (so what the node stores survives a restart). The rules never call into the database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MailboxWrite {
    /// `item` was stored in mailbox `key`, counted against `source`.
    Stored {
        /// The mailbox.
        key: Key,
        /// The item.
        item: MailboxItem,
        /// Whose quota it counts against.
        source: Subnet,
    },
    /// Item `id` of mailbox `key` was removed (deleted or expired).
    Removed {
        /// The mailbox.
        key: Key,
        /// The item.
        id: ItemId,
    },
    /// Item `id` was deleted: refuse it until `expires_unix_ms`, when it would have expired.
    Tombstoned {
        /// The item.
        id: ItemId,
        /// When it would have expired.
        expires_unix_ms: u64,
    },
    /// The tombstones of these items expired.
    TombstonesExpired(Vec<ItemId>),
}

#[derive(Clone, Debug)]
struct Held {
    item: MailboxItem,
    source: Subnet,
}

/// The mailboxes a node stores for others, in memory.
#[derive(Debug, Default)]
pub struct MailboxStorage {
    limits: MailboxLimits,
    boxes: BTreeMap<Key, BTreeMap<ItemId, Held>>,
    /// When each mailbox was last handed on to the nodes now closest to it.
    handed_unix_ms: HashMap<Key, u64>,
    per_subnet: HashMap<Subnet, usize>,
    /// Deleted items, until they would have expired.
    tombstones: HashMap<ItemId, u64>,
    len: usize,
    /// Changes not yet taken by the driver, when journaled.
    writes: Option<Vec<MailboxWrite>>,
}

impl MailboxStorage {
    /// Empty storage under `limits`.
    pub fn new(limits: MailboxLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Storage that starts with `restored` (what an earlier run's writes kept; expired items
    /// are skipped) and lists every later change for [`MailboxStorage::take_writes`].
    /// Restored items count against quotas but are never refused by them: they were admitted
    /// once already.
    pub fn journaled(
        limits: MailboxLimits,
        restored: Vec<(Key, MailboxItem, Subnet)>,
        now_unix_ms: u64,
    ) -> Self {
        let mut storage = Self::new(limits);
        for (key, item, source) in restored {
            if item.expires_unix_ms() <= now_unix_ms {
                continue;
            }
            let id = item.id();
            if storage.holds(&key, &id) {
                continue;
            }
            *storage.per_subnet.entry(source).or_default() += 1;
            storage.handed_unix_ms.entry(key).or_insert(now_unix_ms);
            storage
                .boxes
                .entry(key)
                .or_default()
                .insert(id, Held { item, source });
            storage.len += 1;
        }
        storage.writes = Some(Vec::new());
        storage
    }

    /// The changes since the last call (none unless journaled), oldest first.
    pub fn take_writes(&mut self) -> Vec<MailboxWrite> {
        self.writes.as_mut().map(std::mem::take).unwrap_or_default()
    }

    fn record(&mut self, write: MailboxWrite) {
        if let Some(writes) = self.writes.as_mut() {
            writes.push(write);
        }
    }

    /// Restores `tombstones` (deleted item IDs and when they would have expired, as the
    /// journal kept them): those items stay refused after a restart. Expired ones are skipped.
    pub fn with_tombstones(mut self, tombstones: Vec<(ItemId, u64)>, now_unix_ms: u64) -> Self {
        self.tombstones.extend(
            tombstones
                .into_iter()
                .filter(|(_, expires)| *expires > now_unix_ms),
        );
        self
    }

    /// Whether item `id` was deleted here and would not have expired yet.
    pub fn is_tombstoned(&self, id: &ItemId) -> bool {
        self.tombstones.contains_key(id)
    }

    /// Items stored, in all mailboxes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no item is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Items in mailbox `key`.
    pub fn items_in(&self, key: &Key) -> usize {
        self.boxes.get(key).map_or(0, BTreeMap::len)
    }

    /// Whether item `id` of mailbox `key` is stored.
    pub fn holds(&self, key: &Key, id: &ItemId) -> bool {
        self.boxes.get(key).is_some_and(|b| b.contains_key(id))
    }

    /// Stores `item` in mailbox `key`, received from `source`. Storing an item already held
    /// is a success that changes nothing (a replica handed on, or a retry).
    pub fn store(
        &mut self,
        key: Key,
        item: MailboxItem,
        source: Subnet,
        now_unix_ms: u64,
    ) -> Result<(), Refusal> {
        if item.version != MAILBOX_ITEM_VERSION || item.sealed.len() < MIN_SEALED_ITEM_BYTES {
            return Err(Refusal::Invalid);
        }
        let expires_ms = item.expires_unix_ms();
        let max_ttl_ms = self.limits.max_ttl.as_millis() as u64;
        if expires_ms <= now_unix_ms || expires_ms > now_unix_ms.saturating_add(max_ttl_ms) {
            return Err(Refusal::Expiry);
        }
        let id = item.id();
        if self.tombstones.contains_key(&id) {
            return Err(Refusal::Deleted);
        }
        if self.holds(&key, &id) {
            return Ok(());
        }
        if self.len >= self.limits.max_items {
            self.expire(now_unix_ms);
        }
        let used = self.per_subnet.get(&source).copied().unwrap_or(0);
        if self.len >= self.limits.max_items
            || self.items_in(&key) >= self.limits.max_items_per_mailbox
            || used >= self.limits.max_items_per_subnet
        {
            return Err(Refusal::Quota);
        }
        self.per_subnet.insert(source, used + 1);
        self.handed_unix_ms.entry(key).or_insert(now_unix_ms);
        if self.writes.is_some() {
            self.record(MailboxWrite::Stored {
                key,
                item: item.clone(),
                source,
            });
        }
        self.boxes
            .entry(key)
            .or_default()
            .insert(id, Held { item, source });
        self.len += 1;
        Ok(())
    }

    /// The live items of mailbox `key` after `after` (in ID order), as many as fit
    /// [`PAGE_BUDGET_BYTES`], and whether more follow.
    pub fn page(
        &self,
        key: &Key,
        after: Option<ItemId>,
        now_unix_ms: u64,
    ) -> (Vec<MailboxItem>, bool) {
        let Some(items) = self.boxes.get(key) else {
            return (Vec::new(), false);
        };
        let live = items
            .iter()
            .filter(|(id, _)| after.is_none_or(|a| **id > a))
            .filter(|(_, held)| held.item.expires_unix_ms() > now_unix_ms);
        let mut page = Vec::new();
        let mut bytes = 0;
        for (_, held) in live {
            let len = encode(&held.item).len();
            if page.len() == MAX_PAGE_ITEMS || (!page.is_empty() && bytes + len > PAGE_BUDGET_BYTES)
            {
                return (page, true);
            }
            bytes += len;
            page.push(held.item.clone());
        }
        (page, false)
    }

    /// The keys of the mailboxes held, in order.
    pub fn mailbox_keys(&self) -> Vec<Key> {
        self.boxes.keys().copied().collect()
    }

    /// Every live item of mailbox `key`.
    pub fn all(&self, key: &Key, now_unix_ms: u64) -> Vec<MailboxItem> {
        self.boxes.get(key).map_or_else(Vec::new, |items| {
            items
                .values()
                .filter(|h| h.item.expires_unix_ms() > now_unix_ms)
                .map(|h| h.item.clone())
                .collect()
        })
    }

    /// Deletes item `id` of mailbox `key` if `secret` is its `d`. An item deleted earlier
    /// (its tombstone remains) counts as deleted again, so a retried delete succeeds; an item
    /// never held is [`Refusal::Unknown`], so a delete that reached no holder is not taken
    /// for a success.
    pub fn delete(
        &mut self,
        key: &Key,
        id: &ItemId,
        secret: &DeleteSecret,
        now_unix_ms: u64,
    ) -> Result<(), Refusal> {
        let Some(held) = self.boxes.get(key).and_then(|b| b.get(id)) else {
            return if self.tombstones.contains_key(id) {
                Ok(())
            } else {
                Err(Refusal::Unknown)
            };
        };
        if !held.item.deleted_by(secret) {
            return Err(Refusal::Invalid);
        }
        let expires_ms = held.item.expires_unix_ms();
        self.remove(key, id);
        if expires_ms > now_unix_ms {
            self.tombstones.insert(*id, expires_ms);
            self.record(MailboxWrite::Tombstoned {
                id: *id,
                expires_unix_ms: expires_ms,
            });
        }
        Ok(())
    }

    fn remove(&mut self, key: &Key, id: &ItemId) {
        let Some(items) = self.boxes.get_mut(key) else {
            return;
        };
        if let Some(held) = items.remove(id) {
            self.len -= 1;
            if let Some(writes) = self.writes.as_mut() {
                writes.push(MailboxWrite::Removed { key: *key, id: *id });
            }
            if let Some(count) = self.per_subnet.get_mut(&held.source) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.per_subnet.remove(&held.source);
                }
            }
        }
        if items.is_empty() {
            self.boxes.remove(key);
            self.handed_unix_ms.remove(key);
        }
    }

    /// Drops expired items and tombstones.
    pub fn expire(&mut self, now_unix_ms: u64) {
        let dead: Vec<(Key, ItemId)> = self
            .boxes
            .iter()
            .flat_map(|(key, items)| {
                items
                    .iter()
                    .filter(|(_, h)| h.item.expires_unix_ms() <= now_unix_ms)
                    .map(|(id, _)| (*key, *id))
            })
            .collect();
        for (key, id) in dead {
            self.remove(&key, &id);
        }
        let gone: Vec<ItemId> = self
            .tombstones
            .iter()
            .filter(|(_, expires)| **expires <= now_unix_ms)
            .map(|(id, _)| *id)
            .collect();
        if !gone.is_empty() {
            for id in &gone {
                self.tombstones.remove(id);
            }
            self.record(MailboxWrite::TombstonesExpired(gone));
        }
    }

    /// Mailboxes not handed on for `interval_ms`, at most `max` of them, with their live
    /// items: what this node should now store at the nodes closest to each key, so items
    /// follow the key as nodes come and go. They are marked handed on.
    pub fn due_for_handoff(
        &mut self,
        now_unix_ms: u64,
        interval_ms: u64,
        max: usize,
    ) -> Vec<(Key, Vec<MailboxItem>)> {
        let mut due = Vec::new();
        for (key, items) in &self.boxes {
            if due.len() >= max {
                break;
            }
            let handed = self.handed_unix_ms.get(key).copied().unwrap_or(0);
            if now_unix_ms.saturating_sub(handed) < interval_ms {
                continue;
            }
            let live: Vec<MailboxItem> = items
                .values()
                .filter(|h| h.item.expires_unix_ms() > now_unix_ms)
                .map(|h| h.item.clone())
                .collect();
            due.push((*key, live));
        }
        for (key, _) in &due {
            self.handed_unix_ms.insert(*key, now_unix_ms);
        }
        due
    }

    /// Items counted against `subnet`'s quota.
    pub fn used_by(&self, subnet: &Subnet) -> usize {
        self.per_subnet.get(subnet).copied().unwrap_or(0)
    }
}
