//! A DHT across the lab: public servers, and clients behind each kind of NAT that join
//! through them, store and fetch values, and never enter a routing table.
#![allow(clippy::unwrap_used)]
#![cfg(target_os = "linux")]

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use carrier::dht::{BootstrapNode, Key};
use tests::lab::nodes::{lab_config, node_in, public_node, seed, ANY};
use tests::lab::{NetworkLab, SocketDelay};

/// Public DHT nodes in the lab: enough for values to have several storers.
const PUBLIC_NODES: usize = 3;

#[tokio::test]
#[ignore = "network lab: runs in the `lab` step of `cargo xtask ci`"]
async fn natted_clients_join_store_and_fetch_through_public_servers_and_stay_out_of_tables() {
    let Some(lab) = NetworkLab::open("natted_clients_join_store_and_fetch").await else {
        return;
    };
    let net = lab.nat_topology(PUBLIC_NODES).await.unwrap();

    // The public servers: the first is everyone's bootstrap node; the others join through it.
    let first = public_node(&net.public[0], true, Vec::new()).await.unwrap();
    let mut servers = vec![first.clone()];
    for host in &net.public[1..] {
        let server = public_node(host, true, vec![seed(&first)]).await.unwrap();
        server.bootstrap().await.unwrap();
        servers.push(server);
    }
    let seeds: Vec<BootstrapNode> = servers.iter().map(seed).collect();

    // One client behind each NAT, and a second on the cone NAT's LAN.
    let natted = [
        (&net.cone_devices[0], &net.cone_home),
        (&net.cone_devices[1], &net.cone_home),
        (&net.symmetric_device, &net.symmetric_home),
    ];
    let mut clients = Vec::new();
    for (device, _) in natted {
        let client = node_in(device, lab_config(ANY, false, seeds.clone()))
            .await
            .unwrap();
        let entries = client.bootstrap().await.unwrap();
        assert!(
            entries > 0,
            "{} joined with servers in its table",
            device.name()
        );
        clients.push(client);
    }

    // Each client stores a value; every client and every server finds every value.
    let mut keys = Vec::new();
    for (client, (device, _)) in clients.iter().zip(natted) {
        let data = format!("stored from behind {}'s NAT", device.name());
        let (key, acks) = client.put_immutable(data.as_bytes()).await.unwrap();
        assert!(acks > 0, "{}'s value was stored", device.name());
        keys.push((key, data));
    }
    for reader in clients.iter().chain(&servers) {
        for (key, data) in &keys {
            let value = reader.get(*key).await.unwrap();
            let value = value.unwrap_or_else(|| panic!("{} found {data:?}", reader.id()));
            assert_eq!(value.data(), data.as_bytes());
        }
    }

    // Clients talked to every server, yet none of them is in any routing table.
    for server in &servers {
        assert!(server.routing_entries() > 0, "servers know each other");
        for (client, (device, _)) in clients.iter().zip(natted) {
            let key = Key::of_node(&client.id());
            let listed = server.with_node(|core| core.routing_table().contains(&key));
            assert!(
                !listed,
                "{} (behind NAT) is in a server's table",
                device.name()
            );
        }
    }

    // What the servers saw of the clients is their NATs' public address, never a private one.
    for (client, (device, router)) in clients.iter().zip(natted) {
        if let Some(observed) = client.observed_addr() {
            let public = IpAddr::V4(router.uplink_ip().unwrap());
            assert_eq!(observed.ip(), public, "{} observed", device.name());
        }
    }
}

#[tokio::test]
#[ignore = "network lab: runs in the `lab` step of `cargo xtask ci`"]
async fn socket_delay_slows_a_lab_nodes_round_trips_until_removed() {
    const EACH_WAY: Duration = Duration::from_millis(100);
    let Some(lab) = NetworkLab::open("socket_delay_slows_round_trips").await else {
        return;
    };
    let server_host = lab.public_host("public0").await.unwrap();
    let home = lab
        .home("cone", tests::lab::NatBehaviour::PortRestrictedCone)
        .await
        .unwrap();
    let client_host = lab.device_in(&home, "cone-a").await.unwrap();
    let server = public_node(&server_host, true, Vec::new()).await.unwrap();
    let client = node_in(&client_host, lab_config(ANY, false, vec![seed(&server)]))
        .await
        .unwrap();
    client.bootstrap().await.unwrap();

    let round_trip = async || {
        let started = Instant::now();
        assert!(client
            .ping(&server.id(), server.local_addr())
            .await
            .unwrap());
        started.elapsed()
    };
    let plain = round_trip().await;
    client
        .socket()
        .set_conditioner(Some(Arc::new(SocketDelay::each_way(EACH_WAY))));
    let delayed = round_trip().await;
    client.socket().set_conditioner(None);
    let restored = round_trip().await;
    eprintln!("ping: {plain:?} plain, {delayed:?} delayed, {restored:?} after");
    assert!(delayed >= 2 * EACH_WAY, "out and back are each delayed");
    assert!(restored < EACH_WAY, "the delay is gone once removed");
}
