//! When the link under a mux goes, every channel closes with a reason on both sides: an
//! event each, a blocked reader and a pended writer fail instead of hanging, and new opens
//! fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use carrier_mux::stream::msg::friend::close;
use carrier_mux::{ChannelId, CloseReason, Mux, MuxConfig, MuxError, MuxEvent};
use common::{muxed, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every channel's close reason, until `count` were seen.
async fn closed(mux: &Mux, count: usize) -> BTreeMap<ChannelId, CloseReason> {
    within("the close events", async {
        let mut seen = BTreeMap::new();
        while seen.len() < count {
            match mux.next_event().await {
                Some(MuxEvent::Closed(id, reason)) => {
                    seen.insert(id, reason);
                }
                Some(_) => continue,
                None => panic!("events ended after {seen:?}"),
            }
        }
        seen
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_killed_closes_every_channel_with_a_reason_on_both_sides() {
    let (_net, alice, bob, _sa, _sb, (mux, _), (bob_mux, mut requests)) =
        muxed(42, 0, MuxConfig::default()).await;
    let accepted = tokio::spawn(async move {
        let mut channels = Vec::new();
        for _ in 0..3 {
            channels.push(requests.recv().await.unwrap().accept().await.unwrap());
        }
        channels
    });
    let mut mine = Vec::new();
    for i in 0..3u8 {
        mine.push(within("a channel", mux.open_channel(&[i])).await.unwrap());
    }
    let mut theirs = within("Bob's channels", accepted).await.unwrap();
    theirs.sort_by_key(|c| c.cookie()[0]);
    // Bob pends Alice's third channel: her writer on it waits.
    bob_mux.pend(theirs[2].id()).await.unwrap();
    within("the pend", async {
        while !mine[2].is_pended() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let mut pended = mine.pop().unwrap();
    let blocked_write = tokio::spawn(async move {
        let result = pended.write_all(b"never").await;
        (pended, result)
    });
    // Bob waits to read on his first channel.
    let mut waiting = theirs.remove(0);
    let blocked_read = tokio::spawn(async move {
        let mut buf = [0u8; 16];
        waiting.read(&mut buf).await
    });

    alice
        .friends
        .link(&bob.id())
        .unwrap()
        .close(close::SILENT, b"a test cuts the link");

    for seen in [closed(&mux, 3).await, closed(&bob_mux, 3).await] {
        assert_eq!(seen.len(), 3);
        for reason in seen.values() {
            let CloseReason::Lost(why) = reason else {
                panic!("not lost: {reason:?}");
            };
            assert!(!why.is_empty());
        }
    }
    let (_pended, written) = within("the pended writer", blocked_write).await.unwrap();
    assert!(written.is_err(), "a pended writer fails when the link goes");
    let read = within("the blocked reader", blocked_read).await.unwrap();
    assert!(read.is_err(), "a waiting reader fails when the link goes");
    assert!(matches!(mine[0].close_reason(), Some(CloseReason::Lost(_))));
    assert!(mine[1].write_all(b"after").await.is_err());
    assert!(mux.gone().is_some());
    assert!(matches!(
        mux.open_channel(b"again").await,
        Err(MuxError::Gone(_))
    ));
    assert_eq!(mux.next_event().await, None, "events end with the mux");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_without_multiplexing_opens_no_channels_and_takes_no_mux() {
    use carrier_mux::stream::{StreamKind, StreamMode};
    let (_net, _alice, _bob, at_alice, at_bob, _mine, _theirs) =
        muxed(42, 20, MuxConfig::default()).await;
    let plain = at_alice
        .add_stream(StreamKind::Application, StreamMode::Reliable)
        .await
        .unwrap();
    assert!(!plain.is_multiplexed());
    assert!(plain.channel_opener().is_err());
    let theirs = within("Bob's stream", at_bob.accept_stream())
        .await
        .unwrap();
    assert!(matches!(
        Mux::accept(theirs, MuxConfig::default()),
        Err(MuxError::WrongState(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_session_closes_every_channel_with_a_reason() {
    let (_net, _alice, _bob, at_alice, _at_bob, (mux, _), (bob_mux, mut requests)) =
        muxed(42, 40, MuxConfig::default()).await;
    let accepted = tokio::spawn(async move {
        let mut channels = Vec::new();
        for _ in 0..2 {
            channels.push(requests.recv().await.unwrap().accept().await.unwrap());
        }
        channels
    });
    let mut mine = Vec::new();
    for i in 0..2u8 {
        mine.push(within("a channel", mux.open_channel(&[i])).await.unwrap());
    }
    let mut theirs = within("Bob's channels", accepted).await.unwrap();
    let blocked_read = tokio::spawn(async move {
        let mut buf = [0u8; 16];
        let read = mine[0].read(&mut buf).await;
        (mine, read)
    });
    within("the session's close", at_alice.close("done for today"))
        .await
        .unwrap();
    for seen in [closed(&mux, 2).await, closed(&bob_mux, 2).await] {
        assert!(seen
            .values()
            .all(|reason| matches!(reason, CloseReason::Lost(_))));
    }
    let (_mine, read) = within("the blocked reader", blocked_read).await.unwrap();
    assert!(
        read.is_err(),
        "a waiting reader fails when the session closes"
    );
    assert!(theirs[0].write_all(b"after").await.is_err());
}
