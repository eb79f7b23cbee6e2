//! `carrier demo`: a whole Carrier network on this machine, and two friends using every
//! layer of it.
//!
//! Every node binds its own UDP socket on 127.0.0.1, so everything runs through the real
//! stack: DHT packets, QUIC links with TLS 1.3, the durable outbox, the data directories,
//! sessions, streams, channels and forwarding. Nothing is sent anywhere else.
//!
//! # Rooms
//!
//! - `steps`: how a step runs (bounded in time, printed, named when it fails).
//! - `network`: the DHT nodes; `person`: a friend's node and the events waited for on it.
//! - `friends`: meeting, linking, presence, a message, an invite.
//! - `offline`: Alice offline and back, what waited for her.
//! - `session`: the session the next steps share.
//! - `reliable`: 64 MiB on a reliable stream; `pattern`: the bytes it checks.
//! - `datagrams`: a burst on a datagram stream.
//! - `channels`: channels on a multiplexed stream, echoed and refused.
//! - `forward`: a port forward to Bob's web server (`web`).
//! - `task`: work beside a step that ends with it.

mod channels;
mod datagrams;
mod forward;
mod friends;
mod network;
mod offline;
mod pattern;
mod person;
mod reliable;
mod session;
mod steps;
mod task;
mod web;

use std::path::Path;
use std::time::Instant;

use network::Network;
use person::Person;
use steps::{attempt, Error, Failed};

/// What every step works with: the two friends and when the demo started.
struct Demo {
    started: Instant,
    alice: Person,
    bob: Person,
}

/// Runs the demo with `servers` DHT nodes besides the friends'. Whatever happens, every node
/// it started is stopped before it returns.
pub(crate) async fn run(servers: u8) -> Result<(), Failed> {
    let started = Instant::now();
    let dir = attempt("temporary data directories", async {
        Ok(tempfile::tempdir()?)
    })
    .await?;
    println!("Carrier demo: a network on this machine (127.0.0.1), real UDP and QUIC.\n");

    let network = attempt("a DHT network", Network::start(servers)).await?;
    steps::step(
        started,
        &format!(
            "{} DHT nodes form a Kademlia network; the first is {}",
            network.len(),
            network.seed()
        ),
    );
    let mut demo = match attempt("Alice and Bob start", start(started, dir.path(), &network)).await
    {
        Ok(demo) => demo,
        Err(failed) => {
            network.shutdown().await;
            return Err(failed);
        }
    };
    let story = tell(&mut demo).await;
    if story.is_ok() {
        println!(
            "\nDone in {:.1} s. Stopping every node cleanly…",
            started.elapsed().as_secs_f64()
        );
    }
    let stopping = Instant::now();
    let (alice, bob) = tokio::join!(
        demo.alice.stop_within_drain_limit(),
        demo.bob.stop_within_drain_limit()
    );
    network.shutdown().await;
    if story.is_ok() {
        let lingering: Vec<&str> = [(alice, "Alice's"), (bob, "Bob's")]
            .into_iter()
            .filter(|(drained, _)| !drained)
            .map(|(_, whose)| whose)
            .collect();
        if lingering.is_empty() {
            println!("Stopped in {:.1} ms.", steps::ms(stopping));
        } else {
            println!(
                "Stopped in {:.1} ms ({} node still waited for a QUIC connection to drain; it \
                 ends with the program).",
                steps::ms(stopping),
                lingering.join(" and ")
            );
        }
    }
    story
}

/// Starts both friends' nodes on their directories under `dir`.
async fn start(started: Instant, dir: &Path, network: &Network) -> Result<Demo, Error> {
    let seed = network.seed();
    let mut alice = Person::start("alice", dir.join("alice"), seed.clone()).await?;
    let bob = match Person::start("bob", dir.join("bob"), seed).await {
        Ok(bob) => bob,
        Err(error) => {
            alice.stop().await;
            return Err(error);
        }
    };
    Ok(Demo {
        started,
        alice,
        bob,
    })
}

/// The story, a step at a time, each named for the failure it may end in.
async fn tell(demo: &mut Demo) -> Result<(), Failed> {
    attempt("Alice and Bob start", friends::introduce(demo)).await?;
    attempt("a friend request", friends::request(demo)).await?;
    attempt("the accept", friends::accept(demo)).await?;
    attempt("presence", friends::presence(demo)).await?;
    attempt("a message with a receipt", friends::message(demo)).await?;
    attempt("an invite", friends::invite(demo)).await?;
    let away = attempt("Alice offline", offline::away(demo)).await?;
    attempt("Alice back online", offline::back(demo, away)).await?;
    let session = attempt("a session with a reliable stream", async {
        let session = session::open(demo).await?;
        reliable::transfer(demo.started, &session).await?;
        Ok(session)
    })
    .await?;
    attempt(
        "a datagram stream",
        datagrams::burst(demo.started, &session),
    )
    .await?;
    attempt("channels", channels::echoes(demo.started, &session)).await?;
    attempt("a port forward", forward::fetch(demo)).await?;
    Ok(())
}
