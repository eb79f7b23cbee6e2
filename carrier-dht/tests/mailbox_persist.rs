//! A storer's mailbox changes, taken from the rules as writes and committed to its database,
//! are restored on restart;
//! deleted and expired items are not, and a deleted item stays refused after a restart until
//! it would have expired.

use std::net::IpAddr;

use carrier_dht::id::Keypair;
use carrier_dht::mailbox::{mailbox_key, seal_letter, DeleteSecret, MailboxKind};
use carrier_dht::mailbox_store::MailboxStorage;
use carrier_dht::message::Refusal;
use carrier_dht::persist::{commit_writes, ensure_schema, load_mailboxes, load_tombstones};
use carrier_dht::store::Store;
use carrier_dht::{Entropy, MailboxLimits, StorageWrite, Subnet};

/// Commits what `storage` changed, as the driver does.
fn commit(store: &Store, storage: &mut MailboxStorage) {
    let writes = storage.take_writes();
    commit_writes(
        store,
        writes.into_iter().map(StorageWrite::Mailbox).collect(),
    );
}

const NOW_MS: u64 = 1_767_225_600_000;

#[tokio::test]
async fn mailbox_items_survive_a_storer_restart_until_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (alice, bob) = (Keypair::from_seed(&[1; 32]), Keypair::from_seed(&[2; 32]));
    let key = mailbox_key(&bob.id(), MailboxKind::Messages, 0);
    let items = seal_letter(
        &alice,
        &bob.id(),
        key,
        b"while you were out",
        NOW_MS / 1000 + 3600,
        &mut Entropy::from_seed([3; 32]),
    )
    .expect("seals");
    let source = Subnet::of(IpAddr::from([10, 0, 0, 1]));
    {
        let store = Store::open(dir.path()).expect("open");
        ensure_schema(&store).await.expect("schema");
        let mut storage = MailboxStorage::journaled(MailboxLimits::default(), Vec::new(), NOW_MS);
        for item in &items {
            storage
                .store(key, item.clone(), source, NOW_MS)
                .expect("stored");
        }
        commit(&store, &mut storage);
        // Detached writes commit in order: a later awaited write means they are on disk.
        store.write(|_| Ok(())).await.expect("barrier");
    }

    let store = Store::open(dir.path()).expect("reopen");
    ensure_schema(&store).await.expect("schema");
    let restored = load_mailboxes(&store, NOW_MS).expect("load");
    assert_eq!(restored.len(), items.len());
    let mut storage = MailboxStorage::journaled(MailboxLimits::default(), restored, NOW_MS);
    assert!(items.iter().all(|i| storage.holds(&key, &i.id())));
    assert_eq!(storage.used_by(&source), items.len());

    let id = items[0].id();
    let secret = DeleteSecret::derive(&bob, &alice.id(), &id).expect("valid");
    storage.delete(&key, &id, &secret, NOW_MS).expect("deleted");
    commit(&store, &mut storage);
    store.write(|_| Ok(())).await.expect("barrier");
    assert_eq!(
        load_mailboxes(&store, NOW_MS).expect("load").len(),
        items.len() - 1
    );
    // Restarted, the storer still refuses a replay of the deleted item, not the others.
    drop(storage);
    let tombstones = load_tombstones(&store, NOW_MS).expect("load");
    assert_eq!(tombstones.len(), 1);
    let mut storage = MailboxStorage::journaled(
        MailboxLimits::default(),
        load_mailboxes(&store, NOW_MS).expect("load"),
        NOW_MS,
    )
    .with_tombstones(tombstones, NOW_MS);
    assert!(storage.is_tombstoned(&id));
    assert_eq!(
        storage.store(key, items[0].clone(), source, NOW_MS),
        Err(Refusal::Deleted)
    );
    assert!(!storage.holds(&key, &id));
    assert_eq!(storage.store(key, items[1].clone(), source, NOW_MS), Ok(()));
    // Once the item would have expired, its tombstone goes too, in memory and on disk.
    storage.expire(NOW_MS + 3_600_001);
    assert!(!storage.is_tombstoned(&id));
    commit(&store, &mut storage);
    store.write(|_| Ok(())).await.expect("barrier");
    assert!(load_tombstones(&store, NOW_MS).expect("load").is_empty());

    // Expired by the next start: nothing is restored.
    assert!(load_mailboxes(&store, NOW_MS + 3_600_001)
        .expect("load")
        .is_empty());
}
