//! `reach.direct_MBps` and `reach.relay_MBps`: one pair of Carrier nodes on loopback moves the
//! same bytes over a friend link on a direct path and over one through a third node relaying
//! for them (a registration, a session opened with the relay's token, both sockets using the
//! relayed path), in the same run. The ratio is the price of the relay hop (target ≥ 0.8).
//!
//! The relay's bandwidth budget (16 MiB/s by default, a policy of each relay's operator) is
//! lifted here: the figure measures what relaying costs, not what a relay allows.

use super::{transfer, Joint, Runs, Scale};
use carrier_friend::dht::relay::frame::Control;
use carrier_friend::dht::socket::NodeSocket;
use carrier_friend::dht::{Dht, DhtConfig, Key, Path, RelayLimits};
use carrier_friend::{Accepted, AllowList, Link, LinkConfig, LinkEndpoint};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Both figures from one run.
pub(crate) const TRANSFER: Joint = Joint {
    name: "reach.transfer",
    runs: Runs::Timed,
    measure,
};

/// How long the relay has to answer each control frame.
const ANSWER: Duration = Duration::from_secs(5);

fn loopback() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

async fn node(relay: Option<RelayLimits>) -> Result<Dht, String> {
    let mut config = DhtConfig::local(loopback());
    config.relay = relay;
    Dht::bind(config)
        .await
        .map_err(|e| format!("cannot start a node: {e}"))
}

/// The next control frame from a relay to `socket`.
async fn control(socket: &NodeSocket) -> Result<Control, String> {
    let datagram = tokio::time::timeout(ANSWER, socket.recv_relay_control())
        .await
        .map_err(|_| "the relay did not answer".to_string())?;
    Control::decode(&datagram.data).map_err(|e| format!("a bad control frame: {e}"))
}

/// Registers `node` with the relay at `relay` (id `relay_key`).
async fn register(node: &Dht, relay: SocketAddr, relay_key: &Key) -> Result<(), String> {
    let socket = node.socket();
    let send = |frame: Vec<u8>| async move {
        socket
            .send(relay, &frame)
            .await
            .map_err(|e| format!("cannot send to the relay: {e}"))
    };
    send(Control::hello().encode()).await?;
    let Control::Challenge { token } = control(socket).await? else {
        return Err("no challenge".into());
    };
    send(Control::register(&node.keypair(), relay_key, token).encode()).await?;
    match control(socket).await? {
        Control::Registered { .. } => Ok(()),
        other => Err(format!("not registered: {other:?}")),
    }
}

async fn link(
    from: &LinkEndpoint,
    to: &LinkEndpoint,
    to_id: carrier_friend::dht::id::CarrierId,
    path: Path,
) -> Result<(Link, Link), String> {
    let dialled = from
        .dial(to_id, path)
        .await
        .map_err(|e| format!("the dial failed: {e}"))?;
    match to.accept().await {
        Some(Accepted::Link(accepted)) => Ok((dialled, accepted)),
        Some(Accepted::Request(_)) => Err("a request instead of a link".into()),
        None => Err("the endpoint closed".into()),
    }
}

fn measure(scale: &Scale, _run: usize) -> Result<Vec<(&'static str, f64)>, String> {
    let total_bytes = scale.relay_transfer_bytes;
    transfer::on_runtime(async move {
        let relay = node(Some(RelayLimits {
            bandwidth_bytes_per_sec: u32::MAX,
            ..RelayLimits::default()
        }))
        .await?;
        let alice = node(None).await?;
        let bob = node(None).await?;
        let bob_friends = AllowList::default();
        bob_friends.insert(alice.id());
        let endpoint = |dht: &Dht, friends: AllowList| {
            LinkEndpoint::new(
                dht.socket().clone(),
                &dht.keypair(),
                LinkConfig::new(friends),
            )
            .map_err(|e| format!("cannot open a link endpoint: {e}"))
        };
        let at_alice = endpoint(&alice, AllowList::default())?;
        let at_bob = endpoint(&bob, bob_friends)?;

        // Direct first: the baseline.
        let (sending, receiving) =
            link(&at_alice, &at_bob, bob.id(), Path::Direct(bob.local_addr())).await?;
        let direct = transfer::timed_quic_stream(
            total_bytes,
            sending.connection().clone(),
            receiving.connection().clone(),
        )
        .await?;
        sending.close(carrier_friend::close::DONE, b"done");

        // Then through the relay: Bob registers, Alice opens a session, Bob takes it up.
        register(&bob, relay.local_addr(), &Key::of_node(&relay.id())).await?;
        let relayed = alice
            .open_relay_session(relay.local_addr(), &bob.id())
            .await
            .map_err(|e| format!("no session: {e}"))?;
        let Control::Incoming { session, .. } = control(bob.socket()).await? else {
            return Err("Bob was not told of the session".into());
        };
        bob.socket()
            .add_relayed_path(relay.local_addr(), session)
            .ok_or("Bob's socket is full")?;
        let (sending, receiving) = link(&at_alice, &at_bob, bob.id(), relayed).await?;
        let through_relay = transfer::timed_quic_stream(
            total_bytes,
            sending.connection().clone(),
            receiving.connection().clone(),
        )
        .await?;
        sending.close(carrier_friend::close::DONE, b"done");
        at_alice.shutdown().await;
        at_bob.shutdown().await;
        Ok(vec![
            ("reach.direct_MBps", direct),
            ("reach.relay_MBps", through_relay),
        ])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both transfers, end to end, at a small size: a setup bug fails here, in `cargo test`,
    /// before anyone runs the bench.
    #[test]
    fn both_paths_carry_the_transfer() {
        let scale = Scale {
            relay_transfer_bytes: 2 << 20,
            ..crate::bench::Mode::Quick.scale()
        };
        let figures = measure(&scale, 0).unwrap();
        let names: Vec<&str> = figures.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, ["reach.direct_MBps", "reach.relay_MBps"]);
        assert!(figures.iter().all(|(_, mbps)| *mbps > 0.0), "{figures:?}");
    }
}
