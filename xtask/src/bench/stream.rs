//! The session and stream figures (issue 17): carrier-stream's [`Sessions`] between two
//! friends' nodes on loopback, each a DHT, a friend layer, a messenger and a sessions layer
//! with default settings (what users run), beside a bootstrap node, their data under
//! `target/bench/scratch/`.
//!
//! - `stream.reliable_MBps`: one reliable stream of a session, opened before the clock,
//!   carries `scale.transfer_bytes` (1 GiB in the full bench; the quick bench moves
//!   [`QUICK_STREAM_BYTES`], not the baselines' 8 MiB, so a run is more than its start) from
//!   Alice to Bob through [`transfer::timed`], the code that times every transfer baseline.
//!   Baseline: `quinn.raw_MBps`.
//! - `stream.datagram_MBps` and `stream.datagram_loss` (one joint measurement,
//!   `stream.datagram`): Alice sends datagrams of [`MAX_DATAGRAM_BYTES`] on one datagram
//!   stream as fast as `send` returns for [`datagram_window`] (5 s; 1 s in the quick bench);
//!   Bob counts what arrives. The rate is the payload bytes Bob received over the time from
//!   the first send to the last arrival; the loss is the fraction of sent datagrams that never
//!   arrived (on loopback nothing is lost on the wire: what is lost was dropped by a full
//!   queue, the link's or the stream's).
//! - `session.open_ms`: friends already linked, from Alice's `request` to both sides holding
//!   a connected stream (Alice's `add_stream` returned, Bob's handler accepted the session and
//!   took the stream); the median over [`opens`] sessions (250; 10 in the quick bench), each
//!   closed before the next.
//!
//! Each run starts fresh nodes with fresh identities; starting them, the friendship and the
//! link are outside every clock.

use super::friend::{befriend, dht_config, start_node, stop_node};
use super::latency::percentile_us;
use super::scratch::Scratch;
use super::{transfer, Joint, Runs, Scale};
use carrier_friend::dht::id::CarrierId;
use carrier_friend::dht::{BootstrapNode, Dht};
use carrier_friend::{FriendEvents, Friends};
use carrier_msg::{Messenger, MessengerConfig};
use carrier_stream::{
    Session, SessionConfig, SessionRequests, Sessions, Stream, StreamError, StreamKind, StreamMode,
    MAX_DATAGRAM_BYTES,
};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The bytes `stream.reliable_MBps` moves in the quick bench: 64 MiB.
pub(crate) const QUICK_STREAM_BYTES: u64 = 64 << 20;

/// The bytes the full bench's transfers move: what tells the full bench from the quick one
/// at a [`Scale`].
const FULL_TRANSFER_BYTES: u64 = 1 << 30;

/// The measurement behind `stream.datagram_MBps` and `stream.datagram_loss`.
pub(crate) const DATAGRAMS: Joint = Joint {
    name: "stream.datagram",
    runs: Runs::Timed,
    measure: measure_datagrams,
};

/// The bundle every session of these figures is requested for.
const BUNDLE: &str = "bench";

/// How long any one expected step may take: a bound on a hung run, not a speed assertion.
const PATIENCE: Duration = Duration::from_secs(60);

/// How long Bob waits for one more datagram once Alice stopped sending: longer than any
/// datagram spends in flight and in queues on loopback.
const DATAGRAM_DRAIN: Duration = Duration::from_millis(300);

/// How long Alice sends datagrams in one run.
pub(crate) fn datagram_window(scale: &Scale) -> Duration {
    if scale.transfer_bytes >= FULL_TRANSFER_BYTES {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(1)
    }
}

/// The bytes `stream.reliable_MBps` moves in one run.
fn stream_bytes(scale: &Scale) -> u64 {
    scale.transfer_bytes.max(QUICK_STREAM_BYTES)
}

/// How many sessions one run of `session.open_ms` opens.
pub(crate) fn opens(scale: &Scale) -> usize {
    (scale.round_trips / 20).clamp(5, 250)
}

/// Node `n` of these figures: 127.94.`n`.1, any port (a /24 of its own).
fn ip(n: u8) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(127, 94, n, 1), 0))
}

/// A friend's node with its sessions layer.
struct Node {
    dht: Dht,
    friends: Friends,
    friend_events: FriendEvents,
    messenger: Messenger,
    sessions: Sessions,
}

impl Node {
    async fn start(
        bind: SocketAddr,
        dir: &Scratch,
        contact: &BootstrapNode,
    ) -> Result<Self, String> {
        let (dht, friends, friend_events) =
            start_node(bind, dir.path().to_path_buf(), Some(contact.clone())).await?;
        let (messenger, _events) = Messenger::start(friends.clone(), MessengerConfig::default())
            .await
            .map_err(|e| format!("the messenger cannot start: {e}"))?;
        let sessions = Sessions::start(&friends, &messenger, SessionConfig::default())
            .await
            .map_err(|e| format!("the sessions layer cannot start: {e}"))?;
        Ok(Self {
            dht,
            friends,
            friend_events,
            messenger,
            sessions,
        })
    }

    fn id(&self) -> CarrierId {
        self.friends.id()
    }

    async fn stop(self) {
        self.sessions.shutdown().await;
        drop(self.sessions);
        self.messenger.shutdown().await;
        drop(self.messenger);
        stop_node(self.dht, self.friends).await;
    }
}

/// Alice and Bob, friends and linked, a bootstrap node beside them; Bob takes every session
/// of [`BUNDLE`] through `requests`.
struct Pair {
    seed: Dht,
    alice: Node,
    bob: Node,
    requests: SessionRequests,
    _dirs: [Scratch; 3],
}

impl Pair {
    async fn start() -> Result<Self, String> {
        let dirs = [
            Scratch::new("stream-seed")?,
            Scratch::new("stream-alice")?,
            Scratch::new("stream-bob")?,
        ];
        let seed = Dht::bind(dht_config(ip(0), dirs[0].path(), None))
            .await
            .map_err(|e| format!("the bootstrap node cannot start: {e}"))?;
        let contact = BootstrapNode::new(seed.id(), seed.local_addr());
        let mut alice = Node::start(ip(1), &dirs[1], &contact).await?;
        let mut bob = Node::start(ip(2), &dirs[2], &contact).await?;
        befriend(
            (&alice.friends, &mut alice.friend_events),
            (&bob.friends, &mut bob.friend_events),
            PATIENCE,
        )
        .await?;
        let requests = bob
            .sessions
            .handle(BUNDLE)
            .map_err(|e| format!("Bob cannot take sessions: {e}"))?;
        Ok(Self {
            seed,
            alice,
            bob,
            requests,
            _dirs: dirs,
        })
    }

    /// A session from Alice to Bob and one stream of it in `mode`, at both ends:
    /// ((Alice's session, stream), (Bob's session, stream)).
    async fn stream(
        &mut self,
        mode: StreamMode,
    ) -> Result<((Session, Stream), (Session, Stream)), String> {
        let sessions = self.alice.sessions.clone();
        let bob = self.bob.id();
        let opening = tokio::spawn(async move {
            let session = sessions.request(&bob, BUNDLE).await?;
            let stream = session.add_stream(StreamKind::Application, mode).await?;
            Ok::<_, StreamError>((session, stream))
        });
        let taken = within("Bob's end", take(&mut self.requests)).await??;
        let at_alice = within("Alice's end", opening)
            .await?
            .map_err(|e| format!("the opening task failed: {e}"))?
            .map_err(|e| format!("Alice cannot open: {e}"))?;
        Ok((at_alice, taken))
    }

    async fn stop(self) {
        drop(self.requests);
        self.alice.stop().await;
        self.bob.stop().await;
        let _ = self.seed.shutdown().await;
    }
}

/// Bob's next session and its first stream.
async fn take(requests: &mut SessionRequests) -> Result<(Session, Stream), String> {
    let request = requests
        .recv()
        .await
        .ok_or("Bob's sessions layer stopped")?;
    let session = request
        .accept()
        .await
        .map_err(|e| format!("Bob cannot accept: {e}"))?;
    let stream = session
        .accept_stream()
        .await
        .ok_or("the session closed before its stream came")?;
    Ok((session, stream))
}

/// `future` within [`PATIENCE`], or an error naming `what`.
async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(PATIENCE, future)
        .await
        .map_err(|_| format!("{what}: nothing within {PATIENCE:?}"))
}

/// `stream.reliable_MBps`: one run; returns MB/s.
pub(crate) fn measure_reliable(scale: &Scale) -> Result<f64, String> {
    let total_bytes = stream_bytes(scale);
    transfer::on_runtime(async move {
        let mut pair = Pair::start().await?;
        let ((at_alice, sending), (at_bob, receiving)) = pair.stream(StreamMode::Reliable).await?;
        let mbps =
            transfer::timed(total_bytes, async { Ok(sending) }, async { Ok(receiving) }).await;
        drop((at_alice, at_bob));
        pair.stop().await;
        mbps
    })
}

/// `stream.datagram`: one run; returns the received rate (MB/s) and the fraction lost.
fn measure_datagrams(scale: &Scale, _run: usize) -> Result<Vec<(&'static str, f64)>, String> {
    let window = datagram_window(scale);
    transfer::on_runtime(async move {
        let mut pair = Pair::start().await?;
        let ((at_alice, mut sending), (at_bob, mut receiving)) =
            pair.stream(StreamMode::Datagram).await?;
        let received = Arc::new(AtomicU64::new(0));
        let counted = received.clone();
        let started = Instant::now();
        // Bob counts until nothing came for DATAGRAM_DRAIN after Alice's last send, and
        // notes when the last one came.
        let sent_all = Arc::new(tokio::sync::Notify::new());
        let done = sent_all.clone();
        let receiver = tokio::spawn(async move {
            let mut last = started;
            let mut sender_done = std::pin::pin!(done.notified());
            let mut finished = false;
            loop {
                let next = async {
                    if finished {
                        tokio::time::timeout(DATAGRAM_DRAIN, receiving.recv())
                            .await
                            .ok()
                    } else {
                        Some(receiving.recv().await)
                    }
                };
                tokio::select! {
                    got = next => match got {
                        Some(Ok(Some(datagram))) => {
                            if datagram.len() != MAX_DATAGRAM_BYTES {
                                return Err(format!("a datagram of {} bytes", datagram.len()));
                            }
                            counted.fetch_add(1, Ordering::Relaxed);
                            last = Instant::now();
                        }
                        Some(Ok(None)) | None => break,
                        Some(Err(e)) => return Err(format!("Bob's receive failed: {e}")),
                    },
                    () = &mut sender_done, if !finished => finished = true,
                }
            }
            Ok::<_, String>((last.duration_since(started), receiving))
        });
        let payload: Vec<u8> = (0..MAX_DATAGRAM_BYTES).map(|i| (i % 251) as u8).collect();
        let mut sent = 0u64;
        while started.elapsed() < window {
            sending
                .send(&payload)
                .await
                .map_err(|e| format!("a datagram send failed: {e}"))?;
            sent += 1;
        }
        sent_all.notify_one();
        let (elapsed, receiving) = within("Bob's count", receiver)
            .await?
            .map_err(|e| format!("the receiving task failed: {e}"))??;
        let received = received.load(Ordering::Relaxed);
        let dropped = receiving.dropped_datagrams();
        eprintln!(
            "bench: stream.datagram: {sent} sent, {received} received, {dropped} dropped by the \
             stream's queue"
        );
        drop((sending, receiving, at_alice, at_bob));
        pair.stop().await;
        if sent == 0 || received == 0 {
            return Err(format!("{sent} sent, {received} received"));
        }
        let bytes = received as f64 * MAX_DATAGRAM_BYTES as f64;
        let mbps = bytes / elapsed.as_secs_f64().max(f64::MIN_POSITIVE) / 1e6;
        let loss = 1.0 - received as f64 / sent as f64;
        Ok(vec![
            ("stream.datagram_MBps", mbps),
            ("stream.datagram_loss", loss),
        ])
    })
}

/// `session.open_ms`: one run; returns the median of request-to-both-connected in ms.
pub(crate) fn measure_open(scale: &Scale) -> Result<f64, String> {
    let count = opens(scale);
    let samples = transfer::on_runtime(async move {
        let mut pair = Pair::start().await?;
        let mut samples = Vec::with_capacity(count);
        for _ in 0..count {
            let started = Instant::now();
            let ((at_alice, mine), (at_bob, theirs)) = pair.stream(StreamMode::Reliable).await?;
            // Both ends exist once `stream` returned: Alice's open resolved and Bob took it.
            samples.push(started.elapsed());
            drop((mine, theirs));
            at_alice
                .close("the figure is measured")
                .await
                .map_err(|e| format!("the session did not close: {e}"))?;
            drop(at_bob);
        }
        pair.stop().await;
        Ok(samples)
    })?;
    Ok(percentile_us(&samples, 0.50)? / 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every stream figure end to end on small sizes: a setup bug fails here, in
    /// `cargo test`, before anyone runs the bench.
    #[test]
    fn the_stream_figures_measure() {
        let scale = crate::bench::Mode::Quick.scale();
        assert_eq!(stream_bytes(&scale), QUICK_STREAM_BYTES);
        assert_eq!(datagram_window(&scale), Duration::from_secs(1));
        let full = crate::bench::Mode::Full.scale();
        assert_eq!(stream_bytes(&full), 1 << 30);
        assert_eq!(datagram_window(&full), Duration::from_secs(5));
        assert!(opens(&scale) < opens(&full));

        let small = Scale {
            transfer_bytes: 1 << 20,
            round_trips: 100,
            ..scale
        };
        assert!(measure_reliable(&small).unwrap() > 0.0);
        let datagrams = measure_datagrams(&small, 0).unwrap();
        assert!(datagrams[0].1 > 0.0, "{datagrams:?}");
        assert!((0.0..1.0).contains(&datagrams[1].1), "{datagrams:?}");
        assert!(measure_open(&small).unwrap() > 0.0);
    }
}
