//! LAN discovery in the lab (issue 20): friends behind one router find each other on their
//! LAN, also with the router's uplink cut (`carrier-friend`'s `friends/lan.rs`: mDNS with a
//! rotating token only friends recognise).
#![allow(clippy::unwrap_used)]
#![cfg(target_os = "linux")]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use carrier::dht::id::CarrierId;
use carrier::dht::BootstrapNode;
use serde_json::json;
use tests::lab::daemon::{DaemonOptions, LabDaemon, PATIENCE};
use tests::lab::nodes::{public_node, seed};
use tests::lab::{Device, NatBehaviour, NetworkLab};
use tokio::net::UdpSocket;

/// mDNS's group and port.
const MDNS: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(224, 0, 0, 251)), 5353);

/// The lab's premise: a multicast datagram sent by one device behind a router reaches the
/// other devices on its LAN (patchbay's LAN is a Linux bridge in the router's namespace),
/// also with the router's uplink cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "network lab: runs in the `lab` step of `cargo xtask ci`"]
async fn multicast_crosses_between_two_devices_behind_one_router() {
    let Some(lab) = NetworkLab::open("lan_multicast").await else {
        return;
    };
    let home = lab
        .home("home", NatBehaviour::PortRestrictedCone)
        .await
        .unwrap();
    let a = lab.device_in(&home, "a").await.unwrap();
    let b = lab.device_in(&home, "b").await.unwrap();
    lab.cut_uplink(&home).await.unwrap();
    let listening = b
        .spawn(|_| async move {
            let socket = UdpSocket::bind("0.0.0.0:5353").await.unwrap();
            socket
                .join_multicast_v4(Ipv4Addr::new(224, 0, 0, 251), Ipv4Addr::UNSPECIFIED)
                .unwrap();
            let mut buf = [0u8; 64];
            let (len, from) =
                tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
                    .await
                    .expect("a multicast datagram within 5 s")
                    .unwrap();
            (buf[..len].to_vec(), from)
        })
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.spawn(|_| async move {
        let socket = UdpSocket::bind("0.0.0.0:0").await.unwrap();
        for _ in 0..5 {
            socket.send_to(b"hello lan", MDNS).await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .unwrap()
    .await
    .unwrap();
    let (data, from) = listening.await.unwrap();
    assert_eq!(data, b"hello lan");
    assert_eq!(from.ip(), a.ip().unwrap());
}

/// How long the restarted daemons may take to link through mDNS alone.
const LAN_BOUND: Duration = Duration::from_secs(20);

/// How long daemons without LAN discovery are watched for a link that must not come.
const NO_LAN_WATCH: Duration = Duration::from_secs(6);

/// Starts a daemon in `device`; `offline`: it serves at once, without trying to join first
/// (its uplink is cut), and `no_lan`: without LAN discovery.
async fn start(
    device: &Device,
    dir: &Path,
    seeds: &[BootstrapNode],
    offline: bool,
    no_lan: bool,
) -> LabDaemon {
    let options = DaemonOptions {
        log: "info,carrier_friend=debug".to_string(),
        join_attempts: offline.then_some(0),
        no_lan,
        ..DaemonOptions::default()
    };
    LabDaemon::start(device, dir, seeds, &options).await
}

/// Restarts both daemons (stopped cleanly) at once, offline: see [`start`].
async fn restart(
    (alice, bob): (LabDaemon, LabDaemon),
    (alice_host, bob_host): (&Device, &Device),
    dir: &Path,
    seeds: &[BootstrapNode],
    no_lan: bool,
) -> (LabDaemon, LabDaemon) {
    tokio::join!(alice.stop(), bob.stop());
    tokio::join!(
        start(alice_host, dir, seeds, true, no_lan),
        start(bob_host, dir, seeds, true, no_lan)
    )
}

/// The topology `daemon` reports for its link to `peer`, if it holds one.
async fn topology(daemon: &mut LabDaemon, peer: &CarrierId) -> Option<String> {
    let links = daemon.ok("links", json!({})).await;
    links["topology"][peer.to_string()]
        .as_str()
        .map(str::to_string)
}

/// Waits until both daemons hold a link to each other with topology `lan`, within `within`;
/// how long it took.
async fn wait_lan(alice: &mut LabDaemon, bob: &mut LabDaemon, within: Duration) -> Duration {
    let (a, b) = (alice.id(), bob.id());
    let started = Instant::now();
    loop {
        let at_alice = topology(alice, &b).await;
        let at_bob = topology(bob, &a).await;
        if at_alice.as_deref() == Some("lan") && at_bob.as_deref() == Some("lan") {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "no LAN link within {within:?}: Alice sees {at_alice:?}, Bob {at_bob:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Two friends behind one router (a port-restricted cone NAT) link on their LAN; then the
/// router's uplink is cut and both restart, so neither the DHT nor a remembered path can
/// lead them to each other: they link again, on the LAN, through LAN discovery alone. Then,
/// restarted once more with `--no-lan`, they stay apart: the discovery is what linked them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "network lab: runs in the `lab` step of `cargo xtask ci`"]
async fn friends_behind_one_router_link_on_the_lan_also_with_its_uplink_cut() {
    let Some(lab) = NetworkLab::open("lan_discovery").await else {
        return;
    };
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut servers = Vec::new();
    for i in 0..2 {
        let host = lab.public_host(&format!("server{i}")).await.unwrap();
        let bootstrap = servers.first().map(|s| vec![seed(s)]).unwrap_or_default();
        let server = public_node(&host, true, bootstrap).await.unwrap();
        if !servers.is_empty() {
            server.bootstrap().await.unwrap();
        }
        servers.push(server);
    }
    let seeds: Vec<BootstrapNode> = servers.iter().map(seed).collect();
    let home = lab
        .home("home", NatBehaviour::PortRestrictedCone)
        .await
        .unwrap();
    let (alice_host, bob_host) = (
        lab.device_in(&home, "alice").await.unwrap(),
        lab.device_in(&home, "bob").await.unwrap(),
    );
    let (mut alice, mut bob) = tokio::join!(
        start(&alice_host, dir.path(), &seeds, false, false),
        start(&bob_host, dir.path(), &seeds, false, false)
    );
    let (a, b) = (alice.id(), bob.id());

    // Friends through the DHT, their uplink working.
    let address = alice.ok("address", json!({})).await["address"].clone();
    bob.ok("friend_add", json!({ "address": address, "hello": "hi" }))
        .await;
    alice.events_at_least("request", &b, 1).await;
    alice
        .ok("friend_accept", json!({ "friend": b.to_string() }))
        .await;
    let first = wait_lan(&mut alice, &mut bob, PATIENCE).await;
    // Nothing left in flight (the LAN keys cross the link as it comes up).
    let deadline = Instant::now() + PATIENCE;
    while !(bob.ok("outbox", json!({})).await["items"] == 0
        && alice.ok("outbox", json!({})).await["items"] == 0)
    {
        assert!(Instant::now() < deadline, "the outboxes never emptied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The uplink goes; both restart (no link, no remembered path, no DHT).
    lab.cut_uplink(&home).await.unwrap();
    let cut = Instant::now();
    let hosts = (&alice_host, &bob_host);
    let (mut alice, mut bob) = restart((alice, bob), hosts, dir.path(), &seeds, false).await;
    let restarted = cut.elapsed();
    let again = wait_lan(&mut alice, &mut bob, LAN_BOUND).await;
    assert!(alice.is_online(&b).await && bob.is_online(&a).await);

    // Without LAN discovery the same restart links nothing.
    let (mut alice, mut bob) = restart((alice, bob), hosts, dir.path(), &seeds, true).await;
    let watch = Instant::now();
    while watch.elapsed() < NO_LAN_WATCH {
        assert_eq!(
            topology(&mut alice, &b).await,
            None,
            "a link without LAN discovery"
        );
        assert_eq!(
            topology(&mut bob, &a).await,
            None,
            "a link without LAN discovery"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "LAN link {first:?} after the accept; uplink cut, restarted in {restarted:?}, LAN link \
         again {again:?} after the restart; none without discovery in {NO_LAN_WATCH:?}; \
         test {:?}",
        started.elapsed()
    );
}
