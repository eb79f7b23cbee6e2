//! Forwardings between friends' nodes on loopback: an echo with half-close, a service that
//! is not listening, a service offered to one friend only, a withdrawn service's open
//! connections, the typed errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use carrier_forward::mux::stream::msg::friend::dht::id::Keypair;
use carrier_forward::{Allowed, ForwardError, ForwardEvent, Side};
use common::{
    any_local, befriend, closed_without_answer, dead_address, echo_service, friends, net, pattern,
    round_trip, within,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How soon a refused connection must be closed: generous (the time itself is a bench
/// figure, `forward.refused_ms`), far below any timeout in the path.
const PROMPTLY: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echo_through_a_forwarding_honours_half_close_and_counts_bytes() {
    let (_net, mut alice, mut bob) = friends(70, 0).await;
    let echo = echo_service().await;
    bob.forwarder
        .serve("echo", &echo.to_string(), Allowed::Everyone)
        .unwrap();
    let forwarding = within(
        "the forwarding",
        alice.forwarder.forward(&bob.id(), "echo", any_local()),
    )
    .await
    .unwrap();
    assert_eq!(forwarding.service().as_str(), "echo");
    assert_eq!(forwarding.friend(), bob.id());

    // The client shuts its write side after 1 MiB and still reads all of it back.
    let data = pattern(1, 1 << 20);
    let answer = within("the echo", round_trip(forwarding.local_addr(), &data)).await;
    assert_eq!(answer.len(), data.len());
    assert!(answer == data, "the echo differs");

    // A connection held open is listed with what it carried so far.
    let mut tcp = TcpStream::connect(forwarding.local_addr()).await.unwrap();
    tcp.write_all(b"ping").await.unwrap();
    let mut back = [0u8; 4];
    within("the ping", tcp.read_exact(&mut back)).await.unwrap();
    assert_eq!(&back, b"ping");
    // The relay counts a write once it returned, which may be just after the client read.
    let listed = within("the ping's counts", async {
        loop {
            let listed = forwarding.connections();
            if listed.len() == 1 && (listed[0].bytes_in, listed[0].bytes_out) == (4, 4) {
                return listed;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(listed[0].peer, tcp.local_addr().unwrap());
    drop(tcp);

    // Both sides reported both connections with their bytes, in whichever order their
    // relays ended.
    for (node, side) in [(&mut alice, Side::Forwarding), (&mut bob, Side::Serving)] {
        let mut closed = Vec::new();
        while closed.len() < 2 {
            let event = node
                .until_event(|e| matches!(e, ForwardEvent::Closed { side: s, .. } if *s == side))
                .await;
            let ForwardEvent::Closed {
                bytes_in,
                bytes_out,
                error,
                ..
            } = event
            else {
                unreachable!()
            };
            closed.push((bytes_in, bytes_out, error));
        }
        closed.sort();
        assert_eq!(closed, [(4, 4, None), (1 << 20, 1 << 20, None)], "{side:?}");
    }
    within("the held connection's end", async {
        while !forwarding.connections().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_is_not_listening_closes_the_client_promptly() {
    let (_net, mut alice, mut bob) = friends(70, 20).await;
    let dead = dead_address().await;
    bob.forwarder
        .serve("dead", &dead.to_string(), Allowed::Everyone)
        .unwrap();
    let forwarding = within(
        "the forwarding",
        alice.forwarder.forward(&bob.id(), "dead", any_local()),
    )
    .await
    .unwrap();
    let started = Instant::now();
    let mut tcp = TcpStream::connect(forwarding.local_addr()).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(PROMPTLY, tcp.read(&mut buf))
        .await
        .expect("the refused connection was not closed promptly");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(started.elapsed() < PROMPTLY);
    let refused = alice
        .until_event(|e| matches!(e, ForwardEvent::Refused { .. }))
        .await;
    assert!(
        matches!(&refused, ForwardEvent::Refused { service, reason, .. }
            if service == "dead" && reason.contains("unreachable")),
        "{refused:?}"
    );
    let unreachable = bob
        .until_event(|e| matches!(e, ForwardEvent::Unreachable { .. }))
        .await;
    assert!(
        matches!(&unreachable, ForwardEvent::Unreachable { target, .. } if *target == dead.to_string()),
        "{unreachable:?}"
    );
    assert!(forwarding.connections().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_offered_to_alice_only_is_refused_to_bob_as_an_unknown_one_is() {
    let net = net(70, 40).await;
    let mut alice = net.node([127, 70, 50, 1], "alice").await;
    let mut bob = net.node([127, 70, 51, 1], "bob").await;
    let mut carol = net.node([127, 70, 52, 1], "carol").await;
    befriend(&mut alice, &mut carol).await;
    befriend(&mut bob, &mut carol).await;
    let echo = echo_service().await;
    carol
        .forwarder
        .serve(
            "private",
            &echo.to_string(),
            Allowed::Only(vec![alice.id()]),
        )
        .unwrap();

    let at_alice = within(
        "Alice's forwarding",
        alice.forwarder.forward(&carol.id(), "private", any_local()),
    )
    .await
    .unwrap();
    assert_eq!(
        within("Alice's echo", round_trip(at_alice.local_addr(), b"hi")).await,
        b"hi"
    );

    let mut reasons = Vec::new();
    for service in ["private", "nonexistent"] {
        let at_bob = within(
            "Bob's forwarding",
            bob.forwarder.forward(&carol.id(), service, any_local()),
        )
        .await
        .unwrap();
        assert!(
            within(
                "Bob's refusal",
                closed_without_answer(at_bob.local_addr(), b"hi")
            )
            .await,
            "Bob got an answer"
        );
        let refused = bob
            .until_event(|e| matches!(e, ForwardEvent::Refused { .. }))
            .await;
        let ForwardEvent::Refused { reason, .. } = refused else {
            unreachable!()
        };
        reasons.push(reason);
        let denied = carol
            .until_event(|e| matches!(e, ForwardEvent::Denied { .. }))
            .await;
        assert_eq!(
            denied,
            ForwardEvent::Denied {
                friend: bob.id(),
                service: service.into()
            }
        );
    }
    assert_eq!(reasons[0], reasons[1], "the same refusal for both");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unserve_keeps_open_connections_and_refuses_new_ones() {
    let (_net, mut alice, bob) = friends(70, 60).await;
    let echo = echo_service().await;
    bob.forwarder
        .serve("echo", &echo.to_string(), Allowed::Everyone)
        .unwrap();
    assert_eq!(bob.forwarder.services().len(), 1);
    let forwarding = within(
        "the forwarding",
        alice.forwarder.forward(&bob.id(), "echo", any_local()),
    )
    .await
    .unwrap();
    let mut open = TcpStream::connect(forwarding.local_addr()).await.unwrap();
    open.write_all(b"before").await.unwrap();
    let mut buf = [0u8; 6];
    within("the first echo", open.read_exact(&mut buf))
        .await
        .unwrap();

    bob.forwarder.unserve("echo").unwrap();
    assert!(bob.forwarder.services().is_empty());
    assert_eq!(
        bob.forwarder.unserve("echo"),
        Err(ForwardError::UnknownService("echo".into()))
    );

    // The open connection still carries bytes both ways.
    open.write_all(b"after!").await.unwrap();
    within("the echo after unserve", open.read_exact(&mut buf))
        .await
        .unwrap();
    assert_eq!(&buf, b"after!");
    // A new one is refused.
    assert!(
        within(
            "the refusal",
            closed_without_answer(forwarding.local_addr(), b"x")
        )
        .await
    );
    alice
        .until_event(|e| matches!(e, ForwardEvent::Refused { .. }))
        .await;
    assert_eq!(forwarding.connections().len(), 1);

    // A closed forwarding stops listening, and says so when closed twice.
    forwarding.close().await.unwrap();
    assert!(matches!(
        forwarding.close().await,
        Err(ForwardError::WrongState(_))
    ));
    assert!(TcpStream::connect(forwarding.local_addr()).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_failure_is_its_own_error() {
    let (_net, alice, bob) = friends(70, 80).await;
    let stranger = Keypair::generate().id();
    assert_eq!(
        within(
            "a stranger",
            alice.forwarder.forward(&stranger, "echo", any_local())
        )
        .await
        .unwrap_err(),
        ForwardError::UnknownFriend(stranger)
    );
    assert!(matches!(
        alice
            .forwarder
            .forward(&bob.id(), "no spaces", any_local())
            .await,
        Err(ForwardError::InvalidName(_))
    ));
    assert!(matches!(
        alice.forwarder.serve("web", "nowhere", Allowed::Everyone),
        Err(ForwardError::InvalidTarget(_))
    ));
    let taken = within(
        "the first forwarding",
        alice.forwarder.forward(&bob.id(), "echo", any_local()),
    )
    .await
    .unwrap();
    assert_eq!(
        within(
            "the second",
            alice
                .forwarder
                .forward(&bob.id(), "echo", taken.local_addr())
        )
        .await
        .unwrap_err(),
        ForwardError::AddressInUse(taken.local_addr())
    );
    // The bundle has its handler: a second forwarder on the same sessions is refused.
    assert!(matches!(
        carrier_forward::Forwarder::start(&alice.sessions, Default::default()),
        Err(ForwardError::WrongState(_))
    ));
    // Shut down, the forwarder opens nothing more.
    within("the shutdown", alice.forwarder.shutdown()).await;
    assert!(matches!(
        alice
            .forwarder
            .forward(&bob.id(), "echo", any_local())
            .await,
        Err(ForwardError::WrongState(_))
    ));
}

/// A friend whose link was replaced opens a new multiplexed stream on its forwarding session
/// while the old one may still be winding down here: the new one is served at once, not
/// after the old one ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_multiplexed_stream_on_a_session_is_served_while_the_first_is_open() {
    use carrier_forward::mux::{Mux, MuxConfig};
    use carrier_forward::FORWARD_BUNDLE;

    let (_net, alice, bob) = friends(70, 100).await;
    let echo = echo_service().await;
    bob.forwarder
        .serve("echo", &echo.to_string(), Allowed::Everyone)
        .unwrap();
    let session = within(
        "the session",
        alice.sessions.request(&bob.id(), FORWARD_BUNDLE),
    )
    .await
    .unwrap();
    let (first, _) = within("the first mux", Mux::open(&session, MuxConfig::default()))
        .await
        .unwrap();
    let mut held = within("a channel on the first", first.open_channel(b"echo"))
        .await
        .unwrap();
    let (second, _) = within("the second mux", Mux::open(&session, MuxConfig::default()))
        .await
        .unwrap();
    // Well within the mux's open timeout, which is what it would take otherwise.
    let mut channel = tokio::time::timeout(PROMPTLY, second.open_channel(b"echo"))
        .await
        .expect("a channel on the second mux was not answered while the first is open")
        .unwrap();
    channel.write_all(b"second").await.unwrap();
    let mut buf = [0u8; 6];
    within("the echo on the second", channel.read_exact(&mut buf))
        .await
        .unwrap();
    assert_eq!(&buf, b"second");
    held.write_all(b"first!").await.unwrap();
    within("the echo on the first", held.read_exact(&mut buf))
        .await
        .unwrap();
    assert_eq!(&buf, b"first!");
}
