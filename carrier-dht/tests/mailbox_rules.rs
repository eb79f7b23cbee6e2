//! A storer's mailbox rules: quotas per mailbox and per source prefix, TTL, deletion only
//! against the item's secret, tombstones against resurrection, and pages within budget.

use std::net::IpAddr;
use std::time::Duration;

use carrier_dht::id::Keypair;
use carrier_dht::mailbox::{mailbox_key, seal_letter, DeleteSecret, MailboxKind, DAY_SECS};
use carrier_dht::{Entropy, MailboxItem, MailboxLimits, MailboxStorage, Refusal, Subnet};

const NOW_MS: u64 = 1_767_225_600_000;

fn subnet(a: u8) -> Subnet {
    Subnet::of(IpAddr::from([10, 0, a, 1]))
}

/// `n` one-chunk letters from `sender` to `recipient`, as items (two per letter).
fn items(sender: &Keypair, recipient: &Keypair, n: usize) -> (carrier_dht::Key, Vec<MailboxItem>) {
    let key = mailbox_key(
        &recipient.id(),
        MailboxKind::Messages,
        NOW_MS / 1000 / DAY_SECS,
    );
    let mut entropy = Entropy::from_seed([7; 32]);
    let expires = NOW_MS / 1000 + 3600;
    let mut out = Vec::new();
    for i in 0..n {
        let letter = format!("letter {i}");
        out.extend(
            seal_letter(
                sender,
                &recipient.id(),
                key,
                letter.as_bytes(),
                expires,
                &mut entropy,
            )
            .expect("seals"),
        );
    }
    (key, out)
}

#[test]
fn quotas_hold_per_mailbox_and_per_source_prefix() {
    let (alice, bob, carol) = (
        Keypair::from_seed(&[1; 32]),
        Keypair::from_seed(&[2; 32]),
        Keypair::from_seed(&[3; 32]),
    );
    let limits = MailboxLimits {
        max_items_per_mailbox: 6,
        max_items_per_subnet: 8,
        ..MailboxLimits::default()
    };
    let mut storage = MailboxStorage::new(limits);
    let (key, to_bob) = items(&alice, &bob, 5);
    for (i, item) in to_bob.iter().enumerate() {
        let outcome = storage.store(key, item.clone(), subnet(i as u8), NOW_MS);
        assert_eq!(outcome.is_ok(), i < 6, "item {i}: {outcome:?}");
    }
    assert_eq!(storage.items_in(&key), 6);
    // The same item again is a no-op success, even when the mailbox is full.
    assert_eq!(
        storage.store(key, to_bob[0].clone(), subnet(0), NOW_MS),
        Ok(())
    );
    // One prefix fills its own quota across mailboxes: 6 items in Carol's (her mailbox's
    // cap), then 2 in Dave's, and nothing more.
    let dave = Keypair::from_seed(&[4; 32]);
    let mut stored = 0;
    for recipient in [&carol, &dave] {
        let (key, letters) = items(&alice, recipient, 5);
        for item in letters {
            if storage.store(key, item, subnet(99), NOW_MS).is_ok() {
                stored += 1;
            }
        }
    }
    assert_eq!(stored, 8);
    assert_eq!(storage.used_by(&subnet(99)), 8);
}

#[test]
fn only_the_delete_secret_deletes_and_a_deleted_item_stays_deleted() {
    let (alice, bob, eve) = (
        Keypair::from_seed(&[1; 32]),
        Keypair::from_seed(&[2; 32]),
        Keypair::from_seed(&[3; 32]),
    );
    let mut storage = MailboxStorage::new(MailboxLimits::default());
    let (key, stored) = items(&alice, &bob, 1);
    let item = stored[0].clone();
    let id = item.id();
    storage
        .store(key, item.clone(), subnet(1), NOW_MS)
        .expect("stored");
    let wrong = DeleteSecret::derive(&eve, &alice.id(), &id).expect("valid");
    assert_eq!(
        storage.delete(&key, &id, &wrong, NOW_MS),
        Err(Refusal::Invalid)
    );
    assert!(storage.holds(&key, &id));
    let right = DeleteSecret::derive(&bob, &alice.id(), &id).expect("valid");
    assert_eq!(storage.delete(&key, &id, &right, NOW_MS), Ok(()));
    assert!(!storage.holds(&key, &id));
    // A retried delete succeeds; a replica handed back is refused.
    assert_eq!(storage.delete(&key, &id, &right, NOW_MS), Ok(()));
    assert_eq!(
        storage.store(key, item, subnet(2), NOW_MS),
        Err(Refusal::Deleted)
    );
    // An item never held is unknown, whatever the secret.
    let other = stored[1].id();
    assert_eq!(
        storage.delete(&key, &other, &right, NOW_MS),
        Err(Refusal::Unknown)
    );
}

#[test]
fn items_expire_and_their_ttl_is_capped() {
    let (alice, bob) = (Keypair::from_seed(&[1; 32]), Keypair::from_seed(&[2; 32]));
    let limits = MailboxLimits::default();
    let mut storage = MailboxStorage::new(limits);
    let (key, stored) = items(&alice, &bob, 1);
    let mut too_long = stored[0].clone();
    too_long.expires_unix_secs = NOW_MS / 1000 + limits.max_ttl.as_secs() + 1;
    assert_eq!(
        storage.store(key, too_long, subnet(1), NOW_MS),
        Err(Refusal::Expiry)
    );
    storage
        .store(key, stored[0].clone(), subnet(1), NOW_MS)
        .expect("stored");
    let later = NOW_MS + Duration::from_secs(3601).as_millis() as u64;
    assert!(
        storage.page(&key, None, later).0.is_empty(),
        "expired items are not served"
    );
    storage.expire(later);
    assert!(storage.is_empty());
    assert_eq!(storage.used_by(&subnet(1)), 0);
}
