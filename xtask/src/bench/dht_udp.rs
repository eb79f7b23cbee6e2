//! `dht.udp200.lookup_ms_p50`: the wall time of a lookup among 200 real DHT nodes, each on its
//! own UDP socket on loopback, all in this process.
//!
//! Where `dht.sim10k` counts rounds in virtual time, this is what a lookup costs on real
//! sockets with real packet crypto: the sealing and opening of every datagram, the driver task,
//! the kernel's loopback path, and waiting on up to α = 3 answers per round.

use super::report::Summary;
use super::{nodes, transfer, Scale};
use carrier_friend::dht::Key;
use rand_core::{OsRng, RngCore};
use std::time::Instant;

/// Builds a network of `scale.udp_nodes` nodes, then times `scale.udp_lookups` lookups of
/// random keys, each from a random node, one after another; returns the median in ms.
///
/// One lookup at a time, so each is timed alone: concurrent lookups would measure how the two
/// cores share them out, not how long a lookup takes. Network setup is outside the clock.
pub(crate) fn measure(scale: &Scale) -> Result<f64, String> {
    let (count, lookups) = (scale.udp_nodes, scale.udp_lookups);
    if lookups == 0 {
        return Err("no lookups to time".into());
    }
    transfer::on_runtime(async move {
        let network = nodes::start(count).await?;
        let mut millis = Vec::with_capacity(lookups);
        let mut failure = None;
        for _ in 0..lookups {
            let asker = &network[below(network.len())];
            let mut target = [0u8; 32];
            OsRng.fill_bytes(&mut target);
            let started = Instant::now();
            match asker.find_node(Key(target)).await {
                Ok(found) if !found.is_empty() => {
                    millis.push(started.elapsed().as_secs_f64() * 1e3);
                }
                Ok(_) => {
                    failure = Some(format!("a lookup from {asker:?} found no node"));
                    break;
                }
                Err(e) => {
                    failure = Some(format!("a lookup from {asker:?} failed: {e}"));
                    break;
                }
            }
        }
        nodes::stop(network).await;
        // On loopback every lookup should succeed; one that does not is a bug to report, not
        // a sample to leave out.
        if let Some(failure) = failure {
            return Err(failure);
        }
        Summary::of(&millis).map(|lookups| lookups.median)
    })
}

/// A random index below `n` (n > 0). The modulo bias, under 2^-50 for a few hundred nodes, is
/// far below anything the figure could show.
fn below(n: usize) -> usize {
    (OsRng.next_u64() % n as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A few nodes, end to end: a setup bug fails here, in `cargo test`, before anyone runs
    /// the bench.
    #[test]
    fn a_small_network_answers_lookups() {
        let scale = Scale {
            udp_nodes: 12,
            udp_lookups: 10,
            ..crate::bench::Mode::Quick.scale()
        };
        let ms = measure(&scale).unwrap();
        assert!(ms > 0.0 && ms < 10_000.0, "{ms}");
    }
}
