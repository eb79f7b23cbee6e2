//! A durable outbox: items for other nodes that stay in the node's database until the other
//! side acknowledges them.
//!
//! Each [`OutboxEntry`] is one item for one peer: opaque bytes (the layer's own frame), a kind
//! byte the layer defines, a [`Route`] to the peer's mailbox, and its retry state. The layer
//! that owns the outbox tries to deliver due entries directly, deposits them in the peer's
//! mailbox when that fails (again whenever the last deposit is of an earlier day, so the
//! letter stays within the three days a recipient fetches, long before the mailbox TTL), and
//! removes an entry when the peer acknowledges it. Every change is a write in the node's
//! [`Store`], committed before the layer acts on it, so an entry survives a crash at any
//! moment; a receiver that takes items by ID once only turns the resulting "at least once"
//! into "exactly once".
//!
//! Each layer keeps its outbox in a table of its own ([`Outbox::new`] names it), and defines its
//! own kinds; [`Scheduler`] picks the due entries to attempt, one per peer at a time.

use std::time::Duration;

use carrier_dht::id::{CarrierId, Nospam};
use carrier_dht::mailbox::day_of;
use carrier_dht::store::{DatabaseError, Store};
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

mod schedule;

pub use schedule::{Scheduler, MAX_IN_FLIGHT};

/// The ID of an outbox item: 16 random bytes, unique per sender.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub struct OutboxId(pub [u8; 16]);

impl OutboxId {
    /// A fresh random ID.
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
        Self(bytes)
    }
}

/// Which of the peer's mailboxes an item goes to when the peer is offline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Route {
    /// The request mailbox of the peer's address with this nospam.
    Requests(Nospam),
    /// The peer's message mailbox.
    Messages,
}

/// One item waiting for its peer's acknowledgement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Whom the item is for.
    pub peer: CarrierId,
    /// The item's ID.
    pub id: OutboxId,
    /// What kind of item it is, as the owning layer defines kinds.
    pub kind: u8,
    /// Where it goes when the peer is offline.
    pub route: Route,
    /// The item's bytes, as the owning layer sends them.
    pub payload: Vec<u8>,
    /// When it was created (Unix ms).
    pub created_unix_ms: u64,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// When to try again (Unix ms).
    pub next_attempt_unix_ms: u64,
    /// When it was last deposited in the peer's mailbox (Unix ms), if ever.
    pub deposited_unix_ms: Option<u64>,
}

/// The largest payload an outbox entry holds: a mailbox letter's cap.
pub const MAX_OUTBOX_PAYLOAD: usize = carrier_dht::MAX_LETTER_BYTES;

/// How often an undelivered item is tried again, and when it is deposited again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The wait after the first failed attempt; it doubles with each further one.
    pub initial: Duration,
    /// The longest wait between attempts.
    pub max: Duration,
    /// A deposit older than this is made again, even on the same day.
    pub republish: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(10 * 60),
            republish: Duration::from_secs(12 * 60 * 60),
        }
    }
}

impl RetryPolicy {
    /// The wait before the next attempt, after `attempts` failed ones.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(30);
        self.initial
            .saturating_mul(1u32 << doublings)
            .min(self.max)
            .max(self.initial.min(self.max))
    }

    /// Whether `entry` must be (re)deposited in its peer's mailbox at `now_unix_ms`: never
    /// deposited, deposited on an earlier day (a recipient fetches yesterday's, today's and
    /// tomorrow's mailboxes), or longer ago than `republish`.
    pub fn needs_deposit(&self, entry: &OutboxEntry, now_unix_ms: u64) -> bool {
        match entry.deposited_unix_ms {
            None => true,
            Some(at) => {
                day_of(at / 1000) < day_of(now_unix_ms / 1000)
                    || now_unix_ms.saturating_sub(at) >= millis(self.republish)
            }
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// An entry's row: everything but its key (peer ‖ ID).
#[derive(Serialize, Deserialize)]
struct Row {
    version: u8,
    kind: u8,
    route: Route,
    payload: carrier_dht::bounded::BoundedBytes<MAX_OUTBOX_PAYLOAD>,
    created_unix_ms: u64,
    attempts: u32,
    next_attempt_unix_ms: u64,
    deposited_unix_ms: Option<u64>,
}

const ROW_VERSION: u8 = 1;

type Key = [u8; 48];

fn key(peer: &CarrierId, id: &OutboxId) -> Key {
    let mut key = [0u8; 48];
    key[..32].copy_from_slice(peer.as_bytes());
    key[32..].copy_from_slice(&id.0);
    key
}

/// A durable outbox in one table of the node's [`Store`].
#[derive(Clone, Copy, Debug)]
pub struct Outbox {
    name: &'static str,
}

impl Outbox {
    /// The outbox kept in table `name` (one table per owning layer).
    pub const fn new(name: &'static str) -> Self {
        Self { name }
    }

    fn table(&self) -> TableDefinition<'static, &'static Key, &'static [u8]> {
        TableDefinition::new(self.name)
    }

    fn corrupt(&self, reason: impl std::fmt::Display) -> DatabaseError {
        DatabaseError::Corrupt {
            table: self.name,
            reason: reason.to_string(),
        }
    }

    /// Creates the table if it is missing (for a schema migration).
    pub fn create(&self, txn: &WriteTransaction) -> Result<(), DatabaseError> {
        txn.open_table(self.table())?;
        Ok(())
    }

    /// Adds or replaces `entry`.
    pub fn put(&self, txn: &WriteTransaction, entry: &OutboxEntry) -> Result<(), DatabaseError> {
        let payload = carrier_dht::bounded::BoundedBytes::from_slice(&entry.payload)
            .map_err(|e| self.corrupt(e))?;
        let row = Row {
            version: ROW_VERSION,
            kind: entry.kind,
            route: entry.route,
            payload,
            created_unix_ms: entry.created_unix_ms,
            attempts: entry.attempts,
            next_attempt_unix_ms: entry.next_attempt_unix_ms,
            deposited_unix_ms: entry.deposited_unix_ms,
        };
        let bytes = postcard::to_allocvec(&row).map_err(|e| self.corrupt(e))?;
        txn.open_table(self.table())?
            .insert(&key(&entry.peer, &entry.id), bytes.as_slice())?;
        Ok(())
    }

    /// The entry for `peer` with `id`, if it is still waiting.
    pub fn get(
        &self,
        txn: &WriteTransaction,
        peer: &CarrierId,
        id: &OutboxId,
    ) -> Result<Option<OutboxEntry>, DatabaseError> {
        let table = txn.open_table(self.table())?;
        let row = table.get(&key(peer, id))?;
        row.map(|row| self.decode(&key(peer, id), row.value()))
            .transpose()
    }

    /// Removes the entry (the peer acknowledged it, or a newer item replaces it); returns
    /// whether it was there.
    pub fn remove(
        &self,
        txn: &WriteTransaction,
        peer: &CarrierId,
        id: &OutboxId,
    ) -> Result<bool, DatabaseError> {
        Ok(txn
            .open_table(self.table())?
            .remove(&key(peer, id))?
            .is_some())
    }

    /// Removes every entry for `peer` whose kind `drop` selects; returns how many.
    pub fn remove_kinds(
        &self,
        txn: &WriteTransaction,
        peer: &CarrierId,
        drop: impl Fn(u8) -> bool,
    ) -> Result<usize, DatabaseError> {
        let mut table = txn.open_table(self.table())?;
        let (low, high) = (
            key(peer, &OutboxId([0; 16])),
            key(peer, &OutboxId([0xff; 16])),
        );
        let mut doomed = Vec::new();
        for row in table.range::<&Key>(&low..=&high)? {
            let (k, v) = row?;
            let entry = self.decode(k.value(), v.value())?;
            if drop(entry.kind) {
                doomed.push(*k.value());
            }
        }
        for k in &doomed {
            table.remove(k)?;
        }
        Ok(doomed.len())
    }

    /// Makes every entry for `peer` due at `now_unix_ms` (its link just came up); returns
    /// how many.
    pub fn make_due(
        &self,
        txn: &WriteTransaction,
        peer: &CarrierId,
        now_unix_ms: u64,
    ) -> Result<usize, DatabaseError> {
        let (low, high) = (
            key(peer, &OutboxId([0; 16])),
            key(peer, &OutboxId([0xff; 16])),
        );
        let mut due = Vec::new();
        {
            let table = txn.open_table(self.table())?;
            for row in table.range::<&Key>(&low..=&high)? {
                let (k, v) = row?;
                let entry = self.decode(k.value(), v.value())?;
                if entry.next_attempt_unix_ms > now_unix_ms {
                    due.push(entry);
                }
            }
        }
        for entry in &mut due {
            entry.next_attempt_unix_ms = now_unix_ms;
            self.put(txn, entry)?;
        }
        Ok(due.len())
    }

    /// Records a failed attempt at `now_unix_ms` (and a deposit, if one was made) and
    /// schedules the next one; does nothing if the entry is gone meanwhile.
    pub fn record_attempt(
        &self,
        txn: &WriteTransaction,
        peer: &CarrierId,
        id: &OutboxId,
        now_unix_ms: u64,
        deposited: bool,
        policy: &RetryPolicy,
    ) -> Result<(), DatabaseError> {
        let Some(mut entry) = self.get(txn, peer, id)? else {
            return Ok(());
        };
        entry.attempts = entry.attempts.saturating_add(1);
        entry.next_attempt_unix_ms =
            now_unix_ms.saturating_add(millis(policy.backoff(entry.attempts)));
        if deposited {
            entry.deposited_unix_ms = Some(now_unix_ms);
        }
        self.put(txn, &entry)
    }

    /// Every waiting entry, in key order (by peer, then ID).
    pub fn load(&self, store: &Store) -> Result<Vec<OutboxEntry>, DatabaseError> {
        store.read(|txn| {
            let table = txn.open_table(self.table())?;
            let mut entries = Vec::new();
            for row in table.iter()? {
                let (k, v) = row?;
                entries.push(self.decode(k.value(), v.value())?);
            }
            Ok(entries)
        })
    }

    fn decode(&self, key: &Key, bytes: &[u8]) -> Result<OutboxEntry, DatabaseError> {
        let (row, rest) = postcard::take_from_bytes::<Row>(bytes).map_err(|e| self.corrupt(e))?;
        if !rest.is_empty() || row.version != ROW_VERSION {
            return Err(self.corrupt("trailing bytes or unknown row version"));
        }
        let mut peer = [0u8; 32];
        peer.copy_from_slice(&key[..32]);
        let peer = CarrierId::from_bytes(&peer).map_err(|e| self.corrupt(e))?;
        let mut id = [0u8; 16];
        id.copy_from_slice(&key[32..]);
        Ok(OutboxEntry {
            peer,
            id: OutboxId(id),
            kind: row.kind,
            route: row.route,
            payload: row.payload.into_vec(),
            created_unix_ms: row.created_unix_ms,
            attempts: row.attempts,
            next_attempt_unix_ms: row.next_attempt_unix_ms,
            deposited_unix_ms: row.deposited_unix_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use carrier_dht::id::Keypair;
    use proptest::prelude::*;

    const OUTBOX: Outbox = Outbox::new("test/outbox");

    fn entry(peer: CarrierId, kind: u8) -> OutboxEntry {
        OutboxEntry {
            peer,
            id: OutboxId::random(),
            kind,
            route: Route::Messages,
            payload: vec![kind; 10],
            created_unix_ms: 1,
            attempts: 0,
            next_attempt_unix_ms: 0,
            deposited_unix_ms: None,
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1000),
            republish: Duration::from_secs(60),
        };
        let waits: Vec<_> = (1..=6).map(|a| policy.backoff(a).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(policy.backoff(u32::MAX).as_millis(), 1000);
    }

    #[test]
    fn deposits_are_renewed_each_day_and_after_the_republish_interval() {
        let policy = RetryPolicy::default();
        let mut e = entry(Keypair::generate().id(), 1);
        let day_ms = 86_400_000;
        let noon = 20_000 * day_ms + day_ms / 2;
        assert!(policy.needs_deposit(&e, noon));
        e.deposited_unix_ms = Some(noon);
        assert!(!policy.needs_deposit(&e, noon + 1000));
        assert!(policy.needs_deposit(&e, noon + day_ms / 2), "the next day");
        e.deposited_unix_ms = Some(noon - day_ms / 2);
        assert!(policy.needs_deposit(&e, noon), "twelve hours later");
    }

    #[tokio::test]
    async fn entries_survive_reopening_and_go_when_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (alice, bob) = (Keypair::generate().id(), Keypair::generate().id());
        let (a1, a2, b1) = (entry(alice, 1), entry(alice, 2), entry(bob, 1));
        {
            let store = Store::open(dir.path()).unwrap();
            let entries = vec![a1.clone(), a2.clone(), b1.clone()];
            store
                .write(move |txn| {
                    OUTBOX.create(txn)?;
                    for e in &entries {
                        OUTBOX.put(txn, e)?;
                    }
                    Ok(())
                })
                .await
                .unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let mut loaded = OUTBOX.load(&store).unwrap();
        loaded.sort_by_key(|e| (e.peer.to_bytes(), e.id));
        let mut expected = vec![a1.clone(), a2.clone(), b1.clone()];
        expected.sort_by_key(|e| (e.peer.to_bytes(), e.id));
        assert_eq!(loaded, expected);

        let policy = RetryPolicy::default();
        let (gone, dropped) = store
            .write(move |txn| {
                OUTBOX.record_attempt(txn, &alice, &a1.id, 5000, true, &policy)?;
                let dropped = OUTBOX.remove_kinds(txn, &alice, |kind| kind == 2)?;
                let gone = OUTBOX.remove(txn, &bob, &b1.id)?;
                Ok((gone, dropped))
            })
            .await
            .unwrap();
        assert!(gone);
        assert_eq!(dropped, 1);
        let left = OUTBOX.load(&store).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].attempts, 1);
        assert_eq!(left[0].deposited_unix_ms, Some(5000));
        assert_eq!(left[0].next_attempt_unix_ms, 5000 + 2000);
    }

    proptest! {
        #[test]
        fn arbitrary_rows_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let key = key(&Keypair::from_seed(&[1; 32]).id(), &OutboxId([2; 16]));
            let _ = OUTBOX.decode(&key, &bytes);
        }
    }
}
