//! The channel figure (issue 18): carrier-mux between two friends' nodes on loopback, each
//! with its data directory under `target/bench/scratch/` and default settings.
//!
//! - `mux.channels_open_ms`: a bootstrap node, Alice and Bob, friends and linked, a session
//!   and a mux between them. Alice opens `scale.mux_channels` channels at once (4,096 in the
//!   full bench, 512 in the quick one), each from its own task; Bob's application accepts each
//!   as it comes. From the first `open_channel` to the last one resolved (accepted).
//!
//! Each run starts fresh nodes; what is set up before the clock starts (nodes, friendship,
//! session, the multiplexed stream) is outside it.

use super::friend::{befriend, dht_config, start_node, stop_node};
use super::scratch::Scratch;
use super::{transfer, Joint, Runs, Scale};
use carrier_friend::dht::{BootstrapNode, Dht};
use carrier_msg::{Messenger, MessengerConfig};
use carrier_mux::stream::{SessionConfig, Sessions};
use carrier_mux::{Mux, MuxConfig};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// The measurement behind `mux.channels_open_ms`: each run starts fresh nodes, so it is
/// expensive (no warm-up).
pub(crate) const CHANNELS_OPEN: Joint = Joint {
    name: "mux.channels_open",
    runs: Runs::Expensive { full: 5 },
    measure: |scale, _| Ok(vec![("mux.channels_open_ms", measure_open(scale)?)]),
};

/// How long any one setup step may take: a bound on a hung run, not a speed assertion.
const PATIENCE: Duration = Duration::from_secs(60);

fn ip(n: u8) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(127, 91, n, 1), 0))
}

/// `mux.channels_open_ms`: one run.
fn measure_open(scale: &Scale) -> Result<f64, String> {
    let count = scale.mux_channels;
    transfer::on_runtime(async move {
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
        let start = |friends: carrier_friend::Friends| async move {
            let (messenger, _) = Messenger::start(friends.clone(), MessengerConfig::default())
                .await
                .map_err(|e| format!("the messenger cannot start: {e}"))?;
            let sessions = Sessions::start(&friends, &messenger, SessionConfig::default())
                .await
                .map_err(|e| format!("the sessions cannot start: {e}"))?;
            Ok::<_, String>((messenger, sessions))
        };
        let (alice_messenger, alice_sessions) = start(alice.clone()).await?;
        let (bob_messenger, bob_sessions) = start(bob.clone()).await?;
        let mut handler = bob_sessions
            .handle("")
            .map_err(|e| format!("no handler: {e}"))?;
        let bob_id = bob.id();
        let asked = tokio::spawn({
            let sessions = alice_sessions.clone();
            async move { sessions.request(&bob_id, "bench").await }
        });
        let request = tokio::time::timeout(PATIENCE, handler.recv())
            .await
            .map_err(|_| "no session request".to_string())?
            .ok_or("the handler ended")?;
        let at_bob = request
            .accept()
            .await
            .map_err(|e| format!("the accept failed: {e}"))?;
        let at_alice = asked
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("the session request failed: {e}"))?;
        let (mux, _) = Mux::open(&at_alice, MuxConfig::default())
            .await
            .map_err(|e| format!("the mux cannot open: {e}"))?;
        let stream = tokio::time::timeout(PATIENCE, at_bob.accept_stream())
            .await
            .map_err(|_| "no multiplexed stream".to_string())?
            .ok_or("the session closed")?;
        let (_bob_mux, mut requests) = Mux::accept(stream, MuxConfig::default())
            .map_err(|e| format!("the mux cannot be accepted: {e}"))?;
        // Bob accepts every channel and holds it until the run ends.
        let served = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Some(request) = requests.recv().await {
                if let Ok(channel) = request.accept().await {
                    held.push(channel);
                }
            }
            held.len()
        });

        let started = Instant::now();
        let mut opens = tokio::task::JoinSet::new();
        for i in 0..count {
            let mux = mux.clone();
            opens.spawn(async move { mux.open_channel(i.to_string().as_bytes()).await });
        }
        let mut channels = Vec::with_capacity(count);
        while let Some(opened) = opens.join_next().await {
            let channel = opened
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("a channel open failed: {e}"))?;
            channels.push(channel);
        }
        let elapsed = started.elapsed();

        drop(channels);
        drop(mux);
        served.abort();
        drop((at_alice, at_bob));
        alice_sessions.shutdown().await;
        bob_sessions.shutdown().await;
        alice_messenger.shutdown().await;
        bob_messenger.shutdown().await;
        stop_node(alice_dht, alice).await;
        stop_node(bob_dht, bob).await;
        let _ = seed.shutdown().await;
        Ok(elapsed.as_secs_f64() * 1000.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The harness on a few channels: every one opens and the figure is a duration.
    #[test]
    fn a_small_run_opens_every_channel() {
        let scale = Scale {
            mux_channels: 16,
            ..crate::bench::Mode::Quick.scale()
        };
        let ms = measure_open(&scale).unwrap();
        assert!(ms.is_finite() && ms > 0.0, "{ms}");
    }
}
