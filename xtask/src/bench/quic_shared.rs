//! `quic.shared_MBps`: the `quinn.raw_MBps` transfer, but each end is a Carrier node: quinn on
//! the node's shared [`NodeSocket`] (the DHT's socket) through carrier-friend's
//! [`LinkEndpoint`], with Carrier's transport settings, path table and Carrier-ID TLS.
//!
//! The ratio to `quinn.raw_MBps` is the price of sharing the socket; the target is at least
//! 0.95 (shared TARGETS).
//!
//! `quic.shared_ratio` measures that price in pairs ([`PAIRED`]): each run is one raw quinn
//! transfer and one shared-socket transfer back to back, and its value is their ratio, so
//! the machine's drift between invocations (±12% in the baseline's median) cancels within
//! each pair instead of landing in a ratio of two medians taken minutes apart.
//! `quic.shared_cpu_ratio`, from the same pairs, compares the CPU time each transfer cost.

use super::transfer::{self, QuicRun};
use super::{quic, Joint, Runs, Scale};
use carrier_friend::dht::id::Keypair;
use carrier_friend::dht::socket::NodeSocket;
use carrier_friend::dht::Path;
use carrier_friend::{Accepted, AllowList, LinkConfig, LinkEndpoint};
use std::net::{Ipv4Addr, SocketAddr};

/// Sends `scale.transfer_bytes` over one unidirectional stream of a fresh friend link between
/// two nodes; returns MB/s.
pub(crate) fn measure(scale: &Scale) -> Result<f64, String> {
    measure_counted(scale).map(|run| run.mbps)
}

/// [`measure`], with the CPU time and the counters: quinn's
/// ([`transfer::counted_quic_stream`]) and the receiving node socket's (QUIC datagrams its
/// QUIC side read itself, those the DHT side read and handed over, those dropped).
pub(crate) fn measure_counted(scale: &Scale) -> Result<QuicRun, String> {
    let total_bytes = scale.transfer_bytes;
    transfer::on_runtime(async move {
        let (alice, bob) = (Keypair::generate(), Keypair::generate());
        let bob_friends = AllowList::default();
        bob_friends.insert(alice.id());
        let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let node = |keypair: &Keypair, friends: AllowList| {
            let socket = NodeSocket::bind(loopback)
                .map_err(|e| format!("cannot bind a node socket: {e}"))?;
            let endpoint = LinkEndpoint::new(socket.clone(), keypair, LinkConfig::new(friends))
                .map_err(|e| format!("cannot open a link endpoint: {e}"))?;
            Ok::<_, String>((endpoint, socket))
        };
        let (bob_node, bob_socket) = node(&bob, bob_friends)?;
        let (alice_node, _) = node(&alice, AllowList::default())?;
        let bob_address = bob_node
            .local_addr()
            .map_err(|e| format!("cannot read Bob's address: {e}"))?;

        let at_alice = alice_node
            .dial(bob.id(), Path::Direct(bob_address))
            .await
            .map_err(|e| format!("the dial failed: {e}"))?;
        let at_bob = match bob_node.accept().await {
            Some(Accepted::Link(link)) => link,
            Some(Accepted::Request(_)) => return Err("a request instead of a link".into()),
            None => return Err("Bob's endpoint closed".into()),
        };

        let run = transfer::counted_quic_stream(
            total_bytes,
            at_alice.connection().clone(),
            at_bob.connection().clone(),
        )
        .await
        .map(|mut run| {
            let socket = bob_socket.stats();
            run.seen += &format!(
                "; Bob's socket: {} QUIC datagrams read by quinn, {} handed over by the DHT side, \
                 {} dropped",
                socket.quic_received - socket.quic_handed_over,
                socket.quic_handed_over,
                socket.dropped
            );
            run
        });
        at_alice.close(carrier_friend::close::DONE, b"done");
        alice_node.shutdown().await;
        bob_node.shutdown().await;
        run
    })
}

/// The throughput figure [`PAIRED`] yields.
pub(crate) const SHARED_RATIO: &str = "quic.shared_ratio";

/// The CPU figure [`PAIRED`] yields.
pub(crate) const SHARED_CPU_RATIO: &str = "quic.shared_cpu_ratio";

/// `quic.shared_ratio` and `quic.shared_cpu_ratio`: each run a pair of 1 GiB transfers, raw
/// quinn ([`quic::measure`]) and the shared socket ([`measure`]), each on its own fresh
/// runtime as in the two figures. The run's values are shared / raw in throughput, and in CPU
/// time per transfer. More runs than the other figures (11 pairs in the full bench), because
/// a pair's ratio carries the noise of two transfers.
pub(crate) const PAIRED: Joint = Joint {
    name: "quic.paired",
    runs: Runs::Many { full: 11 },
    measure: measure_pair,
};

/// One pair, in the order [`raw_first`] gives for `run`; returns the ratios shared / raw.
fn measure_pair(scale: &Scale, run: usize) -> Result<Vec<(&'static str, f64)>, String> {
    let (raw, shared) = pair(
        run,
        || quic::measure_counted(scale),
        || measure_counted(scale),
    )?;
    let order = if raw_first(run) {
        "raw first"
    } else {
        "shared first"
    };
    eprintln!(
        "bench: quic.paired pair {run} ({order}): raw {:.1} MB/s, {:.2} s of CPU ({}); \
         shared {:.1} MB/s, {:.2} s of CPU ({})",
        raw.mbps,
        raw.cpu.as_secs_f64(),
        raw.seen,
        shared.mbps,
        shared.cpu.as_secs_f64(),
        shared.seen
    );
    Ok(vec![
        (SHARED_RATIO, shared.mbps / raw.mbps),
        (
            SHARED_CPU_RATIO,
            shared.cpu.as_secs_f64() / raw.cpu.as_secs_f64(),
        ),
    ])
}

/// Whether raw quinn goes first in run `run`: in even runs, and the shared socket in odd ones,
/// so that whatever favours one place in a pair (a warmer cache, a CPU clock still rising)
/// favours each side in half of the pairs.
fn raw_first(run: usize) -> bool {
    run % 2 == 0
}

/// Measures `raw` and `shared` one after the other, in the order of `run`; returns
/// (raw, shared).
fn pair<T>(
    run: usize,
    raw: impl FnOnce() -> Result<T, String>,
    shared: impl FnOnce() -> Result<T, String>,
) -> Result<(T, T), String> {
    if raw_first(run) {
        let raw = raw()?;
        Ok((raw, shared()?))
    } else {
        let shared = shared()?;
        Ok((raw()?, shared))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn pairs_alternate_their_order_and_return_raw_then_shared() {
        let order = RefCell::new(Vec::new());
        let raw = || {
            order.borrow_mut().push("raw");
            Ok(400.0)
        };
        let shared = || {
            order.borrow_mut().push("shared");
            Ok(380.0)
        };
        assert_eq!(pair(0, raw, shared), Ok((400.0, 380.0)));
        assert_eq!(pair(1, raw, shared), Ok((400.0, 380.0)));
        assert_eq!(pair(2, raw, shared), Ok((400.0, 380.0)));
        assert_eq!(
            *order.borrow(),
            ["raw", "shared", "shared", "raw", "raw", "shared"]
        );
    }

    #[test]
    fn a_failed_transfer_fails_the_pair() {
        let fail = || Err::<f64, String>("broke".to_string());
        assert!(pair(0, fail, || Ok(1.0)).is_err());
        assert!(pair(1, || Ok(1.0), fail).is_err());
    }

    #[test]
    fn the_figure_is_the_median_of_the_ratios_within_pairs() {
        // Four of five pairs cost the shared socket 5%; one pair (600, 600) cost nothing. The
        // two sides drift together, so the ratio of each side's median (600 / 600) would
        // hide the price that the median of the pairs' ratios shows.
        let pairs = [
            (800.0, 760.0),
            (600.0, 600.0),
            (700.0, 665.0),
            (500.0, 475.0),
            (400.0, 380.0),
        ];
        let ratios: Vec<f64> = pairs.iter().map(|(raw, shared)| shared / raw).collect();
        let summary = super::super::report::Summary::of(&ratios).unwrap();
        assert_eq!(summary.runs, 5);
        assert!((summary.median - 0.95).abs() < 1e-12, "{summary:?}");
        assert!((summary.min - 0.95).abs() < 1e-12 && summary.max == 1.0);
    }

    /// Both sides of a pair on a small transfer: a setup bug fails here, in `cargo test`.
    #[test]
    fn a_pair_moves_its_bytes_both_ways() {
        let scale = Scale {
            transfer_bytes: 1 << 20,
            ..crate::bench::Mode::Quick.scale()
        };
        let values = measure_pair(&scale, 1).unwrap();
        let names: Vec<&str> = values.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, [SHARED_RATIO, SHARED_CPU_RATIO]);
        assert!(values.iter().all(|(_, v)| *v > 0.0), "{values:?}");
    }
}
