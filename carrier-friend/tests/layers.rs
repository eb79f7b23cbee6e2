//! The layer header on friend links: each upper layer receives only its own streams and
//! datagrams, and an unknown header is refused, not guessed.
#![allow(clippy::unwrap_used)] // Helpers outside #[test] functions unwrap too.

mod common;

use std::time::Duration;

use carrier_friend::extension::{codes, Extension, ExtensionRouter, Inbound, RouterStats};
use carrier_friend::{Accepted, Link};
use common::{node, Node};
use proptest::prelude::*;

/// Bounds every wait, so a broken route fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(20);

/// Alice dials Bob (who admits her); both ends of the link.
async fn linked() -> (Node, Node, Link, Link) {
    let alice = node(&[]).await;
    let bob = node(&[alice.id()]).await;
    let at_alice = alice.links.dial(bob.id(), bob.path()).await.unwrap();
    let at_bob = match tokio::time::timeout(PATIENCE, bob.links.accept()).await {
        Ok(Some(Accepted::Link(link))) => link,
        other => panic!("no link: {other:?}"),
    };
    (alice, bob, at_alice, at_bob)
}

async fn next(inbox: &mut carrier_friend::ExtensionInbox) -> Inbound {
    tokio::time::timeout(PATIENCE, inbox.recv())
        .await
        .expect("an inbound stream or datagram in time")
        .expect("the inbox is open")
}

/// Waits until the router's counters satisfy `done`.
async fn stats_until(router: &ExtensionRouter, done: impl Fn(&RouterStats) -> bool) -> RouterStats {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let stats = router.stats();
            if done(&stats) {
                return stats;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the router counted it in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_layers_streams_and_datagrams_reach_only_their_own_inbox() {
    let (alice, _bob, at_alice, at_bob) = linked().await;
    let router = ExtensionRouter::new();
    let mut msg = router.register(Extension::MSG).unwrap();
    let mut forward = router.register(Extension::FORWARD).unwrap();
    assert!(
        router.register(Extension::MSG).is_err(),
        "one inbox per layer"
    );
    let _serving = router.serve(at_bob);

    // A bidirectional stream for each layer, opened in the order that would mix them up if
    // routing went by arrival.
    let (mut to_forward, mut from_forward) = at_alice.open_bi(Extension::FORWARD).await.unwrap();
    to_forward.write_all(b"for forward").await.unwrap();
    to_forward.finish().unwrap();
    let (mut to_msg, _from_msg) = at_alice.open_bi(Extension::MSG).await.unwrap();
    to_msg.write_all(b"for msg").await.unwrap();
    to_msg.finish().unwrap();
    let mut uni = at_alice.open_uni(Extension::MSG).await.unwrap();
    uni.write_all(b"uni for msg").await.unwrap();
    uni.finish().unwrap();

    match next(&mut forward).await {
        Inbound::Bi {
            peer,
            mut send,
            mut recv,
        } => {
            assert_eq!(peer, alice.id());
            assert_eq!(recv.read_to_end(64).await.unwrap(), b"for forward");
            send.write_all(b"answer").await.unwrap();
            send.finish().unwrap();
        }
        other => panic!("forward got {other:?}"),
    }
    assert_eq!(from_forward.read_to_end(64).await.unwrap(), b"answer");

    let mut got = Vec::new();
    for _ in 0..2 {
        match next(&mut msg).await {
            Inbound::Bi { mut recv, .. } => got.push(recv.read_to_end(64).await.unwrap()),
            Inbound::Uni { peer, mut recv } => {
                assert_eq!(peer, alice.id());
                got.push(recv.read_to_end(64).await.unwrap())
            }
            other => panic!("msg got {other:?}"),
        }
    }
    got.sort();
    assert_eq!(got, vec![b"for msg".to_vec(), b"uni for msg".to_vec()]);

    // Datagrams too, header removed.
    assert!(at_alice.max_datagram_payload().unwrap() >= 1000);
    at_alice
        .send_datagram(Extension::FORWARD, b"dgram forward")
        .unwrap();
    at_alice
        .send_datagram(Extension::MSG, b"dgram msg")
        .unwrap();
    let forward_datagram = next(&mut forward).await;
    let msg_datagram = next(&mut msg).await;
    match (forward_datagram, msg_datagram) {
        (Inbound::Datagram { payload: f, peer }, Inbound::Datagram { payload: m, .. }) => {
            assert_eq!(peer, alice.id());
            assert_eq!(&f[..], b"dgram forward");
            assert_eq!(&m[..], b"dgram msg");
        }
        other => panic!("datagrams went astray: {other:?}"),
    }
    assert!(msg.layer() == Extension::MSG && forward.layer() == Extension::FORWARD);
    assert_eq!(router.stats(), RouterStats::default(), "nothing refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_headers_and_layers_without_an_inbox_are_refused() {
    let (_alice, _bob, at_alice, at_bob) = linked().await;
    let router = ExtensionRouter::new();
    let mut msg = router.register(Extension::MSG).unwrap();
    let _serving = router.serve(at_bob);
    let connection = at_alice.connection();

    // A stream whose header names no layer is stopped with UNKNOWN_EXTENSION.
    let mut raw = connection.open_uni().await.unwrap();
    raw.write_all(&[0x7f, 1, 2, 3]).await.unwrap();
    let stopped = tokio::time::timeout(PATIENCE, raw.stopped()).await.unwrap();
    assert_eq!(stopped.unwrap(), Some(codes::UNKNOWN_EXTENSION));

    // A bidirectional one is also reset towards us.
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    send.write_all(&[0]).await.unwrap();
    let read = tokio::time::timeout(PATIENCE, recv.read_to_end(64))
        .await
        .unwrap();
    match read {
        Err(carrier_friend::quinn::ReadToEndError::Read(
            carrier_friend::quinn::ReadError::Reset(code),
        )) => assert_eq!(code, codes::UNKNOWN_EXTENSION),
        other => panic!("an unknown header read back {other:?}"),
    }

    // A known layer that nobody registered is refused with NO_RECEIVER.
    let mut to_mux = at_alice.open_uni(Extension::MUX).await.unwrap();
    // The refusal may already be back before this write: then the write fails with it.
    let _ = to_mux.write_all(b"nobody listens").await;
    let stopped = tokio::time::timeout(PATIENCE, to_mux.stopped())
        .await
        .unwrap();
    assert_eq!(stopped.unwrap(), Some(codes::NO_RECEIVER));

    // Datagrams with an unknown header, or for a layer without an inbox, are dropped.
    connection
        .send_datagram(bytes::Bytes::from_static(&[0xee, 1]))
        .unwrap();
    at_alice
        .send_datagram(Extension::STREAM, b"nobody")
        .unwrap();
    let stats = stats_until(&router, |s| s.unknown_datagrams >= 1 && s.no_receiver >= 2).await;
    assert_eq!(stats.unknown_streams, 2);

    // The link still works for the layer that listens, and Msg saw none of the refused traffic.
    at_alice
        .send_datagram(Extension::MSG, b"still here")
        .unwrap();
    match next(&mut msg).await {
        Inbound::Datagram { payload, .. } => assert_eq!(&payload[..], b"still here"),
        other => panic!("msg got {other:?}"),
    }

    // A dropped inbox frees its layer: registering again works, and its traffic flows again.
    drop(msg);
    let mut msg = router.register(Extension::MSG).unwrap();
    at_alice.send_datagram(Extension::MSG, b"again").unwrap();
    match next(&mut msg).await {
        Inbound::Datagram { payload, .. } => assert_eq!(&payload[..], b"again"),
        other => panic!("msg got {other:?}"),
    }
}

proptest! {
    /// The header decoder takes any datagram: it names a known layer and the rest is the
    /// payload, or it is an error; it never panics.
    #[test]
    fn any_datagram_decodes_or_is_refused(datagram in proptest::collection::vec(any::<u8>(), 0..64)) {
        match Extension::split_datagram(&datagram) {
            Ok((layer, payload)) => {
                prop_assert_eq!(layer.byte(), datagram[0]);
                prop_assert_eq!(payload, &datagram[1..]);
            }
            Err(unknown) => prop_assert!(
                datagram.is_empty() || unknown.0 == datagram[0]
            ),
        }
    }
}
