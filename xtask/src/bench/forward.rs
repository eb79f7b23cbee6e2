//! The forwarding figures (issue 18): carrier-forward between two friends' nodes on
//! loopback, each with its data directory under `target/bench/scratch/` and default settings.
//!
//! One measurement, fresh nodes each run (a bootstrap node, Alice and Bob, friends and
//! linked, their messengers, sessions and forwarders; Bob serves `sink`, `answer` and `dead`,
//! Alice forwards a local port to each): all set up before any clock starts.
//!
//! - `forward.tcp_MBps`: a TCP client writes `scale.forward_bytes` (1 GiB in the full bench,
//!   64 MiB in the quick one) through the `sink` forwarding and shuts its write side; Bob's
//!   sink reads to the end and answers with the count. From the client's connect to the
//!   answer read.
//! - `forward.connect_ms`: a TCP connect to the `answer` forwarding, whose service writes one
//!   byte as soon as it accepts: from the connect to that byte read, median of
//!   [`CONNECTS`] connections one after another.
//! - `forward.refused_ms`: a TCP connect to the `dead` forwarding, whose target does not
//!   listen: from the connect to the client's connection closed, median of [`CONNECTS`].

use super::friend::{befriend, dht_config, start_node, stop_node};
use super::scratch::Scratch;
use super::{transfer, Joint, Runs, Scale};
use carrier_forward::{Allowed, ForwardConfig, Forwarder, Forwarding};
use carrier_friend::dht::{BootstrapNode, Dht};
use carrier_msg::{Messenger, MessengerConfig};
use carrier_mux::stream::{SessionConfig, Sessions};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The measurement behind the `forward.` figures: fresh nodes each run, so it is expensive
/// (no warm-up).
pub(crate) const FORWARD: Joint = Joint {
    name: "forward",
    runs: Runs::Expensive { full: 5 },
    measure: |scale, _| measure(scale),
};

/// Connections timed one after another for `forward.connect_ms` and `forward.refused_ms`.
pub(crate) const CONNECTS: usize = 50;

/// How long any one setup step may take: a bound on a hung run, not a speed assertion.
const PATIENCE: Duration = Duration::from_secs(60);

/// The client's and the sink's buffer.
const BUFFER_BYTES: usize = 256 * 1024;

fn ip(n: u8) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(127, 92, n, 1), 0))
}

fn any_local() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

/// A node's layers above the friend layer.
struct Upper {
    messenger: Messenger,
    sessions: Sessions,
    forwarder: Forwarder,
}

async fn upper(friends: &carrier_friend::Friends) -> Result<Upper, String> {
    let (messenger, _) = Messenger::start(friends.clone(), MessengerConfig::default())
        .await
        .map_err(|e| format!("the messenger cannot start: {e}"))?;
    let sessions = Sessions::start(friends, &messenger, SessionConfig::default())
        .await
        .map_err(|e| format!("the sessions cannot start: {e}"))?;
    let (forwarder, _) = Forwarder::start(&sessions, ForwardConfig::default())
        .map_err(|e| format!("the forwarder cannot start: {e}"))?;
    Ok(Upper {
        messenger,
        sessions,
        forwarder,
    })
}

impl Upper {
    async fn stop(self) {
        self.forwarder.shutdown().await;
        self.sessions.shutdown().await;
        self.messenger.shutdown().await;
    }
}

/// A service on loopback that reads each connection to its end and answers with the count
/// (8 bytes, little-endian).
async fn sink() -> Result<SocketAddr, String> {
    let listener = TcpListener::bind(any_local())
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; BUFFER_BYTES];
                let mut total = 0u64;
                while let Ok(n) = tcp.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    total += n as u64;
                }
                let _ = tcp.write_all(&total.to_le_bytes()).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    Ok(addr)
}

/// A service on loopback that writes one byte as soon as it accepts a connection.
async fn answer() -> Result<SocketAddr, String> {
    let listener = TcpListener::bind(any_local())
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let _ = tcp.write_all(b"!").await;
                let mut rest = Vec::new();
                let _ = tcp.read_to_end(&mut rest).await;
            });
        }
    });
    Ok(addr)
}

/// A loopback address nothing listens on.
async fn dead() -> Result<SocketAddr, String> {
    let listener = TcpListener::bind(any_local())
        .await
        .map_err(|e| e.to_string())?;
    listener.local_addr().map_err(|e| e.to_string())
}

/// `bytes` through `forwarding` to the sink: MB/s from the connect to the sink's answer.
async fn transfer_through(forwarding: &Forwarding, bytes: u64) -> Result<f64, String> {
    let data = vec![0x5au8; BUFFER_BYTES];
    let started = Instant::now();
    let mut tcp = TcpStream::connect(forwarding.local_addr())
        .await
        .map_err(|e| e.to_string())?;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(data.len() as u64) as usize;
        tcp.write_all(&data[..n])
            .await
            .map_err(|e| format!("the transfer failed: {e}"))?;
        left -= n as u64;
    }
    tcp.shutdown().await.map_err(|e| e.to_string())?;
    let mut count = [0u8; 8];
    tcp.read_exact(&mut count)
        .await
        .map_err(|e| format!("no answer from the sink: {e}"))?;
    let elapsed = started.elapsed();
    let got = u64::from_le_bytes(count);
    if got != bytes {
        return Err(format!("the sink read {got} bytes of {bytes}"));
    }
    Ok(bytes as f64 / elapsed.as_secs_f64() / 1e6)
}

/// Milliseconds from a connect to `local` to the first byte read, or (with `closed`) to the
/// connection's end.
async fn time_connect(local: SocketAddr, closed: bool) -> Result<f64, String> {
    let started = Instant::now();
    let mut tcp = TcpStream::connect(local).await.map_err(|e| e.to_string())?;
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(PATIENCE, tcp.read(&mut byte))
        .await
        .map_err(|_| "the connection neither answered nor closed".to_string())?;
    let elapsed = started.elapsed();
    match (read, closed) {
        (Ok(1), false) | (Ok(0) | Err(_), true) => Ok(elapsed.as_secs_f64() * 1000.0),
        (read, _) => Err(format!("unexpected read {read:?}")),
    }
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// One run: every `forward.` figure.
fn measure(scale: &Scale) -> Result<Vec<(&'static str, f64)>, String> {
    let bytes = scale.forward_bytes;
    transfer::on_runtime_within(Duration::from_secs(600), async move {
        let dirs = [
            Scratch::new("seed")?,
            Scratch::new("alice")?,
            Scratch::new("bob")?,
        ];
        let seed = Dht::bind(dht_config(ip(1), dirs[0].path(), None))
            .await
            .map_err(|e| format!("the bootstrap node cannot start: {e}"))?;
        let contact = BootstrapNode::new(seed.id(), seed.local_addr());
        let (alice_dht, alice, mut alice_events) =
            start_node(ip(2), dirs[1].path().to_path_buf(), Some(contact.clone())).await?;
        let (bob_dht, bob, mut bob_events) =
            start_node(ip(3), dirs[2].path().to_path_buf(), Some(contact)).await?;
        befriend(
            (&alice, &mut alice_events),
            (&bob, &mut bob_events),
            PATIENCE,
        )
        .await?;
        let at_alice = upper(&alice).await?;
        let at_bob = upper(&bob).await?;
        for (name, target) in [
            ("sink", sink().await?),
            ("answer", answer().await?),
            ("dead", dead().await?),
        ] {
            at_bob
                .forwarder
                .serve(name, &target.to_string(), Allowed::Everyone)
                .map_err(|e| e.to_string())?;
        }
        let mut forwardings = Vec::new();
        for name in ["sink", "answer", "dead"] {
            let forwarding = tokio::time::timeout(
                PATIENCE,
                at_alice.forwarder.forward(&bob.id(), name, any_local()),
            )
            .await
            .map_err(|_| "the forwarding did not open".to_string())?
            .map_err(|e| format!("the forwarding failed: {e}"))?;
            forwardings.push(forwarding);
        }

        let mbps = transfer_through(&forwardings[0], bytes).await?;
        let mut connects = Vec::with_capacity(CONNECTS);
        let mut refusals = Vec::with_capacity(CONNECTS);
        for _ in 0..CONNECTS {
            connects.push(time_connect(forwardings[1].local_addr(), false).await?);
            refusals.push(time_connect(forwardings[2].local_addr(), true).await?);
        }

        drop(forwardings);
        at_alice.stop().await;
        at_bob.stop().await;
        stop_node(alice_dht, alice).await;
        stop_node(bob_dht, bob).await;
        let _ = seed.shutdown().await;
        Ok(vec![
            ("forward.tcp_MBps", mbps),
            ("forward.connect_ms", median(connects)),
            ("forward.refused_ms", median(refusals)),
        ])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The harness on a small transfer: every figure comes out, finite and positive.
    #[test]
    fn a_small_run_gives_every_figure() {
        let scale = Scale {
            forward_bytes: 1 << 20,
            ..crate::bench::Mode::Quick.scale()
        };
        let figures = measure(&scale).unwrap();
        let names: Vec<&str> = figures.iter().map(|(name, _)| *name).collect();
        assert_eq!(
            names,
            [
                "forward.tcp_MBps",
                "forward.connect_ms",
                "forward.refused_ms"
            ]
        );
        assert!(
            figures.iter().all(|(_, v)| v.is_finite() && *v > 0.0),
            "{figures:?}"
        );
    }
}
