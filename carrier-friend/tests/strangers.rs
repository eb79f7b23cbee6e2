//! Strangers on a node's socket: rate-limited per source before the handshake, and never able
//! to starve the DHT that shares the socket.
#![allow(clippy::unwrap_used)] // Helpers outside #[test] functions unwrap too.

mod common;

use std::time::Duration;

use carrier_friend::{LinkConfig, StrangerLimit};
use common::{dht_client, dht_ping, nobody, node, node_with, take_everything};

const PATIENCE: Duration = Duration::from_secs(30);

/// How many strangers knock at once.
const STRANGERS: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_200_strangers_handshakes_in_a_burst_the_node_still_answers_dht() {
    // Every stranger here comes from 127.0.0.1, so the limit is raised for the whole burst to
    // reach the handshake: this test is about the load, the next one about the limit.
    let mut config = LinkConfig::new(nobody());
    config.stranger_limit = StrangerLimit {
        burst: STRANGERS as u32,
        per_second: 1.0,
    };
    let target = node_with(config).await;
    take_everything(&target);
    let mut strangers = Vec::new();
    for _ in 0..STRANGERS {
        strangers.push(node(&[]).await);
    }

    let mut knocking = tokio::task::JoinSet::new();
    for stranger in &strangers {
        let links = stranger.links.clone();
        let (id, path) = (target.id(), target.path());
        knocking.spawn(async move { links.send_request(id, path, b"knock knock").await });
    }
    // The real DHT is pinged all through the burst, and must answer each time. (Every 10 ms:
    // the pinger's IP shares the DHT's per-IP limit of 200 packets a second.)
    let pinger = dht_client().await;
    let mut pings = 0;
    while !knocking.is_empty() {
        assert!(
            dht_ping(&pinger, &target, Duration::from_secs(2)).await,
            "DHT ping {pings} unanswered during the burst: {:?}",
            target.socket.stats()
        );
        pings += 1;
        while let Some(done) = knocking.try_join_next() {
            done.unwrap().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(pings >= 1);
    assert!(dht_ping(&pinger, &target, Duration::from_secs(2)).await);
    assert!(target.dht.counters().requests_answered >= pings);
    let stats = target.links.stats();
    assert_eq!(stats.requests_received, STRANGERS as u64, "{stats:?}");
    assert_eq!(stats.handshakes_failed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_over_the_per_source_limit_are_refused_before_the_handshake() {
    let mut config = LinkConfig::new(nobody());
    config.stranger_limit = StrangerLimit {
        burst: 8,
        per_second: 0.001,
    };
    let target = node_with(config).await;
    take_everything(&target);
    let mut strangers = Vec::new();
    for _ in 0..20 {
        strangers.push(node(&[]).await);
    }
    let mut knocking = tokio::task::JoinSet::new();
    for stranger in &strangers {
        let links = stranger.links.clone();
        let (id, path) = (target.id(), target.path());
        knocking.spawn(async move { links.send_request(id, path, b"knock").await });
    }
    let outcomes = tokio::time::timeout(PATIENCE, knocking.join_all())
        .await
        .unwrap();
    let delivered = outcomes.iter().filter(|r| r.is_ok()).count();
    assert_eq!(delivered, 8);
    let stats = target.links.stats();
    assert_eq!(stats.strangers_refused, 12);
    assert_eq!(stats.requests_received, 8);
    assert_eq!(
        stats.handshakes_failed, 0,
        "refused before any handshake work"
    );

    // A peer the node dialled itself is no stranger: the limit does not apply to it.
    let friend = node(&[]).await;
    let _ = target.links.dial(friend.id(), friend.path()).await;
    friend
        .links
        .send_request(target.id(), target.path(), b"we met")
        .await
        .unwrap();
    assert_eq!(target.links.stats().requests_received, 9);
}
