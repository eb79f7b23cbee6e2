//! What the DHT keeps in the node's [`Store`]: the items it stores for others and its routing
//! table's contacts, so a restarted node serves what it stored and rejoins without bootstrap
//! nodes.
//!
//! Items are held in memory by the protocol core (which reads them synchronously); the core
//! lists each change as a [`StorageWrite`] and the driver commits them with [`commit_writes`],
//! queued to the store's writer thread without waiting, so a burst of stores costs one commit.
//! A node killed between a store and its commit loses only that item, which other storers hold
//! too (every item lives on K nodes).

use std::collections::HashMap;
use std::net::SocketAddr;

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::io::store::{DatabaseError, Store};
use crate::kad::storage::{Item, ItemWrite, MemoryItemStore, StoredItem};
use crate::mailbox::storer::MailboxWrite;
use crate::mailbox::{ItemId, MailboxItem};
use crate::node::event::StorageWrite;
use crate::wire::key::Key;
use crate::wire::message::Contact;
use crate::wire::path::Subnet;
use crate::wire::record::{PeerRecord, Value};

/// The layer name under which carrier-dht records its schema version.
pub const SCHEMA_LAYER: &str = "carrier-dht";
/// The schema version of carrier-dht's tables (2 added the mailbox items, 3 their
/// tombstones).
pub const SCHEMA_VERSION: u32 = 3;

const ITEMS_TABLE: &str = "dht/items";
const CONTACTS_TABLE: &str = "dht/contacts";
const MAILBOX_TABLE: &str = "dht/mailbox-items";
const TOMBSTONE_TABLE: &str = "dht/mailbox-tombstones";
/// Items stored for others, by key: a postcard-encoded [`Row`].
const ITEMS: TableDefinition<'_, &[u8; 32], &[u8]> = TableDefinition::new(ITEMS_TABLE);
/// The routing table's contacts when last saved, by key: a postcard-encoded address.
const CONTACTS: TableDefinition<'_, &[u8; 32], &[u8]> = TableDefinition::new(CONTACTS_TABLE);

/// Mailbox items stored for others, by mailbox key ‖ item ID: a postcard-encoded
/// [`MailboxRow`].
const MAILBOX_ITEMS: TableDefinition<'_, &[u8; 64], &[u8]> = TableDefinition::new(MAILBOX_TABLE);

/// Deleted mailbox items, by item ID: when the item would have expired (Unix ms). Kept so a
/// storer that restarts still refuses a replay of an item deleted before.
const TOMBSTONES: TableDefinition<'_, &[u8; 32], u64> = TableDefinition::new(TOMBSTONE_TABLE);

/// A mailbox item as stored on disk.
#[derive(Serialize, Deserialize)]
struct MailboxRow {
    item: MailboxItem,
    source: RowSubnet,
}

/// An item as stored on disk.
#[derive(Serialize, Deserialize)]
struct Row {
    item: RowItem,
    expires_unix_ms: u64,
    refreshed_unix_ms: u64,
    source: RowSubnet,
}

#[derive(Serialize, Deserialize)]
enum RowItem {
    Value(Value),
    Peer(PeerRecord),
}

#[derive(Serialize, Deserialize)]
enum RowSubnet {
    V4([u8; 3]),
    V6([u8; 8]),
}

impl From<&StoredItem> for Row {
    fn from(stored: &StoredItem) -> Self {
        Row {
            item: match &stored.item {
                Item::Value(v) => RowItem::Value(v.clone()),
                Item::Peer(p) => RowItem::Peer(p.clone()),
            },
            expires_unix_ms: stored.expires_unix_ms,
            refreshed_unix_ms: stored.refreshed_unix_ms,
            source: match stored.source {
                Subnet::V4(p) => RowSubnet::V4(p),
                Subnet::V6(p) => RowSubnet::V6(p),
            },
        }
    }
}

impl Row {
    fn into_stored(self) -> StoredItem {
        StoredItem {
            item: match self.item {
                RowItem::Value(v) => Item::Value(v),
                RowItem::Peer(p) => Item::Peer(p),
            },
            expires_unix_ms: self.expires_unix_ms,
            refreshed_unix_ms: self.refreshed_unix_ms,
            source: match self.source {
                RowSubnet::V4(p) => Subnet::V4(p),
                RowSubnet::V6(p) => Subnet::V6(p),
            },
        }
    }
}

/// Creates carrier-dht's tables if they are missing (from version 1 the mailbox table, from
/// version 2 the tombstones).
pub async fn ensure_schema(store: &Store) -> Result<(), DatabaseError> {
    store
        .ensure_schema(SCHEMA_LAYER, SCHEMA_VERSION, |txn, _from| {
            txn.open_table(ITEMS)?;
            txn.open_table(CONTACTS)?;
            txn.open_table(MAILBOX_ITEMS)?;
            txn.open_table(TOMBSTONES)?;
            Ok(())
        })
        .await
}

/// Loads every stored item that has not expired by `now_unix_ms`, for the core's
/// [`crate::Storage`]. A row that cannot be decoded (damaged, or from another version) is
/// skipped and removed: it is a cache of data that other storers hold too, never the only copy
/// of a user's data.
pub fn load_items(store: &Store, now_unix_ms: u64) -> Result<MemoryItemStore, DatabaseError> {
    let mut items = HashMap::new();
    let mut dead = Vec::new();
    store.read(|txn| {
        let table = txn.open_table(ITEMS)?;
        for row in table.iter()? {
            let (key, value) = row?;
            let key = *key.value();
            match postcard::from_bytes::<Row>(value.value()) {
                Ok(row) if row.expires_unix_ms > now_unix_ms => {
                    items.insert(Key(key), row.into_stored());
                }
                _ => dead.push(key),
            }
        }
        Ok(())
    })?;
    if !dead.is_empty() {
        // Removing them can wait for the writer's next group.
        store.write_detached(move |txn| {
            let mut table = txn.open_table(ITEMS)?;
            for key in &dead {
                table.remove(key)?;
            }
            Ok(())
        })?;
    }
    Ok(items.into_iter().collect())
}

/// Queues the core's `writes` for the store's writer thread without waiting: they commit, in
/// order, in its next group. If they cannot be queued or fail (full disk), only the on-disk
/// copy misses them: the items are still served from memory, and K - 1 other storers hold
/// them too.
pub fn commit_writes(store: &Store, writes: Vec<StorageWrite>) {
    if writes.is_empty() {
        return;
    }
    let _ = store.write_detached(move |txn| {
        for write in &writes {
            apply(txn, write)?;
        }
        Ok(())
    });
}

fn apply(txn: &WriteTransaction, write: &StorageWrite) -> Result<(), DatabaseError> {
    match write {
        StorageWrite::Item(ItemWrite::Put(key, item)) => {
            if let Ok(bytes) = postcard::to_stdvec(&Row::from(item)) {
                txn.open_table(ITEMS)?.insert(&key.0, bytes.as_slice())?;
            }
        }
        StorageWrite::Item(ItemWrite::Removed(key)) => {
            txn.open_table(ITEMS)?.remove(&key.0)?;
        }
        StorageWrite::Mailbox(MailboxWrite::Stored { key, item, source }) => {
            let row = MailboxRow {
                item: item.clone(),
                source: row_subnet(*source),
            };
            if let Ok(bytes) = postcard::to_stdvec(&row) {
                txn.open_table(MAILBOX_ITEMS)?
                    .insert(&mailbox_row_key(key, &item.id()), bytes.as_slice())?;
            }
        }
        StorageWrite::Mailbox(MailboxWrite::Removed { key, id }) => {
            txn.open_table(MAILBOX_ITEMS)?
                .remove(&mailbox_row_key(key, id))?;
        }
        StorageWrite::Mailbox(MailboxWrite::Tombstoned {
            id,
            expires_unix_ms,
        }) => {
            txn.open_table(TOMBSTONES)?
                .insert(&id.0, *expires_unix_ms)?;
        }
        StorageWrite::Mailbox(MailboxWrite::TombstonesExpired(ids)) => {
            let mut table = txn.open_table(TOMBSTONES)?;
            for id in ids {
                table.remove(&id.0)?;
            }
        }
    }
    Ok(())
}

/// Replaces the saved contacts with `contacts` and waits until that is on disk.
pub async fn save_contacts(store: &Store, contacts: Vec<Contact>) -> Result<(), DatabaseError> {
    store
        .write(move |txn| replace_contacts(txn, &contacts))
        .await
}

/// Replaces the saved contacts with `contacts` inside a write transaction.
pub fn replace_contacts(txn: &WriteTransaction, contacts: &[Contact]) -> Result<(), DatabaseError> {
    txn.delete_table(CONTACTS)?;
    let mut table = txn.open_table(CONTACTS)?;
    for contact in contacts {
        if let Ok(addr) = postcard::to_stdvec(&contact.addr) {
            table.insert(&contact.id.0, addr.as_slice())?;
        }
    }
    Ok(())
}

/// The contacts saved by [`save_contacts`]; undecodable rows are skipped.
pub fn load_contacts(store: &Store) -> Result<Vec<Contact>, DatabaseError> {
    store.read(|txn| {
        let table = txn.open_table(CONTACTS)?;
        let mut contacts = Vec::new();
        for row in table.iter()? {
            let (key, value) = row?;
            if let Ok(addr) = postcard::from_bytes::<SocketAddr>(value.value()) {
                contacts.push(Contact {
                    id: Key(*key.value()),
                    addr,
                });
            }
        }
        Ok(contacts)
    })
}

fn row_subnet(subnet: Subnet) -> RowSubnet {
    match subnet {
        Subnet::V4(p) => RowSubnet::V4(p),
        Subnet::V6(p) => RowSubnet::V6(p),
    }
}

fn mailbox_row_key(key: &Key, id: &ItemId) -> [u8; 64] {
    let mut row = [0u8; 64];
    row[..32].copy_from_slice(&key.0);
    row[32..].copy_from_slice(&id.0);
    row
}

/// The mailbox items saved by [`commit_writes`] that have not expired by
/// `now_unix_ms`; undecodable or expired rows are skipped and removed.
pub fn load_mailboxes(
    store: &Store,
    now_unix_ms: u64,
) -> Result<Vec<(Key, MailboxItem, Subnet)>, DatabaseError> {
    let mut items = Vec::new();
    let mut dead = Vec::new();
    store.read(|txn| {
        let table = txn.open_table(MAILBOX_ITEMS)?;
        for row in table.iter()? {
            let (key, value) = row?;
            let key = *key.value();
            match postcard::from_bytes::<MailboxRow>(value.value()) {
                Ok(row) if row.item.expires_unix_ms() > now_unix_ms => {
                    let mut mailbox = [0u8; 32];
                    mailbox.copy_from_slice(&key[..32]);
                    let source = match row.source {
                        RowSubnet::V4(p) => Subnet::V4(p),
                        RowSubnet::V6(p) => Subnet::V6(p),
                    };
                    items.push((Key(mailbox), row.item, source));
                }
                _ => dead.push(key),
            }
        }
        Ok(())
    })?;
    if !dead.is_empty() {
        store.write_detached(move |txn| {
            let mut table = txn.open_table(MAILBOX_ITEMS)?;
            for key in &dead {
                table.remove(key)?;
            }
            Ok(())
        })?;
    }
    Ok(items)
}

/// The tombstones saved by [`commit_writes`] that have not expired by `now_unix_ms`:
/// deleted item IDs with the time they would have expired. Expired rows are removed.
pub fn load_tombstones(
    store: &Store,
    now_unix_ms: u64,
) -> Result<Vec<(ItemId, u64)>, DatabaseError> {
    let mut live = Vec::new();
    let mut dead = Vec::new();
    store.read(|txn| {
        let table = txn.open_table(TOMBSTONES)?;
        for row in table.iter()? {
            let (id, expires) = row?;
            let (id, expires) = (*id.value(), expires.value());
            if expires > now_unix_ms {
                live.push((ItemId(id), expires));
            } else {
                dead.push(id);
            }
        }
        Ok(())
    })?;
    if !dead.is_empty() {
        store.write_detached(move |txn| {
            let mut table = txn.open_table(TOMBSTONES)?;
            for id in &dead {
                table.remove(id)?;
            }
            Ok(())
        })?;
    }
    Ok(live)
}
