//! What the DHT keeps in the node's [`Store`]: the items it stores for others and its routing
//! table's contacts, so a restarted node serves what it stored and rejoins without bootstrap
//! nodes.
//!
//! Items are held in memory for the protocol core (which reads them synchronously) and written
//! through to the database: each change is queued to the store's writer thread without
//! waiting, so a burst of stores costs one commit. A node killed between a store and its commit
//! loses only that item, which other storers hold too (every item lives on K nodes).

use std::collections::HashMap;
use std::net::SocketAddr;

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::key::Key;
use crate::message::Contact;
use crate::path::Subnet;
use crate::record::{PeerRecord, Value};
use crate::storage::{Item, ItemStore, StoredItem};
use crate::store::{DatabaseError, Store};

/// The layer name under which carrier-dht records its schema version.
pub const SCHEMA_LAYER: &str = "carrier-dht";
/// The schema version of carrier-dht's tables.
pub const SCHEMA_VERSION: u32 = 1;

const ITEMS_TABLE: &str = "dht/items";
const CONTACTS_TABLE: &str = "dht/contacts";
/// Items stored for others, by key: a postcard-encoded [`Row`].
const ITEMS: TableDefinition<'_, &[u8; 32], &[u8]> = TableDefinition::new(ITEMS_TABLE);
/// The routing table's contacts when last saved, by key: a postcard-encoded address.
const CONTACTS: TableDefinition<'_, &[u8; 32], &[u8]> = TableDefinition::new(CONTACTS_TABLE);

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

/// Creates carrier-dht's tables (schema version 1) if they are missing.
pub async fn ensure_schema(store: &Store) -> Result<(), DatabaseError> {
    store
        .ensure_schema(SCHEMA_LAYER, SCHEMA_VERSION, |txn, _from| {
            txn.open_table(ITEMS)?;
            txn.open_table(CONTACTS)?;
            Ok(())
        })
        .await
}

/// Items for the protocol core: in memory, written through to the database.
pub struct PersistentItems {
    items: HashMap<Key, StoredItem>,
    store: Store,
}

impl std::fmt::Debug for PersistentItems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistentItems")
            .field("items", &self.items.len())
            .finish()
    }
}

impl PersistentItems {
    /// Loads every item that has not expired by `now_unix_ms`. A row that cannot be decoded
    /// (damaged, or from another version) is skipped and removed: it is a cache of data that
    /// other storers hold too, never the only copy of a user's data.
    pub fn load(store: &Store, now_unix_ms: u64) -> Result<Self, DatabaseError> {
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
        Ok(PersistentItems {
            items,
            store: store.clone(),
        })
    }

    /// Queues a change for the writer thread without waiting for it: the protocol core is
    /// synchronous and runs inside the async driver. The change commits in the writer's next
    /// group. If it cannot be queued or fails (full disk), only the on-disk copy misses it: the
    /// item is still served from memory, and other storers hold it too.
    fn queue(
        &self,
        change: impl FnMut(&WriteTransaction) -> Result<(), DatabaseError> + Send + 'static,
    ) {
        let _ = self.store.write_detached(change);
    }
}

impl ItemStore for PersistentItems {
    fn get(&self, key: &Key) -> Option<StoredItem> {
        self.items.get(key).cloned()
    }

    fn put(&mut self, key: Key, item: StoredItem) {
        if let Ok(bytes) = postcard::to_stdvec(&Row::from(&item)) {
            self.queue(move |txn| {
                txn.open_table(ITEMS)?.insert(&key.0, bytes.as_slice())?;
                Ok(())
            });
        }
        self.items.insert(key, item);
    }

    fn remove(&mut self, key: &Key) -> Option<StoredItem> {
        let removed = self.items.remove(key);
        if removed.is_some() {
            let key = key.0;
            self.queue(move |txn| {
                txn.open_table(ITEMS)?.remove(&key)?;
                Ok(())
            });
        }
        removed
    }

    fn keys(&self) -> Vec<Key> {
        self.items.keys().copied().collect()
    }

    fn len(&self) -> usize {
        self.items.len()
    }
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
