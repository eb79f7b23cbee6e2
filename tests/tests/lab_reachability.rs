//! Where nodes stand, in the lab: public nodes and nodes behind each kind of NAT form one
//! DHT; each learns its public address and its NAT's mapping from what peers report, only
//! the public ones (and one behind a full-cone NAT) are confirmed reachable by probes and
//! become servers, and the ones behind filtering NATs use the DHT (values, peer records,
//! mailboxes) without entering any routing table. Lookups
//! and gets survive 5% loss on every link, and a public node cut off leaves the routing
//! tables and comes back once healed.
#![allow(clippy::unwrap_used)]
#![cfg(target_os = "linux")]

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use carrier::dht::{
    Dht, DhtEvent, Key, NatMapping, PeerRecord, PublicAddr, PublicPort, Reachability, Standing,
};
use tests::lab::nodes::{lab_config, node_in, public_node, seed, wait_until, ANY};
use tests::lab::{ipv4, link, Device, NatBehaviour, NetworkLab, Router};
use tokio::task::JoinSet;

/// Servers by configuration in the first test: more than K (8), so that a newcomer's own
/// lookups leave some of them uncontacted to probe it.
const DECLARED_SERVERS: usize = 12;

/// Public nodes that find out by probes that they are reachable.
const PROBED_PUBLIC: usize = 3;

/// How long nodes get to settle where they stand. It takes seconds; this is a bound.
const SETTLE: Duration = Duration::from_secs(60);

fn public_ip(router: &Router) -> IpAddr {
    IpAddr::V4(router.uplink_ip().unwrap())
}

fn key_of(node: &Dht) -> Key {
    Key::of_node(&node.id())
}

/// Each node's standing, one per line, for failure messages.
fn standings(nodes: &[(&str, &Dht)]) -> String {
    nodes
        .iter()
        .map(|(name, node)| format!("{name}: {:?}\n", node.standing()))
        .collect()
}

/// Every standing event received so far.
fn standing_events(events: &mut tokio::sync::broadcast::Receiver<DhtEvent>) -> Vec<Standing> {
    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let DhtEvent::Standing(standing) = event {
            seen.push(standing);
        }
    }
    seen
}

#[tokio::test]
#[ignore = "network lab: runs in the `lab` step of `cargo xtask ci`"]
async fn public_and_natted_nodes_form_one_dht_and_each_knows_where_it_stands() {
    let Some(lab) = NetworkLab::open("where_each_node_stands").await else {
        return;
    };
    let started = Instant::now();
    let net = lab
        .nat_topology(DECLARED_SERVERS + PROBED_PUBLIC)
        .await
        .unwrap();

    // Servers by configuration (bootstrap nodes): the first is everyone's seed.
    let first = public_node(&net.public[0], true, Vec::new()).await.unwrap();
    let mut declared = vec![first.clone()];
    for host in &net.public[1..DECLARED_SERVERS] {
        let server = public_node(host, true, vec![seed(&first)]).await.unwrap();
        server.bootstrap().await.unwrap();
        declared.push(server);
    }

    // Public nodes that start as clients and must prove they are reachable, and a node
    // behind each NAT (two on the cone NAT's LAN), all checking their reachability.
    let probed_hosts = &net.public[DECLARED_SERVERS..];
    let mut probed = Vec::new();
    for host in probed_hosts {
        probed.push(public_node(host, false, vec![seed(&first)]).await.unwrap());
    }
    let natted: [(&Device, &Router); 3] = [
        (&net.cone_devices[0], &net.cone_home),
        (&net.cone_devices[1], &net.cone_home),
        (&net.symmetric_device, &net.symmetric_home),
    ];
    let seeds = vec![seed(&declared[0]), seed(&declared[1])];
    let mut clients = Vec::new();
    for (device, _) in natted {
        let config = lab_config(ANY, false, seeds.clone());
        clients.push(node_in(device, config).await.unwrap());
    }
    // Behind a full-cone NAT (patchbay's Open): its public port admits anyone once it has
    // sent, so the node proves itself reachable and becomes a server, as a public one does.
    let open_home = lab.home("open", NatBehaviour::Open).await.unwrap();
    let open_device = lab.device_in(&open_home, "open-a").await.unwrap();
    let open = node_in(&open_device, lab_config(ANY, false, seeds.clone()))
        .await
        .unwrap();
    let mut probed_events = probed[0].events();
    let mut cone_events = clients[0].events();
    for node in probed.iter().chain(&clients).chain([&open]) {
        assert!(!node.is_server(), "nobody starts as a server unless told");
        assert!(node.bootstrap().await.unwrap() > 0);
    }

    let mut named: Vec<(&str, &Dht)> = Vec::new();
    for (host, node) in probed_hosts.iter().zip(&probed) {
        named.push((host.name(), node));
    }
    for ((device, _), node) in natted.iter().zip(&clients) {
        named.push((device.name(), node));
    }
    named.push((open_device.name(), &open));
    let settled = wait_until(SETTLE, || {
        probed
            .iter()
            .chain([&open])
            .all(|n| n.reachability() == Reachability::Reachable)
            && clients.iter().all(|n| {
                n.reachability() == Reachability::Unreachable
                    && n.nat_mapping() != NatMapping::Unknown
            })
    })
    .await;
    assert!(settled, "not settled:\n{}", standings(&named));
    let settle_time = started.elapsed();

    // Public nodes: their own address, no translation, reachable, servers.
    for (host, node) in probed_hosts.iter().zip(&probed) {
        let standing = node.standing();
        let own = node.local_addr();
        assert_eq!(own.ip(), IpAddr::V4(ipv4(host).unwrap()));
        assert_eq!(
            standing.public_addr,
            Some(PublicAddr {
                ip: own.ip(),
                port: PublicPort::Same(own.port())
            }),
            "{}",
            host.name()
        );
        assert_eq!(standing.nat, NatMapping::EndpointIndependent);
        assert!(standing.server, "{} became a server", host.name());
    }
    for node in &declared {
        assert!(node.is_server());
        assert_eq!(node.reachability(), Reachability::Unknown, "never probes");
        assert_eq!(node.observed_addr(), Some(node.local_addr()));
    }
    // Behind the cone NAT: the router's address and one port for every peer; unreachable.
    for ((device, router), node) in natted.iter().zip(&clients).take(2) {
        let standing = node.standing();
        let public = standing.public_addr.unwrap();
        assert_eq!(public.ip, public_ip(router), "{}", device.name());
        assert!(
            matches!(public.port, PublicPort::Same(_)),
            "{}: {standing:?}",
            device.name()
        );
        assert_eq!(standing.nat, NatMapping::EndpointIndependent);
        assert!(!standing.server);
    }
    // Behind the full cone: the router's address, one port for every peer, reachable, a
    // server.
    let standing = open.standing();
    let public = standing.public_addr.unwrap();
    assert_eq!(public.ip, public_ip(&open_home), "{standing:?}");
    assert!(matches!(public.port, PublicPort::Same(_)), "{standing:?}");
    assert_eq!(standing.nat, NatMapping::EndpointIndependent);
    assert!(
        standing.server,
        "the node behind the full cone became a server"
    );
    // Behind the symmetric NAT: the router's address, a port per peer; unreachable.
    let (device, router) = natted[2];
    let standing = clients[2].standing();
    assert_eq!(
        standing.public_addr,
        Some(PublicAddr {
            ip: public_ip(router),
            port: PublicPort::VariesPerPeer
        }),
        "{}",
        device.name()
    );
    assert_eq!(standing.nat, NatMapping::EndpointDependent);
    assert!(!standing.server);

    // The changes were reported as events.
    let events = standing_events(&mut probed_events);
    assert!(
        events
            .iter()
            .any(|s| s.server && s.reachability == Reachability::Reachable),
        "{events:?}"
    );
    let events = standing_events(&mut cone_events);
    assert!(
        events
            .iter()
            .any(|s| !s.server && s.reachability == Reachability::Unreachable),
        "{events:?}"
    );

    // The NATed nodes use the DHT: values, mutable values, peer records, mailboxes.
    let mut keys = Vec::new();
    for (client, (device, _)) in clients.iter().zip(natted) {
        let data = format!("stored from behind {}'s NAT", device.name());
        let (key, acks) = client.put_immutable(data.as_bytes()).await.unwrap();
        assert!(acks > 0);
        keys.push((key, data));
    }
    let everyone: Vec<&Dht> = clients.iter().chain(&probed).chain(&declared).collect();
    for reader in &everyone {
        for (key, data) in &keys {
            let value = reader.get(*key).await.unwrap();
            let value = value.unwrap_or_else(|| panic!("{} found {data:?}", reader.id()));
            assert_eq!(value.data(), data.as_bytes());
        }
    }
    let (key, _) = clients[2].put_mutable(b"status", 3, b"busy").await.unwrap();
    let value = clients[0].get(key).await.unwrap().unwrap();
    assert_eq!((value.seq(), value.data()), (3, &b"busy"[..]));

    for (i, client) in clients.iter().enumerate() {
        let keypair = client.with_node(|core| core.keypair().clone());
        let expires = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3600;
        let addrs = client.observed_addr().into_iter().collect();
        let record = PeerRecord::sign(&keypair, 1, expires, addrs, Vec::new()).unwrap();
        assert!(client.announce(record.clone()).await.unwrap() > 0);
        let finder = &clients[(i + 1) % clients.len()];
        let found = finder.find_peer(&client.id()).await.unwrap();
        assert_eq!(found, Some(record), "{} found {i}'s record", finder.id());
    }

    let letter = b"a letter between two NATs".to_vec();
    clients[0].deposit(&clients[2].id(), &letter).await.unwrap();
    clients[2]
        .deposit(&clients[1].id(), b"and back")
        .await
        .unwrap();
    let received = clients[2].fetch().await.unwrap();
    assert_eq!(received.len(), 1);
    assert_eq!(
        (received[0].sender, &received[0].bytes),
        (clients[0].id(), &letter)
    );
    let back = clients[1].fetch().await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].bytes, b"and back");
    assert!(clients[2].delete(&received[0]).await.unwrap() >= 1);
    assert!(clients[2].fetch().await.unwrap().is_empty());

    // No NATed node is in any routing table; the promoted public nodes are, once they have
    // looked themselves up as servers.
    for node in probed.iter().chain([&open]) {
        node.find_node(key_of(node)).await.unwrap();
    }
    let servers: Vec<&Dht> = declared.iter().chain(&probed).chain([&open]).collect();
    let listed = |key: Key| {
        servers
            .iter()
            .filter(|s| s.with_node(|core| core.routing_table().contains(&key)))
            .count()
    };
    let promoted_listed = wait_until(SETTLE, || {
        probed
            .iter()
            .chain([&open])
            .all(|node| listed(key_of(node)) > 0)
    })
    .await;
    assert!(promoted_listed, "every promoted node is in some table");
    for (client, (device, _)) in clients.iter().zip(natted) {
        assert_eq!(listed(key_of(client)), 0, "{} is in a table", device.name());
    }
    eprintln!(
        "settled in {settle_time:?}, whole test {:?}",
        started.elapsed()
    );
}

/// A small deterministic generator of lookup targets.
fn target(i: u64) -> Key {
    let mut bytes = [0u8; 32];
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(1);
    for chunk in bytes.chunks_mut(8) {
        x ^= x >> 30;
        x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x ^= x >> 27;
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    Key(bytes)
}

#[tokio::test]
#[ignore = "network lab: runs in the `lab` step of `cargo xtask ci`"]
async fn lookups_and_gets_succeed_despite_five_percent_loss_on_every_link() {
    const SERVERS: usize = 8;
    const VALUES: usize = 10;
    const OPERATIONS: usize = 250;
    const IN_FLIGHT: usize = 12;
    let Some(lab) = NetworkLab::open("lookups_and_gets_under_loss").await else {
        return;
    };
    let net = lab.nat_topology(SERVERS).await.unwrap();
    let first = public_node(&net.public[0], true, Vec::new()).await.unwrap();
    let mut nodes = vec![first.clone()];
    for host in &net.public[1..] {
        let server = public_node(host, true, vec![seed(&first)]).await.unwrap();
        server.bootstrap().await.unwrap();
        nodes.push(server);
    }
    let natted = [
        &net.cone_devices[0],
        &net.cone_devices[1],
        &net.symmetric_device,
    ];
    for device in natted {
        let config = lab_config(ANY, false, vec![seed(&first), seed(&nodes[1])]);
        let client = node_in(device, config).await.unwrap();
        client.bootstrap().await.unwrap();
        nodes.push(client);
    }
    let mut values = Vec::new();
    for i in 0..VALUES {
        let data = format!("value {i}");
        let (key, _) = nodes[i % nodes.len()]
            .put_immutable(data.as_bytes())
            .await
            .unwrap();
        values.push((key, data));
    }

    // 5% of packets lost each way on every host's link, NATed devices included.
    let devices: Vec<&Device> = net.public.iter().chain(natted).collect();
    for device in &devices {
        link::set_loss(device, 5).await.unwrap();
    }
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    let (mut lookups_ok, mut gets_ok) = (0, 0);
    for i in 0..OPERATIONS * 2 {
        let node = nodes[i % nodes.len()].clone();
        let lookup = i % 2 == 0;
        let (key, data) = values[i % VALUES].clone();
        let i = i as u64;
        tasks.spawn(async move {
            if lookup {
                let found = node.find_node(target(i)).await;
                (true, found.is_ok_and(|closest| !closest.is_empty()))
            } else {
                let found = node.get(key).await;
                let right = matches!(found, Ok(Some(v)) if v.data() == data.as_bytes());
                (false, right)
            }
        });
        if tasks.len() >= IN_FLIGHT {
            count(tasks.join_next().await, &mut lookups_ok, &mut gets_ok);
        }
    }
    while let Some(done) = tasks.join_next().await {
        count(Some(done), &mut lookups_ok, &mut gets_ok);
    }
    let elapsed = started.elapsed();
    for device in &devices {
        link::clear_loss(device).await.unwrap();
    }
    eprintln!(
        "with 5% loss: {lookups_ok}/{OPERATIONS} lookups and {gets_ok}/{OPERATIONS} gets \
         succeeded, in {elapsed:?}"
    );
    assert!(
        lookups_ok * 100 >= OPERATIONS * 99,
        "lookups: {lookups_ok}/{OPERATIONS}"
    );
    assert!(
        gets_ok * 100 >= OPERATIONS * 99,
        "gets: {gets_ok}/{OPERATIONS}"
    );
}

fn count(
    done: Option<Result<(bool, bool), tokio::task::JoinError>>,
    lookups_ok: &mut usize,
    gets_ok: &mut usize,
) {
    match done {
        Some(Ok((true, ok))) => *lookups_ok += usize::from(ok),
        Some(Ok((false, ok))) => *gets_ok += usize::from(ok),
        other => panic!("an operation's task failed: {other:?}"),
    }
}

#[tokio::test]
#[ignore = "network lab: runs in the `lab` step of `cargo xtask ci`"]
async fn a_cut_public_node_leaves_the_routing_tables_and_returns_once_healed() {
    const SERVERS: usize = 6;
    const WITHIN: Duration = Duration::from_secs(30);
    let Some(lab) = NetworkLab::open("a_cut_public_node").await else {
        return;
    };
    let hosts: Vec<Device> = {
        let mut hosts = Vec::new();
        for i in 0..SERVERS {
            hosts.push(lab.public_host(&format!("public{i}")).await.unwrap());
        }
        hosts
    };
    // Short timeouts, so a silent node is found out within seconds: a request is given up
    // after 2 tries of at most 1 s each, an entry after 2 requests given up, and a bucket
    // nobody used for 4 s is refreshed.
    let start = async |host: &Device, bootstrap| {
        let bind = SocketAddr::new(IpAddr::V4(ipv4(host).unwrap()), 0);
        let mut config = lab_config(bind, true, bootstrap);
        config.node.max_rto = Duration::from_secs(1);
        config.node.refresh_interval = Duration::from_secs(4);
        node_in(host, config).await.unwrap()
    };
    let first = start(&hosts[0], Vec::new()).await;
    let mut nodes = vec![first.clone()];
    for host in &hosts[1..] {
        let node = start(host, vec![seed(&first)]).await;
        node.bootstrap().await.unwrap();
        nodes.push(node);
    }
    let cut_host = &hosts[SERVERS - 1];
    let cut = nodes.pop().unwrap();
    let others = nodes;
    let key = key_of(&cut);
    let listing = |others: &[Dht]| {
        others
            .iter()
            .filter(|n| n.with_node(|core| core.routing_table().contains(&key)))
            .count()
    };
    // Everyone knows it before the cut (lookups of it make sure they have met it).
    let all_listed =
        look_for_until(&others, key, WITHIN, || listing(&others) == others.len()).await;
    assert!(
        all_listed,
        "{} of {} list it",
        listing(&others),
        others.len()
    );

    link::cut(cut_host).await.unwrap();
    let cut_at = Instant::now();
    let gone = look_for_until(&others, key, WITHIN, || listing(&others) == 0).await;
    let gone_after = cut_at.elapsed();
    assert!(gone, "still in {} tables", listing(&others));

    link::heal(cut_host).await.unwrap();
    let healed_at = Instant::now();
    let back = look_for_until(&others, key, WITHIN, || listing(&others) == others.len()).await;
    assert!(
        back,
        "back in only {} of {} tables",
        listing(&others),
        others.len()
    );
    eprintln!(
        "cut node out of every table {gone_after:?} after the cut, back in every table {:?} \
         after the heal",
        healed_at.elapsed()
    );
    drop(cut);
}

/// Until `done` holds or `within` passes, every node in `nodes` looks `key` up every 300 ms
/// (the traffic that finds a silent node out, or a returning one back); returns whether
/// `done` held.
async fn look_for_until(
    nodes: &[Dht],
    key: Key,
    within: Duration,
    mut done: impl FnMut() -> bool,
) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        let mut lookups = JoinSet::new();
        for node in nodes {
            let node = node.clone();
            lookups.spawn(async move { node.find_node(key).await });
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Lookups still running go on in the background until their own timeouts.
        lookups.detach_all();
    }
}
