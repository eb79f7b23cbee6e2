//! A stored mutable value or peer record is never replaced by an older sequence number or by
//! another owner; compare-and-swap holds; quotas per address prefix hold.

use std::net::IpAddr;

use carrier_dht::id::Keypair;
use carrier_dht::{
    ImmutableValue, Item, MutableValue, PeerRecord, Refusal, Storage, StorageLimits, Subnet, Value,
};
use proptest::prelude::*;

const NOW: u64 = 1_767_225_600_000;
const TTL: u64 = 3_600_000;

fn subnet() -> Subnet {
    Subnet::of("10.0.0.1".parse::<IpAddr>().expect("valid in test"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn mutable_value_never_goes_back_or_changes_owner(
        attempts in proptest::collection::vec((0u64..20, any::<bool>(), prop::option::of(0u64..20)), 1..30),
    ) {
        let owner = Keypair::from_seed(&[1; 32]);
        let intruder = Keypair::from_seed(&[2; 32]);
        let mut storage = Storage::in_memory(StorageLimits::default());
        let key = MutableValue::sign(&owner, b"salt", 0, b"").expect("valid in test").key();
        let mut best: Option<u64> = None;
        for (seq, by_intruder, cas) in attempts {
            let signer = if by_intruder { &intruder } else { &owner };
            let value = MutableValue::sign(signer, b"salt", seq, &seq.to_le_bytes()).expect("valid in test");
            // An intruder's value lands under another key; forge one under the owner's key.
            let value = if by_intruder {
                MutableValue { owner: owner.id(), ..value }
            } else {
                value
            };
            let result = storage.store_value(Value::Mutable(value), cas, subnet(), NOW, TTL);
            if let Some(Item::Value(Value::Mutable(stored))) = storage.get(&key, NOW) {
                prop_assert_eq!(stored.owner, owner.id());
                prop_assert!(stored.verify().is_ok());
                prop_assert!(best.is_none_or(|b| stored.seq >= b));
                if result.is_ok() {
                    best = Some(stored.seq);
                }
            }
            if by_intruder {
                prop_assert_eq!(result, Err(Refusal::Invalid));
            }
        }
    }
}

#[test]
fn compare_and_swap_and_stale_sequences_are_refused() {
    let owner = Keypair::from_seed(&[1; 32]);
    let mut storage = Storage::in_memory(StorageLimits::default());
    let v = |seq| {
        Value::Mutable(MutableValue::sign(&owner, b"s", seq, &[seq as u8]).expect("valid in test"))
    };
    assert_eq!(storage.store_value(v(5), None, subnet(), NOW, TTL), Ok(()));
    assert_eq!(
        storage.store_value(v(4), None, subnet(), NOW, TTL),
        Err(Refusal::StaleSequence)
    );
    assert_eq!(
        storage.store_value(v(6), Some(4), subnet(), NOW, TTL),
        Err(Refusal::CasMismatch)
    );
    assert_eq!(
        storage.store_value(v(6), Some(5), subnet(), NOW, TTL),
        Ok(())
    );
    assert_eq!(
        storage.store_value(v(6), None, subnet(), NOW, TTL),
        Ok(()),
        "identical republish"
    );
}

#[test]
fn peer_records_need_a_sane_expiry_and_a_growing_sequence() {
    let node = Keypair::from_seed(&[3; 32]);
    let mut storage = Storage::in_memory(StorageLimits::default());
    let secs = NOW / 1000;
    let rec = |seq, expires| {
        PeerRecord::sign(&node, seq, expires, vec![], vec![]).expect("valid in test")
    };
    assert_eq!(
        storage.store_peer(rec(1, secs - 1), subnet(), NOW, TTL),
        Err(Refusal::Expiry)
    );
    assert_eq!(
        storage.store_peer(rec(1, secs + 10_000), subnet(), NOW, TTL),
        Err(Refusal::Expiry)
    );
    assert_eq!(
        storage.store_peer(rec(2, secs + 60), subnet(), NOW, TTL),
        Ok(())
    );
    assert_eq!(
        storage.store_peer(rec(1, secs + 60), subnet(), NOW, TTL),
        Err(Refusal::StaleSequence)
    );
    assert_eq!(
        storage.store_peer(rec(3, secs + 60), subnet(), NOW, TTL),
        Ok(())
    );
    assert!(
        storage.get(&rec(3, 0).key(), NOW + 61_000).is_none(),
        "expired"
    );
}

#[test]
fn quota_per_address_prefix_holds() {
    let limits = StorageLimits {
        max_items: 100,
        max_items_per_subnet: 3,
    };
    let mut storage = Storage::in_memory(limits);
    let store = |s: &mut Storage, i: u32, ip: &str| {
        let value = Value::Immutable(ImmutableValue::new(&i.to_le_bytes()).expect("valid in test"));
        s.store_value(
            value,
            None,
            Subnet::of(ip.parse().expect("valid in test")),
            NOW,
            TTL,
        )
    };
    for i in 0..3 {
        assert_eq!(store(&mut storage, i, "10.0.0.1"), Ok(()));
    }
    assert_eq!(
        store(&mut storage, 3, "10.0.0.200"),
        Err(Refusal::Quota),
        "same /24"
    );
    assert_eq!(store(&mut storage, 3, "10.0.1.1"), Ok(()));
    storage.expire(NOW + TTL);
    assert!(storage.is_empty());
    assert_eq!(
        store(&mut storage, 4, "10.0.0.1"),
        Ok(()),
        "quota freed by expiry"
    );
}
