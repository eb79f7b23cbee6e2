//! Friends in the lab: a node that moves to another network re-announces its peer record at
//! its new address, and a friend behind a NAT, which only the record can lead there, finds
//! it again and reconnects.
#![allow(clippy::unwrap_used)]
#![cfg(target_os = "linux")]

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use carrier::dht::id::CarrierId;
use carrier::dht::{Dht, DhtConfig, Path};
use carrier::friend::{FriendEvent, FriendEvents, Friends, FriendsConfig};
use tests::lab::nodes::{friends_in, lab_config, node_in, public_node, seed, ANY};
use tests::lab::{ipv4, Device, NatBehaviour, NetworkLab};

/// DHT servers on the internet: the bootstrap nodes and the peer records' keepers.
const SERVERS: usize = 8;

/// How long a friend event may take. Link loss is noticed within the idle timeout, tens of
/// seconds; this is a bound.
const PATIENCE: Duration = Duration::from_secs(90);

/// Skips `events` until `want` picks one, within [`PATIENCE`].
async fn until<T>(
    events: &mut FriendEvents,
    who: &str,
    mut want: impl FnMut(&FriendEvent) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .unwrap_or_else(|_| panic!("{who}: the awaited event did not come in time"))
            .expect("events closed");
        if let Some(value) = want(&event) {
            return value;
        }
    }
}

/// A friend node in `device`, bound to any address, keeping its data under `dir`.
async fn friend_node(
    device: &Device,
    dir: &std::path::Path,
    seeds: &[&Dht],
    config: FriendsConfig,
) -> (Friends, FriendEvents) {
    let mut dht_config: DhtConfig = lab_config(ANY, false, seeds.iter().map(|s| seed(s)).collect());
    // A client wherever it is: this test is about its peer record, not about serving.
    dht_config.node.detect_reachability = false;
    dht_config.data_dir = Some(dir.join(device.name()));
    let dht = node_in(device, dht_config).await.unwrap();
    assert!(dht.bootstrap().await.unwrap() > 0);
    friends_in(device, dht, config).await.unwrap()
}

/// The addresses in `id`'s newest peer record, as `finder` finds it.
async fn record_of(finder: &Dht, id: &CarrierId) -> Vec<SocketAddr> {
    finder
        .find_peer(id)
        .await
        .unwrap()
        .map(|record| record.addrs.to_vec())
        .unwrap_or_default()
}

/// The real IP address `node`'s link to `peer` runs to (quinn sees only a mapped one).
fn link_ip(node: &Friends, peer: &CarrierId) -> IpAddr {
    let mapped = node.link(peer).unwrap().connection().remote_address();
    match node.endpoint().paths().path(mapped) {
        Some(Path::Direct(real)) => real.ip(),
        other => panic!("the link to {peer} runs over {other:?}"),
    }
}

#[tokio::test]
async fn a_friend_that_moves_networks_re_announces_and_its_friend_behind_a_nat_finds_it_there() {
    let Some(lab) = NetworkLab::open("friend_moves_networks").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut hosts = Vec::new();
    for i in 0..SERVERS {
        hosts.push(lab.public_host(&format!("server{i}")).await.unwrap());
    }
    let first = public_node(&hosts[0], true, Vec::new()).await.unwrap();
    let mut servers = vec![first.clone()];
    for host in &hosts[1..] {
        let server = public_node(host, true, vec![seed(&first)]).await.unwrap();
        server.bootstrap().await.unwrap();
        servers.push(server);
    }
    let seeds = [&servers[0], &servers[1]];

    // Alice has a public address (a laptop on one network, soon carried to another); Bob is
    // behind a port-restricted cone NAT, so nobody reaches him unless he sent to them first,
    // and Alice can never dial him: the link comes back only if Bob dials Alice where her
    // record says she is. Records are re-published only every 10 minutes, so within this
    // test only the check for a changed address can publish the new one.
    let alice_host = lab.public_host("alice").await.unwrap();
    let elsewhere = lab.isp("elsewhere").await.unwrap();
    let home = lab
        .home("home", NatBehaviour::PortRestrictedCone)
        .await
        .unwrap();
    let bob_host = lab.device_in(&home, "bob").await.unwrap();
    let config = FriendsConfig::for_tests().with_announce_interval(Duration::from_secs(600));
    let (alice, mut alice_events) =
        friend_node(&alice_host, dir.path(), &seeds, config.clone()).await;
    let (bob, mut bob_events) = friend_node(&bob_host, dir.path(), &seeds, config).await;

    // Alice's record names her first address once her node knows it.
    let before = IpAddr::V4(ipv4(&alice_host).unwrap());
    let deadline = Instant::now() + PATIENCE;
    while !record_of(&servers[2], &alice.id())
        .await
        .iter()
        .any(|a| a.ip() == before)
    {
        assert!(
            Instant::now() < deadline,
            "Alice's record never named {before}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    bob.add_friend(&alice.address().to_string(), b"hello from behind a NAT")
        .await
        .unwrap();
    let request = until(&mut alice_events, "alice", |e| match e {
        FriendEvent::Request(r) => Some(r.from),
        _ => None,
    })
    .await;
    assert_eq!(request, bob.id());
    alice.accept_friend(&bob.id()).await.unwrap();
    let (a, b) = (alice.id(), bob.id());
    until(&mut alice_events, "alice", |e| {
        (*e == FriendEvent::Connected(b)).then_some(())
    })
    .await;
    until(&mut bob_events, "bob", |e| {
        (*e == FriendEvent::Connected(a)).then_some(())
    })
    .await;
    assert_eq!(
        link_ip(&bob, &a),
        before,
        "Bob's link goes to Alice's first address"
    );

    // An idle link: nothing left to deliver, so nothing but the record can lead Bob on.
    let deadline = Instant::now() + PATIENCE;
    while !(bob.outbox().unwrap().is_empty() && alice.outbox().unwrap().is_empty()) {
        assert!(Instant::now() < deadline, "the outboxes never emptied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Alice moves. Bob's NAT admits nothing from her new address until Bob sends there, and
    // nothing reaches her old one: the link dies at its idle timeout. Bob, looking her up
    // again, finds her new record and dials her new address.
    lab.move_device(&alice_host, &elsewhere).await.unwrap();
    let after = IpAddr::V4(ipv4(&alice_host).unwrap());
    assert_ne!(after, before, "the move gave Alice a new address");
    let moved = Instant::now();
    until(&mut bob_events, "bob", |e| {
        (*e == FriendEvent::Disconnected(a)).then_some(())
    })
    .await;
    let lost = moved.elapsed();
    until(&mut bob_events, "bob", |e| {
        (*e == FriendEvent::Connected(a)).then_some(())
    })
    .await;
    let back = moved.elapsed();
    assert_eq!(
        link_ip(&bob, &a),
        after,
        "Bob's new link goes to Alice's new address"
    );

    // What led Bob there is Alice's new record: she sees herself at the new address, and
    // her record names it, and only it, though records are re-published only every 10 min.
    assert_eq!(alice.dht().observed_addr().map(|a| a.ip()), Some(after));
    let record = record_of(&servers[3], &a).await;
    assert!(
        record.iter().any(|addr| addr.ip() == after)
            && !record.iter().any(|addr| addr.ip() == before),
        "Alice's record names only her new address: {record:?}"
    );
    assert!(bob.is_online(&a) && alice.is_online(&b));
    eprintln!(
        "Alice moved {before} -> {after}: Bob saw the link lost after {lost:?} and up again \
         to her new address after {back:?}"
    );

    alice.shutdown().await;
    bob.shutdown().await;
}
