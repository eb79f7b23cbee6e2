//! What the messenger keeps in the node's database.
//!
//! Tables (schema `carrier-msg` version 1); values are postcard rows, decoded strictly (a
//! damaged row is a [`DatabaseError::Corrupt`], never silently dropped):
//!
//! - `msg/peers` (friend): the epoch of our sequence to the friend, and its next sequence.
//! - `msg/outbox` (friend ‖ message ID): a message waiting for its receipt, without its body.
//! - `msg/bodies` (message ID): the bodies of the outbox's messages, written once at `send`
//!   and deleted with their row: nothing rewrites a body.
//! - `msg/windows` (friend ‖ epoch): the next sequence expected from the friend.
//! - `msg/inbox` (message ID): received messages not yet acked, with their order.
//! - `msg/held` (friend ‖ epoch ‖ after ‖ ID): large messages that arrived before the small
//!   message they follow.
//! - `msg/seen-large` (friend ‖ ID): large messages taken, so each is taken once.
//! - `msg/meta` (name): the inbox's order counter.
//!
//! The receiver commits the inbox rows and the window in one transaction before anything is
//! acknowledged; a send commits the message and the next sequence together.

use carrier_friend::dht::id::CarrierId;
use carrier_friend::dht::store::{DatabaseError, Store};
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::window;
use crate::wire::{Batch, Item, Large, Receipt};
use crate::{Message, MessageId};

const SCHEMA_LAYER: &str = "carrier-msg";
const SCHEMA_VERSION: u32 = 1;

const PEERS: TableDefinition<'static, &'static [u8; 32], &'static [u8]> =
    TableDefinition::new("msg/peers");
const OUTBOX: TableDefinition<'static, &'static [u8; 48], &'static [u8]> =
    TableDefinition::new("msg/outbox");
const BODIES: TableDefinition<'static, &'static [u8; 16], &'static [u8]> =
    TableDefinition::new("msg/bodies");
const WINDOWS: TableDefinition<'static, &'static [u8; 40], u64> =
    TableDefinition::new("msg/windows");
const INBOX: TableDefinition<'static, &'static [u8; 16], &'static [u8]> =
    TableDefinition::new("msg/inbox");
const HELD: TableDefinition<'static, &'static [u8; 64], &'static [u8]> =
    TableDefinition::new("msg/held");
const SEEN_LARGE: TableDefinition<'static, &'static [u8; 48], u64> =
    TableDefinition::new("msg/seen-large");
const META: TableDefinition<'static, &'static str, u64> = TableDefinition::new("msg/meta");

const INBOX_ORDER: &str = "inbox-order";

/// Our sequence to one friend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PeerRow {
    pub(crate) epoch: u64,
    pub(crate) next_seq: u64,
    /// When the friendship this epoch belongs to was made (the friend layer's
    /// `since_unix_secs`): a friendship made again gets a new epoch.
    pub(crate) since: u64,
    /// The last sequence deposited in the friend's mailbox, and when (Unix ms), so a restart
    /// does not deposit again what waits there already.
    pub(crate) deposited_through: u64,
    pub(crate) deposited_at_ms: u64,
}

/// A message in the outbox, without its body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OutboxRow {
    pub(crate) epoch: u64,
    /// The sequence of a small message; `None` for a large one.
    pub(crate) seq: Option<u64>,
    /// For a large message, the sequence it follows.
    pub(crate) after: u64,
    pub(crate) sent_at_ms: u64,
    pub(crate) offline: bool,
    pub(crate) expires_at_ms: u64,
    /// Expired: its sequence travels as a skip.
    pub(crate) skip: bool,
    /// The body's length.
    pub(crate) len: usize,
}

/// A received message not yet acked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct InboxRow {
    order: u64,
    from: CarrierId,
    sent_at_ms: u64,
    offline: bool,
    #[serde(with = "raw_bytes")]
    body: Vec<u8>,
}

/// A large message waiting for the small one it follows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct HeldRow {
    sent_at_ms: u64,
    offline: bool,
    #[serde(with = "raw_bytes")]
    body: Vec<u8>,
}

/// A body as one byte string, not a sequence of bytes one call each (a profile of a burst
/// found the row's encoding 3% of the writer's time). Postcard writes both the same way (a
/// length, then the bytes), so rows written before read back unchanged.
mod raw_bytes {
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        struct Bytes;
        impl<'de> serde::de::Visitor<'de> for Bytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Vec<u8>, A::Error> {
                let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
                while let Some(byte) = seq.next_element()? {
                    bytes.push(byte);
                }
                Ok(bytes)
            }
        }
        deserializer.deserialize_byte_buf(Bytes)
    }
}

fn corrupt(table: &'static str, reason: impl std::fmt::Display) -> DatabaseError {
    DatabaseError::Corrupt {
        table,
        reason: reason.to_string(),
    }
}

fn decode<T: DeserializeOwned>(table: &'static str, bytes: &[u8]) -> Result<T, DatabaseError> {
    carrier_friend::dht::message::decode_exact(bytes).map_err(|e| corrupt(table, e))
}

fn encode<T: Serialize>(table: &'static str, row: &T) -> Result<Vec<u8>, DatabaseError> {
    postcard::to_allocvec(row).map_err(|e| corrupt(table, e))
}

fn peer_id_key(peer: &CarrierId, id: &MessageId) -> [u8; 48] {
    let mut key = [0u8; 48];
    key[..32].copy_from_slice(peer.as_bytes());
    key[32..].copy_from_slice(&id.0);
    key
}

fn window_key(peer: &CarrierId, epoch: u64) -> [u8; 40] {
    let mut key = [0u8; 40];
    key[..32].copy_from_slice(peer.as_bytes());
    key[32..].copy_from_slice(&epoch.to_be_bytes());
    key
}

fn held_key(peer: &CarrierId, epoch: u64, after: u64, id: &MessageId) -> [u8; 64] {
    let mut key = [0u8; 64];
    key[..32].copy_from_slice(peer.as_bytes());
    key[32..40].copy_from_slice(&epoch.to_be_bytes());
    key[40..48].copy_from_slice(&after.to_be_bytes());
    key[48..].copy_from_slice(&id.0);
    key
}

fn random_epoch() -> u64 {
    // Never 0, so an epoch is never mistaken for "none".
    rand_core::RngCore::next_u64(&mut rand_core::OsRng).max(1)
}

/// Creates the tables on first start.
pub(crate) async fn ensure_schema(store: &Store) -> Result<(), DatabaseError> {
    store
        .ensure_schema(SCHEMA_LAYER, SCHEMA_VERSION, |txn, _from| {
            txn.open_table(PEERS)?;
            txn.open_table(OUTBOX)?;
            txn.open_table(BODIES)?;
            txn.open_table(WINDOWS)?;
            txn.open_table(INBOX)?;
            txn.open_table(HELD)?;
            txn.open_table(SEEN_LARGE)?;
            txn.open_table(META)?;
            Ok(())
        })
        .await
}

/// A message to commit to the outbox.
pub(crate) struct Outgoing<'a> {
    pub(crate) peer: CarrierId,
    pub(crate) id: MessageId,
    pub(crate) body: &'a [u8],
    pub(crate) large: bool,
    pub(crate) sent_at_ms: u64,
    pub(crate) offline: bool,
    pub(crate) expires_at_ms: u64,
    /// When the friendship was made.
    pub(crate) since: u64,
}

/// Commits `message` and returns its row (with its epoch and sequence).
pub(crate) fn commit_send(
    txn: &WriteTransaction,
    message: &Outgoing<'_>,
) -> Result<OutboxRow, DatabaseError> {
    let peer = message.peer;
    let mut peers = txn.open_table(PEERS)?;
    let stored = match peers.get(peer.as_bytes())? {
        Some(row) => Some(decode::<PeerRow>("msg/peers", row.value())?),
        None => None,
    };
    let mut row = match stored {
        Some(row) if row.since == message.since => row,
        _ => PeerRow {
            epoch: random_epoch(),
            next_seq: 1,
            since: message.since,
            deposited_through: 0,
            deposited_at_ms: 0,
        },
    };
    let (seq, after) = if message.large {
        (None, row.next_seq - 1)
    } else {
        let seq = row.next_seq;
        row.next_seq += 1;
        (Some(seq), 0)
    };
    peers.insert(peer.as_bytes(), encode("msg/peers", &row)?.as_slice())?;
    let out = OutboxRow {
        epoch: row.epoch,
        seq,
        after,
        sent_at_ms: message.sent_at_ms,
        offline: message.offline,
        expires_at_ms: message.expires_at_ms,
        skip: false,
        len: message.body.len(),
    };
    txn.open_table(OUTBOX)?.insert(
        &peer_id_key(&peer, &message.id),
        encode("msg/outbox", &out)?.as_slice(),
    )?;
    txn.open_table(BODIES)?
        .insert(&message.id.0, message.body)?;
    Ok(out)
}

/// Deletes delivered (or failed) messages of `peer` and their bodies.
pub(crate) fn settle(
    txn: &WriteTransaction,
    peer: &CarrierId,
    ids: &[MessageId],
) -> Result<(), DatabaseError> {
    let mut outbox = txn.open_table(OUTBOX)?;
    let mut bodies = txn.open_table(BODIES)?;
    for id in ids {
        outbox.remove(&peer_id_key(peer, id))?;
        bodies.remove(&id.0)?;
    }
    Ok(())
}

/// Turns expired small messages of `peer` into skips: the body goes, the row stays.
pub(crate) fn mark_skipped(
    txn: &WriteTransaction,
    peer: &CarrierId,
    ids: &[MessageId],
) -> Result<(), DatabaseError> {
    let mut outbox = txn.open_table(OUTBOX)?;
    let mut bodies = txn.open_table(BODIES)?;
    for id in ids {
        let key = peer_id_key(peer, id);
        let row = match outbox.get(&key)? {
            Some(row) => Some(decode::<OutboxRow>("msg/outbox", row.value())?),
            None => None,
        };
        if let Some(mut row) = row {
            row.skip = true;
            outbox.insert(&key, encode("msg/outbox", &row)?.as_slice())?;
        }
        bodies.remove(&id.0)?;
    }
    Ok(())
}

/// Forgets our side of `peer` (a removed friend): its sequence and epoch (a friendship made
/// again starts a new one) and the outbox rows `ids`. The windows of what it sent stay: a
/// friend that did not see the removal may go on in its epoch, and a window that restarted
/// at 1 would wait for it forever.
pub(crate) fn forget_peer(
    txn: &WriteTransaction,
    peer: &CarrierId,
    ids: &[MessageId],
) -> Result<(), DatabaseError> {
    settle(txn, peer, ids)?;
    txn.open_table(PEERS)?.remove(peer.as_bytes())?;
    Ok(())
}

/// Every outbox row, with its friend and message ID.
pub(crate) fn load_outbox(
    store: &Store,
) -> Result<Vec<(CarrierId, MessageId, OutboxRow)>, DatabaseError> {
    store.read(|txn| {
        let table = txn.open_table(OUTBOX)?;
        let mut rows = Vec::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            let key = key.value();
            let peer = key[..32]
                .try_into()
                .ok()
                .and_then(|b: [u8; 32]| CarrierId::from_bytes(&b).ok())
                .ok_or_else(|| corrupt("msg/outbox", "a key that is no Carrier ID"))?;
            let mut id = [0u8; 16];
            id.copy_from_slice(&key[32..]);
            rows.push((peer, MessageId(id), decode("msg/outbox", value.value())?));
        }
        Ok(rows)
    })
}

/// Records that `peer`'s messages of `epoch` through `through` were deposited at `at_ms`.
pub(crate) fn record_deposit(
    txn: &WriteTransaction,
    peer: &CarrierId,
    epoch: u64,
    through: u64,
    at_ms: u64,
) -> Result<(), DatabaseError> {
    let mut peers = txn.open_table(PEERS)?;
    let stored = match peers.get(peer.as_bytes())? {
        Some(row) => Some(decode::<PeerRow>("msg/peers", row.value())?),
        None => None,
    };
    if let Some(mut row) = stored.filter(|r| r.epoch == epoch) {
        row.deposited_through = row.deposited_through.max(through);
        row.deposited_at_ms = at_ms;
        peers.insert(peer.as_bytes(), encode("msg/peers", &row)?.as_slice())?;
    }
    Ok(())
}

/// Every friend's row: our epoch and sequence to each.
pub(crate) fn peer_rows(store: &Store) -> Result<Vec<(CarrierId, PeerRow)>, DatabaseError> {
    store.read(|txn| {
        let table = txn.open_table(PEERS)?;
        let mut rows = Vec::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            let peer = CarrierId::from_bytes(key.value())
                .map_err(|_| corrupt("msg/peers", "a key that is no Carrier ID"))?;
            rows.push((peer, decode("msg/peers", value.value())?));
        }
        Ok(rows)
    })
}

/// Our sequence to `peer`, if we hold one.
pub(crate) fn peer_row(store: &Store, peer: &CarrierId) -> Result<Option<PeerRow>, DatabaseError> {
    store.read(|txn| match txn.open_table(PEERS)?.get(peer.as_bytes())? {
        Some(row) => Ok(Some(decode("msg/peers", row.value())?)),
        None => Ok(None),
    })
}

/// The bodies of `ids` (a body that is gone is `None`).
pub(crate) fn bodies(
    store: &Store,
    ids: &[MessageId],
) -> Result<Vec<Option<Vec<u8>>>, DatabaseError> {
    store.read(|txn| {
        let table = txn.open_table(BODIES)?;
        ids.iter()
            .map(|id| Ok(table.get(&id.0)?.map(|b| b.value().to_vec())))
            .collect()
    })
}

/// What a received batch or large message did.
#[derive(Debug, Default)]
pub(crate) struct Received {
    /// Messages committed to the inbox now, in the order to raise them.
    pub(crate) messages: Vec<Message>,
    /// The receipt to send back.
    pub(crate) receipt: Option<Receipt>,
    /// Receipts of other epochs (or with large IDs) received in the same transaction.
    pub(crate) extra: Vec<Receipt>,
    /// Everything in the batch is below the window now: nothing of it is left to take.
    pub(crate) whole: bool,
}

impl Received {
    /// `self` and then `later`, received in one transaction: the later receipt of an epoch
    /// covers the earlier (receipts of a window are cumulative).
    pub(crate) fn then(mut self, later: Received) -> Received {
        self.messages.extend(later.messages);
        self.whole = self.whole && later.whole;
        self.receipt = match (self.receipt, later.receipt) {
            (Some(a), Some(b))
                if a.epoch == b.epoch && a.large.is_empty() && b.large.is_empty() =>
            {
                Some(b)
            }
            (Some(a), Some(b)) => {
                self.extra.push(a);
                Some(b)
            }
            (a, b) => b.or(a),
        };
        self.extra.extend(later.extra);
        self
    }

    /// Every receipt to send.
    pub(crate) fn receipts(self) -> impl Iterator<Item = Receipt> {
        self.extra.into_iter().chain(self.receipt)
    }
}

fn next_order(txn: &WriteTransaction) -> Result<u64, DatabaseError> {
    let mut meta = txn.open_table(META)?;
    let order = meta.get(INBOX_ORDER)?.map_or(0, |v| v.value());
    meta.insert(INBOX_ORDER, order + 1)?;
    Ok(order)
}

fn to_inbox(txn: &WriteTransaction, id: &MessageId, row: &InboxRow) -> Result<(), DatabaseError> {
    txn.open_table(INBOX)?
        .insert(&id.0, encode("msg/inbox", row)?.as_slice())?;
    Ok(())
}

/// Takes what is new in `batch` from `peer` into the inbox and moves the window, in one
/// transaction; releases the large messages the window has now passed.
pub(crate) fn receive_batch(
    txn: &WriteTransaction,
    peer: &CarrierId,
    batch: &Batch,
    offline: bool,
) -> Result<Received, DatabaseError> {
    let key = window_key(peer, batch.epoch);
    let next = txn.open_table(WINDOWS)?.get(&key)?.map_or(1, |v| v.value());
    let step = window::advance(next, &batch.items);
    let mut received = Received::default();
    for &index in &step.taken {
        let Some(Item::Message(small)) = batch.items.get(index) else {
            continue;
        };
        let row = InboxRow {
            order: next_order(txn)?,
            from: *peer,
            sent_at_ms: small.sent_at_ms,
            offline: offline || small.offline,
            body: small.body.to_vec(),
        };
        to_inbox(txn, &small.id, &row)?;
        received.messages.push(message(small.id, row));
    }
    if step.next != next {
        txn.open_table(WINDOWS)?.insert(&key, step.next)?;
        received
            .messages
            .extend(release_held(txn, peer, batch.epoch, step.next)?);
    }
    received.whole = batch
        .items
        .last()
        .is_none_or(|item| item.range().last < step.next);
    received.receipt = step.delivered().map(|range| Receipt {
        epoch: batch.epoch,
        delivered: carrier_friend::dht::bounded::BoundedVec::truncating(vec![range]),
        large: carrier_friend::dht::bounded::BoundedVec::empty(),
    });
    Ok(received)
}

fn message(id: MessageId, row: InboxRow) -> Message {
    Message {
        from: row.from,
        id,
        bytes: row.body,
        sent_at: row.sent_at_ms,
        offline: row.offline,
    }
}

/// Moves the held large messages that follow a sequence below `next` into the inbox.
fn release_held(
    txn: &WriteTransaction,
    peer: &CarrierId,
    epoch: u64,
    next: u64,
) -> Result<Vec<Message>, DatabaseError> {
    let low = held_key(peer, epoch, 0, &MessageId([0; 16]));
    let high = held_key(peer, epoch, next.saturating_sub(1), &MessageId([0xFF; 16]));
    let mut released = Vec::new();
    {
        let table = txn.open_table(HELD)?;
        for entry in table.range::<&[u8; 64]>(&low..=&high)? {
            let (key, value) = entry?;
            let mut id = [0u8; 16];
            id.copy_from_slice(&key.value()[48..]);
            released.push((
                *key.value(),
                MessageId(id),
                decode::<HeldRow>("msg/held", value.value())?,
            ));
        }
    }
    let mut messages = Vec::new();
    for (key, id, held) in released {
        txn.open_table(HELD)?.remove(&key)?;
        let row = InboxRow {
            order: next_order(txn)?,
            from: *peer,
            sent_at_ms: held.sent_at_ms,
            offline: held.offline,
            body: held.body,
        };
        to_inbox(txn, &id, &row)?;
        messages.push(message(id, row));
    }
    Ok(messages)
}

/// Takes a large message from `peer` (once): into the inbox if the window passed the
/// sequence it follows, held until then otherwise. Acknowledged either way.
pub(crate) fn receive_large(
    txn: &WriteTransaction,
    peer: &CarrierId,
    large: &Large,
    offline: bool,
) -> Result<Received, DatabaseError> {
    let mut received = Received {
        messages: Vec::new(),
        receipt: Some(Receipt {
            epoch: large.epoch,
            delivered: carrier_friend::dht::bounded::BoundedVec::empty(),
            large: carrier_friend::dht::bounded::BoundedVec::truncating(vec![large.id]),
        }),
        whole: true,
        extra: Vec::new(),
    };
    let seen = peer_id_key(peer, &large.id);
    if txn.open_table(SEEN_LARGE)?.get(&seen)?.is_some() {
        return Ok(received);
    }
    txn.open_table(SEEN_LARGE)?
        .insert(&seen, large.sent_at_ms)?;
    let next = txn
        .open_table(WINDOWS)?
        .get(&window_key(peer, large.epoch))?
        .map_or(1, |v| v.value());
    if large.after < next {
        let row = InboxRow {
            order: next_order(txn)?,
            from: *peer,
            sent_at_ms: large.sent_at_ms,
            offline: offline || large.offline,
            body: large.body.to_vec(),
        };
        to_inbox(txn, &large.id, &row)?;
        received.messages.push(message(large.id, row));
    } else {
        let held = HeldRow {
            sent_at_ms: large.sent_at_ms,
            offline: offline || large.offline,
            body: large.body.to_vec(),
        };
        txn.open_table(HELD)?.insert(
            &held_key(peer, large.epoch, large.after, &large.id),
            encode("msg/held", &held)?.as_slice(),
        )?;
    }
    Ok(received)
}

/// The inbox, in the order its messages were committed.
pub(crate) fn inbox(store: &Store) -> Result<Vec<Message>, DatabaseError> {
    store.read(|txn| {
        let table = txn.open_table(INBOX)?;
        let mut rows: Vec<(MessageId, InboxRow)> = Vec::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            rows.push((MessageId(*key.value()), decode("msg/inbox", value.value())?));
        }
        rows.sort_by_key(|(_, row)| row.order);
        Ok(rows.into_iter().map(|(id, row)| message(id, row)).collect())
    })
}

/// Removes `id` from the inbox; whether it was there.
pub(crate) fn ack(txn: &WriteTransaction, id: &MessageId) -> Result<bool, DatabaseError> {
    Ok(txn.open_table(INBOX)?.remove(&id.0)?.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The inbox row as schema 1 wrote it before its body was a byte string.
    #[derive(Serialize, Deserialize)]
    struct OldInboxRow {
        order: u64,
        from: CarrierId,
        sent_at_ms: u64,
        offline: bool,
        body: Vec<u8>,
    }

    #[test]
    fn a_body_encodes_to_the_same_bytes_as_before_and_old_rows_read_back() {
        let from = carrier_friend::dht::id::Keypair::generate().id();
        let body: Vec<u8> = (0..1500u32).map(|i| (i % 251) as u8).collect();
        let old = OldInboxRow {
            order: 7,
            from,
            sent_at_ms: 1_700_000_000_000,
            offline: true,
            body: body.clone(),
        };
        let new = InboxRow {
            order: 7,
            from,
            sent_at_ms: 1_700_000_000_000,
            offline: true,
            body,
        };
        let old_bytes = encode("msg/inbox", &old).unwrap();
        assert_eq!(encode("msg/inbox", &new).unwrap(), old_bytes);
        assert_eq!(decode::<InboxRow>("msg/inbox", &old_bytes).unwrap(), new);
    }
}
