//! `reach.relay_connect_ms`, measured in the network lab (`tests::lab`, Linux network
//! namespaces, which need root): two friends behind symmetric NATs (no direct path can work
//! between them), a bootstrap node and three relays on the internet. The pair is befriended
//! once and stopped; the figure is the time from starting both again (on their data
//! directories, default settings) until both report their link up, which can only run through
//! a relay. Where the lab cannot be built (not root, no nftables), the figure is skipped with
//! the reason, never given a value.

use super::friend::{befriend, connected, wait_for};
use super::scratch::Scratch;
use super::{runs, transfer, Scale};
use carrier_friend::dht::{BootstrapNode, Dht, DhtConfig};
use carrier_friend::{FriendEvents, Friends, FriendsConfig};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};
use tests::lab::nodes::{friends_in, lab_config, node_in, ANY};
use tests::lab::{ipv4, Device, NatBehaviour, NetworkLab};

/// Relays on the internet, each on a network (a /24) of its own.
pub(super) const RELAYS: usize = 3;

/// How long any step may take.
pub(super) const PATIENCE: Duration = Duration::from_secs(60);

/// A server on a public host of the lab: relaying unless `relay` is false.
pub(super) async fn server(
    device: &Device,
    relay: bool,
    bootstrap: Vec<BootstrapNode>,
) -> Result<Dht, String> {
    let ip = ipv4(device).map_err(|e| e.to_string())?;
    let mut config = lab_config(SocketAddr::new(IpAddr::V4(ip), 0), true, bootstrap);
    if !relay {
        config.relay = None;
    }
    let joins = !config.bootstrap.is_empty();
    let dht = node_in(device, config).await.map_err(|e| e.to_string())?;
    if joins {
        dht.bootstrap().await.map_err(|e| e.to_string())?;
    }
    Ok(dht)
}

/// A friend's node behind its NAT: a DHT client on its data directory, its friend layer with
/// the default settings, both running in the device's namespace.
async fn friend_node(
    device: &Device,
    dir: &Path,
    bootstrap: &BootstrapNode,
) -> Result<(Dht, Friends, FriendEvents), String> {
    friend_node_with(device, dir, bootstrap, FriendsConfig::default()).await
}

/// [`friend_node`] with the friend layer's settings `friends_config`.
pub(super) async fn friend_node_with(
    device: &Device,
    dir: &Path,
    bootstrap: &BootstrapNode,
    friends_config: FriendsConfig,
) -> Result<(Dht, Friends, FriendEvents), String> {
    let mut config: DhtConfig = lab_config(ANY, false, vec![bootstrap.clone()]);
    config.data_dir = Some(dir.to_path_buf());
    let dht = node_in(device, config).await.map_err(|e| e.to_string())?;
    dht.bootstrap().await.map_err(|e| e.to_string())?;
    let (friends, events) = friends_in(device, dht.clone(), friends_config)
        .await
        .map_err(|e| e.to_string())?;
    Ok((dht, friends, events))
}

/// The lab's internet: a bootstrap server that relays for nobody and [`RELAYS`] relays, each
/// on a network of its own. Returns the bootstrap server, its contact and the relays.
pub(super) async fn internet(lab: &NetworkLab) -> Result<(Dht, BootstrapNode, Vec<Dht>), String> {
    let lab_error = |e: tests::lab::LabError| e.to_string();
    let host = lab.public_host("bootstrap").await.map_err(lab_error)?;
    let seed = server(&host, false, Vec::new()).await?;
    let contact = BootstrapNode::new(seed.id(), seed.local_addr());
    let mut relays = Vec::new();
    for i in 0..RELAYS {
        let network = lab.isp(&format!("isp{i}")).await.map_err(lab_error)?;
        let host = lab
            .device_in(&network, &format!("relay{i}"))
            .await
            .map_err(lab_error)?;
        relays.push(server(&host, true, vec![contact.clone()]).await?);
    }
    Ok((seed, contact, relays))
}

/// One run of `reach.relay_connect_ms`, in milliseconds.
pub(crate) fn relay_connect(_scale: &Scale) -> Result<f64, String> {
    transfer::on_runtime_within(Duration::from_secs(300), async {
        let lab = match NetworkLab::try_open("bench_relay_connect").await {
            Ok(lab) => lab,
            Err(why) => return Err(format!("{}no network lab here: {why}", runs::SKIPPED)),
        };
        let lab_error = |e: tests::lab::LabError| e.to_string();
        let (seed, contact, relays) = internet(&lab).await?;
        let mut devices = Vec::new();
        for name in ["alice", "bob"] {
            let home = lab
                .home(&format!("{name}-home"), NatBehaviour::Symmetric)
                .await
                .map_err(lab_error)?;
            devices.push(lab.device_in(&home, name).await.map_err(lab_error)?);
        }
        let dirs = [Scratch::new("lab-alice")?, Scratch::new("lab-bob")?];

        // Befriend the pair (both NATed), and let them link once.
        let (alice_dht, alice, mut alice_events) =
            friend_node(&devices[0], dirs[0].path(), &contact).await?;
        let (bob_dht, bob, mut bob_events) =
            friend_node(&devices[1], dirs[1].path(), &contact).await?;
        befriend(
            (&alice, &mut alice_events),
            (&bob, &mut bob_events),
            PATIENCE,
        )
        .await?;
        super::friend::stop_node(alice_dht, alice).await;
        super::friend::stop_node(bob_dht, bob).await;

        // The measured part: both start, both see the link, through a relay.
        let started = Instant::now();
        let (alice_start, bob_start) = tokio::join!(
            friend_node(&devices[0], dirs[0].path(), &contact),
            friend_node(&devices[1], dirs[1].path(), &contact),
        );
        let (alice_dht, alice, mut alice_events) = alice_start?;
        let (bob_dht, bob, mut bob_events) = bob_start?;
        let (a, b) = tokio::join!(
            wait_for(&mut alice_events, PATIENCE, "alice's link", connected),
            wait_for(&mut bob_events, PATIENCE, "bob's link", connected),
        );
        a?;
        b?;
        let took = started.elapsed();
        let relayed = alice
            .link(&bob.id())
            .and_then(|link| {
                alice
                    .endpoint()
                    .paths()
                    .path(link.connection().remote_address())
            })
            .is_some_and(|path| path.is_relayed());
        super::friend::stop_node(alice_dht, alice).await;
        super::friend::stop_node(bob_dht, bob).await;
        for relay in relays {
            let _ = relay.shutdown().await;
        }
        let _ = seed.shutdown().await;
        if !relayed {
            return Err("the link did not run through a relay".into());
        }
        Ok(took.as_secs_f64() * 1000.0)
    })
}
