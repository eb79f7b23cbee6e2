//! The lab's link faults do what they say: loss drops about its share each way, a cut drops
//! everything both ways, and removing either lets every packet through again; a router's
//! uplink cut takes its LAN off the internet both ways while the LAN itself keeps working.
#![allow(clippy::unwrap_used)]
#![cfg(target_os = "linux")]

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tests::lab::{ipv4, link, Device, NatBehaviour, NetworkLab};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

/// Datagrams sent back to back before the sender yields for a millisecond: a burst any
/// faster could overflow the receiver's socket buffer, and that loss is not the link's.
const BURST_DATAGRAMS: usize = 20;

/// How long the receiver keeps listening once the sender is done.
const DRAIN: Duration = Duration::from_millis(300);

/// Sends `count` numbered datagrams from `from` to `to`; returns how many distinct ones
/// arrived.
async fn delivered(from: &Device, to: &Device, count: u32) -> usize {
    let to_ip = IpAddr::V4(ipv4(to).unwrap());
    let (bound_tx, bound_rx) = oneshot::channel();
    let (sent_tx, sent_rx) = oneshot::channel::<()>();
    let receiving = to
        .spawn(async move |_| {
            let socket = UdpSocket::bind(SocketAddr::new(to_ip, 0)).await?;
            let _ = bound_tx.send(socket.local_addr()?);
            let mut seen = HashSet::new();
            let mut buf = [0u8; 64];
            let mut sent = std::pin::pin!(sent_rx);
            loop {
                tokio::select! {
                    received = socket.recv_from(&mut buf) => {
                        let (len, _) = received?;
                        if let Ok(number) = <[u8; 4]>::try_from(&buf[..len]) {
                            seen.insert(u32::from_be_bytes(number));
                        }
                    }
                    _ = &mut sent => break,
                }
            }
            while let Ok(received) = tokio::time::timeout(DRAIN, socket.recv_from(&mut buf)).await {
                let (len, _) = received?;
                if let Ok(number) = <[u8; 4]>::try_from(&buf[..len]) {
                    seen.insert(u32::from_be_bytes(number));
                }
            }
            std::io::Result::Ok(seen.len())
        })
        .unwrap();
    let target = bound_rx.await.unwrap();
    from.spawn(async move |_| {
        let socket = UdpSocket::bind("0.0.0.0:0").await?;
        for number in 0..count {
            // A send dropped by an output rule fails with EPERM: that is the loss being
            // tested, not an error of the test.
            let _ = socket.send_to(&number.to_be_bytes(), target).await;
            if number as usize % BURST_DATAGRAMS == BURST_DATAGRAMS - 1 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        std::io::Result::Ok(())
    })
    .unwrap()
    .await
    .unwrap()
    .unwrap();
    let _ = sent_tx.send(());
    receiving.await.unwrap().unwrap()
}

/// Attempts at a first datagram each way before a new lab's path counts as broken.
const SETTLE_ATTEMPTS: usize = 10;

async fn two_public_hosts(test: &str) -> Option<(NetworkLab, Device, Device)> {
    let lab = NetworkLab::open(test).await?;
    let a = lab.public_host("public0").await.unwrap();
    let b = lab.public_host("public1").await.unwrap();
    // A veth that has just come up drops what it is given until the kernel's link watcher
    // activates it (up to a second later): wait for a datagram to get through each way
    // before counting any.
    settle(&[(&a, &b), (&b, &a)]).await;
    Some((lab, a, b))
}

/// Waits until one datagram gets through each `(from, to)` of a freshly built lab.
async fn settle(paths: &[(&Device, &Device)]) {
    for (from, to) in paths {
        let mut settled = false;
        for _ in 0..SETTLE_ATTEMPTS {
            if delivered(from, to, 1).await == 1 {
                settled = true;
                break;
            }
        }
        assert!(settled, "{} never reached {}", from.name(), to.name());
    }
}

#[tokio::test]
#[ignore = "network lab: runs in the `lab` step of `cargo xtask ci`"]
async fn a_cut_uplink_takes_a_lan_off_the_internet_both_ways_and_the_lan_still_works() {
    let Some(lab) = NetworkLab::open("a_cut_uplink_takes_a_lan_off_the_internet").await else {
        return;
    };
    let public = lab.public_host("public0").await.unwrap();
    // A router without NAT, so the internet can send to its devices unsolicited: the cut
    // must stop both directions, not only what the NAT would have let in.
    let home = lab.home("home", NatBehaviour::None).await.unwrap();
    let a = lab.device_in(&home, "home-a").await.unwrap();
    let b = lab.device_in(&home, "home-b").await.unwrap();
    settle(&[(&a, &public), (&public, &a), (&a, &b), (&b, &a)]).await;
    assert_eq!(delivered(&a, &public, 50).await, 50, "out, before the cut");
    assert_eq!(delivered(&public, &a, 50).await, 50, "in, before the cut");

    lab.cut_uplink(&home).await.unwrap();
    assert_eq!(
        delivered(&a, &public, 50).await,
        0,
        "nothing leaves the LAN"
    );
    assert_eq!(
        delivered(&public, &a, 50).await,
        0,
        "nothing enters the LAN"
    );
    assert_eq!(delivered(&a, &b, 50).await, 50, "the LAN works, one way");
    assert_eq!(delivered(&b, &a, 50).await, 50, "the LAN works, the other");

    lab.heal_uplink(&home).await.unwrap();
    assert_eq!(delivered(&a, &public, 50).await, 50, "out, after heal");
    assert_eq!(delivered(&public, &a, 50).await, 50, "in, after heal");
}

#[tokio::test]
#[ignore = "network lab: runs in the `lab` step of `cargo xtask ci`"]
async fn a_cut_device_is_silent_both_ways_until_healed() {
    let Some((_lab, a, b)) = two_public_hosts("a_cut_device_is_silent_both_ways").await else {
        return;
    };
    assert_eq!(delivered(&a, &b, 50).await, 50, "before the cut");

    link::cut(&b).await.unwrap();
    assert_eq!(
        delivered(&a, &b, 50).await,
        0,
        "nothing reaches a cut device"
    );
    assert_eq!(
        delivered(&b, &a, 50).await,
        0,
        "nothing leaves a cut device"
    );

    link::heal(&b).await.unwrap();
    assert_eq!(delivered(&a, &b, 50).await, 50, "in, after heal");
    assert_eq!(delivered(&b, &a, 50).await, 50, "out, after heal");
}

#[tokio::test]
#[ignore = "network lab: runs in the `lab` step of `cargo xtask ci`"]
async fn loss_drops_about_its_share_each_way_and_nothing_once_cleared() {
    const PROBES: u32 = 2000;
    let Some((_lab, a, b)) = two_public_hosts("loss_drops_about_its_share_each_way").await else {
        return;
    };
    link::set_loss(&b, 5).await.unwrap();
    for (direction, lost) in [
        ("in", PROBES as usize - delivered(&a, &b, PROBES).await),
        ("out", PROBES as usize - delivered(&b, &a, PROBES).await),
    ] {
        let percent = lost as f64 * 100.0 / PROBES as f64;
        eprintln!("5% loss set, {direction}: {lost} of {PROBES} lost ({percent:.1}%)");
        // 5% of 2000 is 100 ± 10 (one standard deviation): 1%..15% cannot fail by chance.
        assert!(
            (1.0..=15.0).contains(&percent),
            "{direction}: {percent:.1}% lost with 5% set"
        );
    }

    link::clear_loss(&b).await.unwrap();
    assert_eq!(
        delivered(&a, &b, PROBES).await,
        PROBES as usize,
        "in, cleared"
    );
    assert_eq!(
        delivered(&b, &a, PROBES).await,
        PROBES as usize,
        "out, cleared"
    );
}
