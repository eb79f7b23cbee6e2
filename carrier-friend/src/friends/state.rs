//! What the friend layer keeps in the node's database, and the in-memory copy it answers
//! queries (and the friend gate) from.
//!
//! Tables (schema `carrier-friend` version 1), keyed by Carrier ID bytes unless noted; values
//! are postcard rows, decoded strictly (a damaged row is a [`DatabaseError::Corrupt`], never
//! silently dropped: it is the user's data):
//!
//! - `friend/friends`: friends with their label, user info and since when.
//! - `friend/incoming`, `friend/outgoing`: pending requests both ways.
//! - `friend/blocked`: blocked IDs.
//! - `friend/settings` (keyed by name): the nospam, the own user info, the control sequence.
//! - `friend/seen` (peer ‖ item ID): items taken from each peer, so each is taken once.
//! - `friend/peer-seq`: the newest control sequence applied from each peer.
//! - `friend/outbox`: the durable outbox ([`crate::outbox`]).
//! - `friend/lan-keys`: each friend's LAN key, as it sent it (32 bytes; [`super::lan`]).
//!   The node's own LAN key is `lan-key` in `friend/settings`, created at random on first
//!   start. Both were added without a schema change: the table and the key are created on
//!   start where missing, and older code ignores them.

use std::collections::{HashMap, HashSet};

use carrier_dht::id::{CarrierId, Nospam};
use carrier_dht::store::{DatabaseError, Store};
use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::lan::LanKey;
use super::wire::{Presence, UserInfo};
use crate::outbox::{Outbox, OutboxId};

/// The layer name of carrier-friend's schema.
pub(crate) const SCHEMA_LAYER: &str = "carrier-friend";
/// The schema version of carrier-friend's tables.
pub(crate) const SCHEMA_VERSION: u32 = 1;

type IdTable = TableDefinition<'static, &'static [u8; 32], &'static [u8]>;

const FRIENDS: IdTable = TableDefinition::new("friend/friends");
const INCOMING: IdTable = TableDefinition::new("friend/incoming");
const OUTGOING: IdTable = TableDefinition::new("friend/outgoing");
const BLOCKED: IdTable = TableDefinition::new("friend/blocked");
const PEER_SEQ: TableDefinition<'static, &'static [u8; 32], u64> =
    TableDefinition::new("friend/peer-seq");
const SEEN: TableDefinition<'static, &'static [u8; 48], u64> = TableDefinition::new("friend/seen");
const LAN_KEYS: TableDefinition<'static, &'static [u8; 32], &'static [u8; 32]> =
    TableDefinition::new("friend/lan-keys");
const SETTINGS: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("friend/settings");

/// The friend layer's outbox.
pub(crate) const OUTBOX: Outbox = Outbox::new("friend/outbox");

const NOSPAM: &str = "nospam";
const INFO: &str = "info";
const CONTROL_SEQ: &str = "control-seq";
const PRESENCE: &str = "presence";
const LAN_KEY: &str = "lan-key";

/// A friend as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FriendRow {
    pub(crate) label: String,
    pub(crate) info: UserInfo,
    pub(crate) since_unix_secs: u64,
    /// The friend's presence, as it last told.
    pub(crate) presence: Presence,
    /// The sequence of the newest profile or accept applied from the friend (0: none yet).
    pub(crate) profile_seq: u64,
}

/// A request someone sent us, waiting for accept or refuse.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct IncomingRow {
    pub(crate) request: OutboxId,
    pub(crate) info: UserInfo,
    pub(crate) hello: Vec<u8>,
    pub(crate) received_unix_secs: u64,
}

/// A request we sent, until the peer accepts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OutgoingRow {
    pub(crate) request: OutboxId,
    pub(crate) nospam: Nospam,
    pub(crate) hello: Vec<u8>,
    pub(crate) sent_unix_secs: u64,
}

/// Creates the tables (and a random nospam on first start).
pub(crate) async fn ensure_schema(store: &Store) -> Result<(), DatabaseError> {
    store
        .ensure_schema(SCHEMA_LAYER, SCHEMA_VERSION, |txn, _from| {
            txn.open_table(FRIENDS)?;
            txn.open_table(INCOMING)?;
            txn.open_table(OUTGOING)?;
            txn.open_table(BLOCKED)?;
            txn.open_table(PEER_SEQ)?;
            txn.open_table(SEEN)?;
            txn.open_table(SETTINGS)?;
            OUTBOX.create(txn)?;
            Ok(())
        })
        .await?;
    store
        .write(|txn| {
            let mut settings = txn.open_table(SETTINGS)?;
            if settings.get(NOSPAM)?.is_none() {
                settings.insert(NOSPAM, Nospam::random().to_bytes().as_slice())?;
            }
            if settings.get(LAN_KEY)?.is_none() {
                settings.insert(LAN_KEY, super::lan::random_key().as_slice())?;
            }
            txn.open_table(LAN_KEYS)?;
            Ok(())
        })
        .await
}

fn corrupt(table: &'static str, reason: impl std::fmt::Display) -> DatabaseError {
    DatabaseError::Corrupt {
        table,
        reason: reason.to_string(),
    }
}

fn encode<T: Serialize>(table: &'static str, row: &T) -> Result<Vec<u8>, DatabaseError> {
    postcard::to_allocvec(row).map_err(|e| corrupt(table, e))
}

/// A row, strictly: no trailing bytes.
pub(crate) fn decode<T: DeserializeOwned>(
    table: &'static str,
    bytes: &[u8],
) -> Result<T, DatabaseError> {
    let (row, rest) = postcard::take_from_bytes(bytes).map_err(|e| corrupt(table, e))?;
    if rest.is_empty() {
        Ok(row)
    } else {
        Err(corrupt(table, "trailing bytes"))
    }
}

fn id_of(table: &'static str, key: &[u8; 32]) -> Result<CarrierId, DatabaseError> {
    CarrierId::from_bytes(key).map_err(|e| corrupt(table, e))
}

/// Everything the layer keeps, in memory.
#[derive(Clone, Debug)]
pub(crate) struct State {
    pub(crate) friends: HashMap<CarrierId, FriendRow>,
    pub(crate) incoming: HashMap<CarrierId, IncomingRow>,
    pub(crate) outgoing: HashMap<CarrierId, OutgoingRow>,
    pub(crate) blocked: HashSet<CarrierId>,
    pub(crate) nospam: Nospam,
    pub(crate) info: UserInfo,
    pub(crate) presence: Presence,
    /// This node's LAN key.
    pub(crate) lan_key: LanKey,
    /// Friends' LAN keys.
    pub(crate) lan_keys: HashMap<CarrierId, LanKey>,
}

fn load_ids<T: DeserializeOwned>(
    txn: &ReadTransaction,
    table: IdTable,
    name: &'static str,
) -> Result<HashMap<CarrierId, T>, DatabaseError> {
    let table = txn.open_table(table)?;
    let mut rows = HashMap::new();
    for row in table.iter()? {
        let (k, v) = row?;
        rows.insert(id_of(name, k.value())?, decode(name, v.value())?);
    }
    Ok(rows)
}

impl State {
    /// Everything, from one consistent snapshot.
    pub(crate) fn load(store: &Store) -> Result<State, DatabaseError> {
        store.read(|txn| {
            let blocked: HashMap<CarrierId, u64> = load_ids(txn, BLOCKED, "friend/blocked")?;
            let settings = txn.open_table(SETTINGS)?;
            let nospam = match settings.get(NOSPAM)? {
                Some(bytes) => {
                    let bytes: [u8; 4] = bytes
                        .value()
                        .try_into()
                        .map_err(|_| corrupt("friend/settings", "nospam"))?;
                    Nospam::from_bytes(bytes)
                }
                None => return Err(corrupt("friend/settings", "no nospam")),
            };
            let info = match settings.get(INFO)? {
                Some(bytes) => decode("friend/settings", bytes.value())?,
                None => UserInfo::default(),
            };
            let presence = match settings.get(PRESENCE)? {
                Some(bytes) => decode("friend/settings", bytes.value())?,
                None => Presence::None,
            };
            let lan_key: LanKey = match settings.get(LAN_KEY)? {
                Some(bytes) => bytes
                    .value()
                    .try_into()
                    .map_err(|_| corrupt("friend/settings", "LAN key"))?,
                None => return Err(corrupt("friend/settings", "no LAN key")),
            };
            let mut lan_keys = HashMap::new();
            for row in txn.open_table(LAN_KEYS)?.iter()? {
                let (k, v) = row?;
                lan_keys.insert(id_of("friend/lan-keys", k.value())?, *v.value());
            }
            Ok(State {
                lan_key,
                lan_keys,
                presence,
                friends: load_ids(txn, FRIENDS, "friend/friends")?,
                incoming: load_ids(txn, INCOMING, "friend/incoming")?,
                outgoing: load_ids(txn, OUTGOING, "friend/outgoing")?,
                blocked: blocked.into_keys().collect(),
                nospam,
                info,
            })
        })
    }
}

/// The tables inside one write transaction: every change of the friend layer goes through
/// here, so a change and its outbox item commit together.
pub(crate) struct Tables<'a> {
    txn: &'a WriteTransaction,
}

impl<'a> Tables<'a> {
    pub(crate) fn new(txn: &'a WriteTransaction) -> Self {
        Self { txn }
    }

    pub(crate) fn txn(&self) -> &'a WriteTransaction {
        self.txn
    }

    fn get<T: DeserializeOwned>(
        &self,
        table: IdTable,
        name: &'static str,
        id: &CarrierId,
    ) -> Result<Option<T>, DatabaseError> {
        let table = self.txn.open_table(table)?;
        let row = table.get(id.as_bytes())?;
        row.map(|row| decode(name, row.value())).transpose()
    }

    fn put<T: Serialize>(
        &self,
        table: IdTable,
        name: &'static str,
        id: &CarrierId,
        row: &T,
    ) -> Result<(), DatabaseError> {
        let bytes = encode(name, row)?;
        self.txn
            .open_table(table)?
            .insert(id.as_bytes(), bytes.as_slice())?;
        Ok(())
    }

    fn remove(&self, table: IdTable, id: &CarrierId) -> Result<bool, DatabaseError> {
        Ok(self.txn.open_table(table)?.remove(id.as_bytes())?.is_some())
    }

    pub(crate) fn friend(&self, id: &CarrierId) -> Result<Option<FriendRow>, DatabaseError> {
        self.get(FRIENDS, "friend/friends", id)
    }

    pub(crate) fn put_friend(&self, id: &CarrierId, row: &FriendRow) -> Result<(), DatabaseError> {
        self.put(FRIENDS, "friend/friends", id, row)
    }

    /// Removes friend `id`, and the LAN key it sent. This node's own LAN key is replaced in
    /// the same transaction: the removed friend knows the old one and could otherwise still
    /// recognise this node's LAN tokens (the remaining friends get the new key on their
    /// links, see [`super::lan`]).
    pub(crate) fn remove_friend(&self, id: &CarrierId) -> Result<bool, DatabaseError> {
        self.txn.open_table(LAN_KEYS)?.remove(id.as_bytes())?;
        let removed = self.remove(FRIENDS, id)?;
        if removed {
            self.txn
                .open_table(SETTINGS)?
                .insert(LAN_KEY, super::lan::random_key().as_slice())?;
        }
        Ok(removed)
    }

    /// Keeps the LAN key friend `id` sent.
    pub(crate) fn put_lan_key(&self, id: &CarrierId, key: &LanKey) -> Result<(), DatabaseError> {
        self.txn.open_table(LAN_KEYS)?.insert(id.as_bytes(), key)?;
        Ok(())
    }

    pub(crate) fn incoming(&self, id: &CarrierId) -> Result<Option<IncomingRow>, DatabaseError> {
        self.get(INCOMING, "friend/incoming", id)
    }

    pub(crate) fn put_incoming(
        &self,
        id: &CarrierId,
        row: &IncomingRow,
    ) -> Result<(), DatabaseError> {
        self.put(INCOMING, "friend/incoming", id, row)
    }

    /// How many requests wait for an answer.
    pub(crate) fn incoming_count(&self) -> Result<u64, DatabaseError> {
        use redb::ReadableTableMetadata;
        Ok(self.txn.open_table(INCOMING)?.len()?)
    }

    pub(crate) fn remove_incoming(&self, id: &CarrierId) -> Result<bool, DatabaseError> {
        self.remove(INCOMING, id)
    }

    pub(crate) fn outgoing(&self, id: &CarrierId) -> Result<Option<OutgoingRow>, DatabaseError> {
        self.get(OUTGOING, "friend/outgoing", id)
    }

    pub(crate) fn put_outgoing(
        &self,
        id: &CarrierId,
        row: &OutgoingRow,
    ) -> Result<(), DatabaseError> {
        self.put(OUTGOING, "friend/outgoing", id, row)
    }

    pub(crate) fn remove_outgoing(&self, id: &CarrierId) -> Result<bool, DatabaseError> {
        self.remove(OUTGOING, id)
    }

    pub(crate) fn is_blocked(&self, id: &CarrierId) -> Result<bool, DatabaseError> {
        Ok(self.txn.open_table(BLOCKED)?.get(id.as_bytes())?.is_some())
    }

    pub(crate) fn block(&self, id: &CarrierId, now_unix_secs: u64) -> Result<(), DatabaseError> {
        self.put(BLOCKED, "friend/blocked", id, &now_unix_secs)
    }

    pub(crate) fn unblock(&self, id: &CarrierId) -> Result<bool, DatabaseError> {
        self.remove(BLOCKED, id)
    }

    pub(crate) fn nospam(&self) -> Result<Nospam, DatabaseError> {
        let settings = self.txn.open_table(SETTINGS)?;
        let bytes = settings
            .get(NOSPAM)?
            .ok_or_else(|| corrupt("friend/settings", "no nospam"))?;
        let bytes: [u8; 4] = bytes
            .value()
            .try_into()
            .map_err(|_| corrupt("friend/settings", "nospam"))?;
        Ok(Nospam::from_bytes(bytes))
    }

    pub(crate) fn set_nospam(&self, nospam: Nospam) -> Result<(), DatabaseError> {
        self.txn
            .open_table(SETTINGS)?
            .insert(NOSPAM, nospam.to_bytes().as_slice())?;
        Ok(())
    }

    pub(crate) fn info(&self) -> Result<UserInfo, DatabaseError> {
        let settings = self.txn.open_table(SETTINGS)?;
        let info = settings.get(INFO)?;
        match info {
            Some(bytes) => decode("friend/settings", bytes.value()),
            None => Ok(UserInfo::default()),
        }
    }

    pub(crate) fn set_info(&self, info: &UserInfo) -> Result<(), DatabaseError> {
        let bytes = encode("friend/settings", info)?;
        self.txn
            .open_table(SETTINGS)?
            .insert(INFO, bytes.as_slice())?;
        Ok(())
    }

    pub(crate) fn presence(&self) -> Result<Presence, DatabaseError> {
        let settings = self.txn.open_table(SETTINGS)?;
        let presence = settings.get(PRESENCE)?;
        match presence {
            Some(bytes) => decode("friend/settings", bytes.value()),
            None => Ok(Presence::None),
        }
    }

    pub(crate) fn set_presence(&self, presence: Presence) -> Result<(), DatabaseError> {
        let bytes = encode("friend/settings", &presence)?;
        self.txn
            .open_table(SETTINGS)?
            .insert(PRESENCE, bytes.as_slice())?;
        Ok(())
    }

    /// The friends' IDs.
    pub(crate) fn friend_ids(&self) -> Result<Vec<CarrierId>, DatabaseError> {
        let table = self.txn.open_table(FRIENDS)?;
        let mut ids = Vec::new();
        for row in table.iter()? {
            let (k, _) = row?;
            ids.push(id_of("friend/friends", k.value())?);
        }
        Ok(ids)
    }

    /// The next control sequence: above every one used before, and at least the time in
    /// milliseconds, so it keeps rising even if the database were lost.
    pub(crate) fn next_control_seq(&self, now_unix_ms: u64) -> Result<u64, DatabaseError> {
        let mut settings = self.txn.open_table(SETTINGS)?;
        let last = match settings.get(CONTROL_SEQ)? {
            Some(bytes) => {
                let bytes: [u8; 8] = bytes
                    .value()
                    .try_into()
                    .map_err(|_| corrupt("friend/settings", "control sequence"))?;
                u64::from_be_bytes(bytes)
            }
            None => 0,
        };
        let next = last.saturating_add(1).max(now_unix_ms);
        settings.insert(CONTROL_SEQ, next.to_be_bytes().as_slice())?;
        Ok(next)
    }

    /// Marks item `id` of `peer` as taken; returns whether it was taken before.
    pub(crate) fn seen(
        &self,
        peer: &CarrierId,
        id: &OutboxId,
        now_unix_secs: u64,
    ) -> Result<bool, DatabaseError> {
        let mut key = [0u8; 48];
        key[..32].copy_from_slice(peer.as_bytes());
        key[32..].copy_from_slice(&id.0);
        let mut seen = self.txn.open_table(SEEN)?;
        let before = seen.get(&key)?.is_some();
        if !before {
            seen.insert(&key, now_unix_secs)?;
        }
        Ok(before)
    }

    /// Records `seq` as the newest control sequence applied from `peer`; returns `false` (and
    /// changes nothing) if a newer or equal one was applied already.
    pub(crate) fn advance_peer_seq(
        &self,
        peer: &CarrierId,
        seq: u64,
    ) -> Result<bool, DatabaseError> {
        let mut table = self.txn.open_table(PEER_SEQ)?;
        let last = table.get(peer.as_bytes())?.map(|v| v.value());
        if last.is_some_and(|last| last >= seq) {
            return Ok(false);
        }
        table.insert(peer.as_bytes(), seq)?;
        Ok(true)
    }

    /// Forgets taken item IDs older than `before_unix_secs`.
    pub(crate) fn prune_seen(&self, before_unix_secs: u64) -> Result<(), DatabaseError> {
        self.txn
            .open_table(SEEN)?
            .retain(|_, at| at >= before_unix_secs)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_rows_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode::<FriendRow>("t", &bytes);
            let _ = decode::<IncomingRow>("t", &bytes);
            let _ = decode::<OutgoingRow>("t", &bytes);
            let _ = decode::<UserInfo>("t", &bytes);
            let _ = decode::<Presence>("t", &bytes);
        }
    }
}
