//! A DHT across the lab: public servers, and clients behind each kind of NAT that join
//! through them, store and fetch values, and never enter a routing table.
#![allow(clippy::unwrap_used)]
#![cfg(target_os = "linux")]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use carrier::dht::{BootstrapNode, Dht, DhtConfig, Key};
use tests::lab::{ipv4, Device, NetworkLab, SocketDelay};

/// Public DHT nodes in the lab: enough for values to have several storers.
const PUBLIC_NODES: usize = 3;

/// Queries fail well before the test would hang.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

fn lab_config(bind: SocketAddr, server: bool, bootstrap: Vec<BootstrapNode>) -> DhtConfig {
    let mut config = DhtConfig {
        bind,
        bootstrap,
        query_timeout: QUERY_TIMEOUT,
        ..DhtConfig::default()
    };
    config.node.server = server;
    // Every public host of the lab is in 198.18.1.0/24: the per-/24 limit would keep all
    // but two of them out of each bucket.
    config.node.max_per_subnet = None;
    config
}

/// Starts a DHT node in `device`'s namespace: its socket and its task live there.
async fn node_in(device: &Device, config: DhtConfig) -> Dht {
    device
        .spawn(async move |_| Dht::bind(config).await)
        .unwrap()
        .await
        .unwrap()
        .unwrap()
}

/// A public server on `device`, bound to its address so its contact is the real one.
async fn public_node(device: &Device, bootstrap: Vec<BootstrapNode>) -> Dht {
    let bind = SocketAddr::new(IpAddr::V4(ipv4(device).unwrap()), 0);
    node_in(device, lab_config(bind, true, bootstrap)).await
}

fn seed(node: &Dht) -> BootstrapNode {
    format!("{}@{}", node.id(), node.local_addr())
        .parse()
        .unwrap()
}

#[tokio::test]
async fn natted_clients_join_store_and_fetch_through_public_servers_and_stay_out_of_tables() {
    let Some(lab) = NetworkLab::open("natted_clients_join_store_and_fetch").await else {
        return;
    };
    let net = lab.nat_topology(PUBLIC_NODES).await.unwrap();

    // The public servers: the first is everyone's bootstrap node; the others join through it.
    let first = public_node(&net.public[0], Vec::new()).await;
    let mut servers = vec![first.clone()];
    for host in &net.public[1..] {
        let server = public_node(host, vec![seed(&first)]).await;
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
        let any = SocketAddr::from(([0, 0, 0, 0], 0));
        let client = node_in(device, lab_config(any, false, seeds.clone())).await;
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
    let server = public_node(&server_host, Vec::new()).await;
    let any = SocketAddr::from(([0, 0, 0, 0], 0));
    let client = node_in(&client_host, lab_config(any, false, vec![seed(&server)])).await;
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
