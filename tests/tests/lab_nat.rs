//! The lab's NATs behave as the routers they stand for, shown with plain UDP sockets.
#![allow(clippy::unwrap_used)]
#![cfg(target_os = "linux")]

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tests::lab::probe::{self, REFLECTOR_PORT};
use tests::lab::{ipv4, Device, NatTopology, NetworkLab, ReflectorGuard, Router};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

/// How long a socket listens for a datagram that must not arrive.
const SILENCE: Duration = Duration::from_millis(1500);

/// Starts a reflector on each public host given; keep the guards alive while probing.
async fn reflectors(hosts: &[Device]) -> (Vec<SocketAddr>, Vec<ReflectorGuard>) {
    let mut addrs = Vec::new();
    let mut guards = Vec::new();
    for host in hosts {
        let addr = SocketAddr::new(IpAddr::V4(ipv4(host).unwrap()), REFLECTOR_PORT);
        guards.push(host.spawn_reflector(addr).await.unwrap());
        addrs.push(addr);
    }
    (addrs, guards)
}

/// The public addresses two reflectors see one socket of `device` at.
async fn mappings_of_one_socket(device: &Device, a: SocketAddr, b: SocketAddr) -> [SocketAddr; 2] {
    device
        .spawn(async move |_| {
            let socket = UdpSocket::bind("0.0.0.0:0").await?;
            let seen_by_a = probe::observed_addr(&socket, a).await?;
            let seen_by_b = probe::observed_addr(&socket, b).await?;
            std::io::Result::Ok([seen_by_a, seen_by_b])
        })
        .unwrap()
        .await
        .unwrap()
        .unwrap()
}

async fn topology(test: &str) -> Option<(NetworkLab, NatTopology)> {
    let lab = NetworkLab::open(test).await?;
    let topology = lab.nat_topology(3).await.unwrap();
    Some((lab, topology))
}

fn public_ip(router: &Router) -> IpAddr {
    IpAddr::V4(router.uplink_ip().unwrap())
}

#[tokio::test]
#[ignore = "network lab: runs in the `lab` step of `cargo xtask ci`"]
async fn cone_nat_maps_one_socket_to_one_public_port_for_every_peer() {
    let Some((_lab, net)) = topology("cone_nat_maps_one_socket_to_one_public_port").await else {
        return;
    };
    let (reflector, _guards) = reflectors(&net.public[..2]).await;
    let [seen_by_a, seen_by_b] =
        mappings_of_one_socket(&net.cone_devices[0], reflector[0], reflector[1]).await;
    assert_eq!(
        seen_by_a.ip(),
        public_ip(&net.cone_home),
        "the router's public address"
    );
    assert_eq!(
        seen_by_a, seen_by_b,
        "endpoint-independent mapping: both peers see the same public port"
    );
}

#[tokio::test]
#[ignore = "network lab: runs in the `lab` step of `cargo xtask ci`"]
async fn symmetric_nat_maps_one_socket_to_a_port_per_peer() {
    let Some((_lab, net)) = topology("symmetric_nat_maps_one_socket_to_a_port_per_peer").await
    else {
        return;
    };
    let (reflector, _guards) = reflectors(&net.public[..2]).await;
    let [seen_by_a, seen_by_b] =
        mappings_of_one_socket(&net.symmetric_device, reflector[0], reflector[1]).await;
    assert_eq!(seen_by_a.ip(), public_ip(&net.symmetric_home));
    assert_eq!(seen_by_b.ip(), public_ip(&net.symmetric_home));
    assert_ne!(
        seen_by_a.port(),
        seen_by_b.port(),
        "endpoint-dependent mapping: each peer sees its own public port"
    );
}

/// Opens a mapping from `device` towards `reflector`, then has `stranger` send to it; returns
/// what reached the device's socket (nothing, through either NAT).
async fn unsolicited_through(
    device: &Device,
    reflector: SocketAddr,
    stranger: &Device,
) -> (SocketAddr, Option<(Vec<u8>, SocketAddr)>) {
    let (mapped_tx, mapped_rx) = oneshot::channel();
    let listening = device
        .spawn(async move |_| {
            let socket = UdpSocket::bind("0.0.0.0:0").await?;
            let mapped = probe::observed_addr(&socket, reflector).await?;
            let _ = mapped_tx.send(mapped);
            let deadline = tokio::time::Instant::now() + SILENCE;
            let arrived = loop {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                match probe::next_datagram(&socket, left).await? {
                    // A late answer to a retried probe: the reflector may answer.
                    Some((_, from)) if from == reflector => continue,
                    other => break other,
                }
            };
            std::io::Result::Ok((mapped, arrived))
        })
        .unwrap();
    let mapped = mapped_rx.await.unwrap();
    stranger
        .spawn(async move |_| probe::send_a_few(mapped, b"unsolicited").await)
        .unwrap()
        .await
        .unwrap()
        .unwrap();
    listening.await.unwrap().unwrap()
}

#[tokio::test]
#[ignore = "network lab: runs in the `lab` step of `cargo xtask ci`"]
async fn neither_nat_lets_an_unsolicited_packet_in() {
    let Some((_lab, net)) = topology("neither_nat_lets_an_unsolicited_packet_in").await else {
        return;
    };
    let (reflector, _guards) = reflectors(&net.public[..1]).await;
    let stranger = &net.public[2];
    for device in [&net.cone_devices[0], &net.symmetric_device] {
        let (mapped, arrived) = unsolicited_through(device, reflector[0], stranger).await;
        assert!(
            arrived.is_none(),
            "{}: a host it never contacted got through its mapping {mapped}: {arrived:?}",
            device.name()
        );
    }
}

#[tokio::test]
#[ignore = "network lab: runs in the `lab` step of `cargo xtask ci`"]
async fn two_devices_behind_one_router_reach_each_other_on_private_addresses() {
    let Some((_lab, net)) = topology("two_devices_behind_one_router").await else {
        return;
    };
    let [a, b] = &net.cone_devices;
    let (a_ip, b_ip) = (ipv4(a).unwrap(), ipv4(b).unwrap());
    assert!(b_ip.is_private(), "{b_ip} is a private address");
    let target = SocketAddr::new(IpAddr::V4(b_ip), 7000);
    let (bound_tx, bound_rx) = oneshot::channel();
    let receiving = b
        .spawn(async move |_| {
            let socket = UdpSocket::bind(target).await?;
            let _ = bound_tx.send(());
            probe::next_datagram(&socket, Duration::from_secs(3)).await
        })
        .unwrap();
    bound_rx.await.unwrap();
    a.spawn(async move |_| probe::send_a_few(target, b"hello, neighbour").await)
        .unwrap()
        .await
        .unwrap()
        .unwrap();
    let (data, from) = receiving
        .await
        .unwrap()
        .unwrap()
        .expect("the datagram arrived");
    assert_eq!(data, b"hello, neighbour");
    assert_eq!(
        from.ip(),
        IpAddr::V4(a_ip),
        "on the LAN the sender is seen at its own private address, untranslated"
    );
}
