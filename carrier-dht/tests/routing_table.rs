//! Routing-table invariants hold under random operations, and `closest` agrees with a brute
//! force search for any target and count; near buckets hold more than K, farther ones K.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use carrier_dht::{Contact, Key, RoutingTable, K};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Insert { id: [u8; 4], subnet: u8, host: u8 },
    Fail { id: [u8; 4] },
    Remove { id: [u8; 4] },
}

fn key(short: [u8; 4]) -> Key {
    // Spread short IDs over the key space, with a shared prefix now and then so deep
    // buckets fill too.
    let mut out = [0u8; 32];
    out[..4].copy_from_slice(&short);
    if short[3] & 1 == 0 {
        out[0] = 0;
        out[1] &= 0x0f;
    }
    Key(out)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<[u8; 4]>(), 0u8..6, any::<u8>()).prop_map(|(id, subnet, host)| Op::Insert { id, subnet, host }),
        2 => any::<[u8; 4]>().prop_map(|id| Op::Fail { id }),
        1 => any::<[u8; 4]>().prop_map(|id| Op::Remove { id }),
    ]
}

proptest! {
    #[test]
    fn invariants_hold_under_random_operations(
        ops in proptest::collection::vec(op(), 1..400),
        limit in prop_oneof![Just(None), (1usize..3).prop_map(Some)],
        near in prop_oneof![Just(K), Just(2 * K), Just(4 * K)],
        target in any::<[u8; 4]>(),
    ) {
        let own = Key([0; 32]);
        let mut table = RoutingTable::new(own, limit, 4, 2).with_near_capacity(near);
        let start = Instant::now();
        let mut inserted = Vec::new();
        for (step, op) in ops.into_iter().enumerate() {
            let now = start + Duration::from_millis(step as u64);
            match op {
                Op::Insert { id, subnet, host } => {
                    let addr = SocketAddr::from(([10, 0, subnet, host], 4000));
                    table.insert(Contact { id: key(id), addr }, now);
                    inserted.push(key(id));
                }
                Op::Fail { id } => {
                    let _ = table.record_failure(&key(id));
                }
                Op::Remove { id } => table.remove(&key(id)),
            }
            prop_assert_eq!(table.check_invariants(), Ok(()));
        }
        prop_assert!(!table.contains(&own));
        // closest() is the brute-force answer, for any target (our own key included) and
        // any count.
        for target in [key([0x12, 0x34, 0x56, 0x78]), key(target), own] {
            for n in [0, 1, 3, K, 3 * K] {
                let mut all: Vec<Key> = table.entries().map(|e| e.contact.id).collect();
                all.sort_by_key(|k| k.distance(&target));
                all.truncate(n);
                let got: Vec<Key> = table.closest(&target, n).into_iter().map(|c| c.id).collect();
                prop_assert_eq!(got, all);
            }
        }
    }
}

#[test]
fn repeated_timeouts_evict_and_promote_a_replacement() {
    let own = Key([0; 32]);
    let mut table = RoutingTable::new(own, None, 4, 2);
    let now = Instant::now();
    // Nine keys in bucket 0 (first bit set): eight fill it, the ninth waits.
    let contacts: Vec<Contact> = (0..9u8)
        .map(|i| {
            let mut id = [0u8; 32];
            id[0] = 0x80 | i;
            Contact {
                id: Key(id),
                addr: SocketAddr::from(([10, 0, i, 1], 4000)),
            }
        })
        .collect();
    for c in &contacts {
        table.insert(*c, now);
    }
    assert_eq!(table.len(), K);
    assert!(!table.contains(&contacts[8].id));
    assert!(!table.record_failure(&contacts[0].id));
    assert!(table.record_failure(&contacts[0].id));
    assert!(!table.contains(&contacts[0].id));
    assert!(table.contains(&contacts[8].id));
    assert_eq!(table.check_invariants(), Ok(()));
}

#[test]
fn a_subnet_gets_at_most_two_entries_per_bucket() {
    let own = Key([0; 32]);
    let mut table = RoutingTable::new(own, Some(2), 4, 2);
    let now = Instant::now();
    for i in 0..6u8 {
        let mut id = [0u8; 32];
        id[0] = 0x80 | i;
        table.insert(
            Contact {
                id: Key(id),
                addr: SocketAddr::from(([10, 0, 0, i], 4000)),
            },
            now,
        );
    }
    assert_eq!(table.len(), 2);
}

/// `n` contacts in bucket `bucket` of the table of key 0 (sharing `bucket` leading bits with
/// it), each on its own /24.
fn in_bucket(bucket: usize, n: usize, tag: u8) -> Vec<Contact> {
    (0..n)
        .map(|i| {
            let mut id = [0u8; 32];
            id[bucket / 8] = 0x80 >> (bucket % 8);
            id[30] = tag;
            id[31] = i as u8;
            Contact {
                id: Key(id),
                addr: SocketAddr::from(([10, tag, i as u8, 1], 4000)),
            }
        })
        .collect()
}

#[test]
fn near_buckets_hold_more_than_k_and_give_it_back_once_farther() {
    let own = Key([0; 32]);
    let mut table = RoutingTable::new(own, Some(2), 4, 2).with_near_capacity(4 * K);
    let now = Instant::now();
    let bucket_len = |table: &RoutingTable, b: usize| {
        table
            .entries()
            .filter(|e| table.bucket_index(&e.contact.id) == b)
            .count()
    };
    // The K closest entries are in bucket 12, so buckets from 12 - log2(2 × 32 / 8) = 9 on
    // are near: the subtree of bucket 10 holds about 4 × 8 servers, all kept.
    for c in in_bucket(12, K, 1) {
        table.insert(c, now);
    }
    for c in in_bucket(10, 20, 2) {
        table.insert(c, now);
    }
    for c in in_bucket(5, 20, 3) {
        table.insert(c, now);
    }
    assert_eq!(
        bucket_len(&table, 10),
        20,
        "a near bucket holds more than K"
    );
    assert_eq!(bucket_len(&table, 5), K, "a far bucket holds K");
    assert_eq!(table.bucket_capacity(10), 4 * K);
    assert_eq!(table.bucket_capacity(5), K);
    assert_eq!(table.check_invariants(), Ok(()));
    // Closer servers appear (the network is larger than it looked): bucket 10 is far now and
    // keeps its K most recently seen; the others wait in its replacement cache.
    for c in in_bucket(16, K, 4) {
        table.insert(c, now + Duration::from_secs(1));
    }
    assert_eq!(bucket_len(&table, 10), K);
    assert_eq!(table.bucket_capacity(10), K);
    assert_eq!(table.check_invariants(), Ok(()));
    // Without near buckets, every bucket holds K.
    let mut plain = RoutingTable::new(own, Some(2), 4, 2);
    for c in in_bucket(12, K, 1).into_iter().chain(in_bucket(10, 20, 2)) {
        plain.insert(c, now);
    }
    assert_eq!(bucket_len(&plain, 10), K);
}

#[test]
fn empty_buckets_shallower_than_the_kth_closest_are_the_ones_to_fill() {
    let own = Key([0; 32]);
    let mut table = RoutingTable::new(own, Some(2), 4, 2).with_near_capacity(4 * K);
    let now = Instant::now();
    // Fewer than K entries: the table may hold the whole network, nothing to fill.
    for c in in_bucket(4, K - 1, 1) {
        table.insert(c, now);
    }
    assert_eq!(table.empty_far_buckets(), Vec::<usize>::new());
    // The K-th closest entry is in bucket 4 now: buckets 0 to 3 should each hold servers,
    // and only bucket 1 does. Deeper empty buckets (5, 6, …) are not asked for: their
    // subtrees may well be empty.
    table.insert(in_bucket(4, K, 1)[K - 1], now);
    table.insert(in_bucket(1, 1, 2)[0], now);
    assert_eq!(table.empty_far_buckets(), vec![0, 2, 3]);
    for c in in_bucket(9, 2, 3) {
        table.insert(c, now);
    }
    // Two entries deeper: the K-th closest is still in bucket 4.
    assert_eq!(table.empty_far_buckets(), vec![0, 2, 3]);
    for b in [0, 2, 3] {
        table.insert(in_bucket(b, 1, 4 + b as u8)[0], now);
    }
    assert_eq!(table.empty_far_buckets(), Vec::<usize>::new());
}
