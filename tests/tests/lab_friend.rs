//! Friends in the lab: a node that moves to another network re-announces its peer record at
//! its new address, and a friend behind a NAT, which only the record can lead there, finds
//! it again and reconnects. Both friends are `carrier daemon` processes started inside their
//! hosts' namespaces and driven through their control sockets.
#![allow(clippy::unwrap_used)]
#![cfg(target_os = "linux")]

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use carrier::dht::id::CarrierId;
use carrier::dht::Dht;
use serde_json::json;
use tests::lab::daemon::{DaemonOptions, LabDaemon, PATIENCE};
use tests::lab::nodes::{public_node, seed};
use tests::lab::{ipv4, Device, NatBehaviour, NetworkLab};
use tests::program::carrier_program;

/// DHT servers on the internet: the bootstrap nodes and the peer records' keepers.
const SERVERS: usize = 8;

/// Starts a daemon in `device` on `dir`, a DHT client joining through `seeds`, with short
/// test intervals but records announced only every 10 minutes.
async fn start_daemon(device: &Device, dir: &Path, seeds: &[&Dht]) -> LabDaemon {
    let options = DaemonOptions {
        announce_secs: Some(600),
        log: "debug".to_string(),
        ..DaemonOptions::default()
    };
    let seeds: Vec<_> = seeds.iter().map(|s| seed(s)).collect();
    LabDaemon::start(device, dir, &seeds, &options).await
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

#[tokio::test]
#[ignore = "network lab: runs in the `lab` step of `cargo xtask ci`"]
async fn a_friend_that_moves_networks_re_announces_and_its_friend_behind_a_nat_finds_it_there() {
    let Some(lab) = NetworkLab::open("friend_moves_networks").await else {
        return;
    };
    let program = carrier_program();
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
    // record says she is. Records are announced only every 10 minutes, so within this test
    // only the check for a changed address can publish the new one.
    let alice_host = lab.public_host("alice").await.unwrap();
    let elsewhere = lab.isp("elsewhere").await.unwrap();
    let home = lab
        .home("home", NatBehaviour::PortRestrictedCone)
        .await
        .unwrap();
    let bob_host = lab.device_in(&home, "bob").await.unwrap();
    let mut alice = start_daemon(&alice_host, dir.path(), &seeds).await;
    let mut bob = start_daemon(&bob_host, dir.path(), &seeds).await;
    let (a, b) = (alice.id(), bob.id());
    eprintln!("daemons from {}", program.display());

    // Alice's record names her first address once her node knows it.
    let before = IpAddr::V4(ipv4(&alice_host).unwrap());
    let deadline = Instant::now() + PATIENCE;
    while !record_of(&servers[2], &a)
        .await
        .iter()
        .any(|addr| addr.ip() == before)
    {
        assert!(
            Instant::now() < deadline,
            "Alice's record never named {before}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let alice_address = alice.ok("address", json!({})).await["address"].clone();
    bob.ok(
        "friend_add",
        json!({ "address": alice_address, "hello": "hello from behind a NAT" }),
    )
    .await;
    alice.events_at_least("request", &b, 1).await;
    alice
        .ok("friend_accept", json!({ "friend": b.to_string() }))
        .await;
    alice.events_at_least("connected", &b, 1).await;
    bob.events_at_least("connected", &a, 1).await;
    assert_eq!(
        bob.link_ip(&a).await,
        before,
        "Bob's link goes to Alice's first address"
    );

    // An idle link: nothing left to deliver, so nothing but the record can lead Bob on.
    let deadline = Instant::now() + PATIENCE;
    while !(bob.ok("outbox", json!({})).await["items"] == 0
        && alice.ok("outbox", json!({})).await["items"] == 0)
    {
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
    bob.events_at_least("disconnected", &a, 1).await;
    let lost = moved.elapsed();
    bob.events_at_least("connected", &a, 2).await;
    let back = moved.elapsed();
    // Alice, dialling Bob from behind nothing, may reach him through a relay first (Bob's NAT
    // drops her direct packets until he writes to her); Bob's own dial, to her new address,
    // then replaces that link with a direct one (a direct link beats a relayed one).
    let deadline = Instant::now() + PATIENCE;
    loop {
        let ip = bob.link_ip(&a).await;
        if ip == after {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Bob's link stays at {ip}, not Alice's new address {after}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let direct = moved.elapsed();

    // What led Bob there is Alice's new record: she sees herself at the new address, and
    // her record names it, and only it, though records are announced only every 10 min.
    let status = alice.ok("status", json!({})).await;
    let public = status["public_address"].as_str().unwrap_or_default();
    assert!(
        public.starts_with(&format!("{after}:")),
        "Alice sees herself at {public:?}"
    );
    let record = record_of(&servers[3], &a).await;
    assert!(
        record.iter().any(|addr| addr.ip() == after)
            && !record.iter().any(|addr| addr.ip() == before),
        "Alice's record names only her new address: {record:?}"
    );
    assert!(bob.is_online(&a).await && alice.is_online(&b).await);
    eprintln!(
        "Alice moved {before} -> {after}: Bob saw the link lost after {lost:?}, up again after \
         {back:?}, to her new address after {direct:?}"
    );

    alice.stop().await;
    bob.stop().await;
}
