//! Channels between two friends' nodes on loopback: 4,096 opened at once on one stream each
//! with its own data; a refusal and its reason; half-close; the close reasons each side sees.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use carrier_mux::{ChannelId, CloseReason, MuxConfig, MuxError, MuxEvent, MAX_COOKIE_BYTES};
use common::{muxed, pattern, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

/// Channels opened at once in the burst test.
const BURST: usize = 4096;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_thousand_channels_open_at_once_on_one_stream_each_with_its_own_data() {
    let (_net, _alice, _bob, _sa, _sb, (mux, _), (_bob_mux, mut requests)) =
        muxed(40, 0, MuxConfig::default()).await;
    // Bob checks each channel's bytes against its cookie's pattern and answers with its
    // length.
    let served = tokio::spawn(async move {
        let mut served = JoinSet::new();
        for _ in 0..BURST {
            let request = requests.recv().await.expect("a channel request");
            served.spawn(async move {
                let seed: u64 = std::str::from_utf8(request.cookie())
                    .unwrap()
                    .parse()
                    .unwrap();
                let mut channel = request.accept().await.unwrap();
                let mut got = Vec::new();
                channel.read_to_end(&mut got).await.unwrap();
                assert_eq!(
                    got,
                    pattern(seed, 100 + seed as usize % 900),
                    "channel {seed}"
                );
                channel
                    .write_all(&(got.len() as u32).to_le_bytes())
                    .await
                    .unwrap();
                channel.shutdown().await.unwrap();
                // Held until Alice read the answer: dropping it would close it at once.
                let mut end = Vec::new();
                channel.read_to_end(&mut end).await.unwrap();
            });
        }
        while let Some(done) = served.join_next().await {
            done.unwrap();
        }
    });
    let mut opens = JoinSet::new();
    for seed in 0..BURST as u64 {
        let mux = mux.clone();
        opens.spawn(async move {
            let mut channel = mux.open_channel(seed.to_string().as_bytes()).await.unwrap();
            let data = pattern(seed, 100 + seed as usize % 900);
            channel.write_all(&data).await.unwrap();
            channel.shutdown().await.unwrap();
            let mut answer = Vec::new();
            channel.read_to_end(&mut answer).await.unwrap();
            assert_eq!(answer, (data.len() as u32).to_le_bytes());
            channel.id()
        });
    }
    let mut ids = Vec::new();
    within("4096 channels", async {
        while let Some(id) = opens.join_next().await {
            ids.push(id.unwrap());
        }
    })
    .await;
    within("Bob's side", served).await.unwrap();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), BURST, "every channel its own ID");
    assert!(
        ids.iter().all(|ChannelId(id)| id % 2 == 0),
        "the opener's parity"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_channel_reports_the_reason_and_a_long_cookie_is_refused_here() {
    let (_net, _alice, _bob, _sa, _sb, (mux, _), (_bob_mux, mut requests)) =
        muxed(40, 20, MuxConfig::default()).await;
    tokio::spawn(async move {
        while let Some(request) = requests.recv().await {
            match request.cookie() {
                b"ftp" => request.refuse("no ftp here").await.unwrap(),
                // Dropped unanswered.
                _ => drop(request),
            }
        }
    });
    let refused = within("the refusal", mux.open_channel(b"ftp")).await;
    assert_eq!(
        refused.unwrap_err(),
        MuxError::Refused("no ftp here".into())
    );
    let dropped = within("the dropped request", mux.open_channel(b"other")).await;
    assert!(matches!(dropped, Err(MuxError::Refused(_))), "{dropped:?}");
    let long = mux.open_channel(&[b'x'; MAX_COOKIE_BYTES + 1]).await;
    assert_eq!(
        long.unwrap_err(),
        MuxError::CookieTooLong {
            len: MAX_COOKIE_BYTES + 1,
            max: MAX_COOKIE_BYTES
        }
    );
    assert_eq!(mux.open_channels(), 0, "nothing left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_closed_channel_still_reads_the_answer() {
    let (_net, _alice, _bob, _sa, _sb, (mux, _), (_bob_mux, mut requests)) =
        muxed(40, 40, MuxConfig::default()).await;
    // Bob reads to the end, then answers with what he read, reversed.
    tokio::spawn(async move {
        let mut channel = requests.recv().await.unwrap().accept().await.unwrap();
        let mut got = Vec::new();
        channel.read_to_end(&mut got).await.unwrap();
        got.reverse();
        channel.write_all(&got).await.unwrap();
        channel.shutdown().await.unwrap();
        let mut rest = Vec::new();
        channel.read_to_end(&mut rest).await.unwrap();
    });
    let mut channel = within("the channel", mux.open_channel(b"echo"))
        .await
        .unwrap();
    let data = pattern(7, 300_000);
    channel.write_all(&data).await.unwrap();
    channel.shutdown().await.unwrap();
    let mut answer = Vec::new();
    within("the answer", channel.read_to_end(&mut answer))
        .await
        .unwrap();
    let mut expected = data;
    expected.reverse();
    assert_eq!(answer, expected);
    assert!(
        channel.write_all(b"late").await.is_err(),
        "no writing after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_close_reason_is_seen_on_the_other_side() {
    let (_net, _alice, _bob, _sa, _sb, (mux, _), (bob_mux, mut requests)) =
        muxed(40, 60, MuxConfig::default()).await;
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(requests.recv().await.unwrap().accept().await.unwrap());
        }
        held
    });
    let mut channels = Vec::new();
    for cookie in [&b"normal"[..], b"timeout", b"error"] {
        channels.push(within("a channel", mux.open_channel(cookie)).await.unwrap());
    }
    let mut at_bob = within("Bob's channels", held).await.unwrap();
    channels[0].write_all(b"last words").await.unwrap();
    let reasons = [
        CloseReason::Normal,
        CloseReason::Timeout,
        CloseReason::Error,
    ];
    for (channel, reason) in channels.iter_mut().zip(reasons.clone()) {
        channel.close(reason).await.unwrap();
    }
    assert!(matches!(
        channels[0].close(CloseReason::Normal).await,
        Err(MuxError::WrongState(_))
    ));
    let mut seen = Vec::new();
    within("the close events", async {
        while seen.len() < 3 {
            match bob_mux.next_event().await.unwrap() {
                MuxEvent::Closed(id, reason) => seen.push((id, reason)),
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
    let expected: Vec<(ChannelId, CloseReason)> = channels
        .iter()
        .map(|c| c.id())
        .zip(reasons.clone())
        .collect();
    assert_eq!(seen, expected);
    for (channel, reason) in at_bob.iter().zip(reasons) {
        assert_eq!(channel.close_reason(), Some(reason));
    }
    // A normal close leaves what was sent readable; Bob's writes fail on a closed channel.
    let mut last = Vec::new();
    at_bob[0].read_to_end(&mut last).await.unwrap();
    assert_eq!(last, b"last words");
    assert!(at_bob[1].write_all(b"too late").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_the_friend_never_answers_times_out() {
    let config = MuxConfig::default().with_open_timeout(std::time::Duration::from_millis(300));
    let (_net, _alice, _bob, _sa, _sb, (mux, _), (_bob_mux, mut requests)) =
        muxed(40, 80, config).await;
    let held = tokio::spawn(async move { requests.recv().await.map(|r| (r, requests)) });
    let opened = within("the open's timeout", mux.open_channel(b"slow")).await;
    assert!(matches!(opened, Err(MuxError::Timeout(_))), "{opened:?}");
    assert_eq!(mux.open_channels(), 0, "nothing left behind");
    assert!(within("the held request", held).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_channel_change_reaches_the_observer_named_by_friend_session_and_stream() {
    use carrier_mux::{ChannelChange, ChannelReport};

    let (to, mut reports) = tokio::sync::mpsc::unbounded_channel();
    let config = MuxConfig::default().with_reports(to);
    let (_net, alice, bob, session, _sb, (mux, _), (bob_mux, mut requests)) =
        muxed(40, 100, config).await;
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some(request) = requests.recv().await {
            match request.cookie() {
                b"ftp" => request.refuse("no ftp here").await.unwrap(),
                _ => held.push(request.accept().await.unwrap()),
            }
        }
    });
    let mut chat = within("the chat channel", mux.open_channel(b"chat"))
        .await
        .unwrap();
    assert!(mux.open_channel(b"ftp").await.is_err());
    bob_mux.pend(chat.id()).await.unwrap();
    within("the pend", mux.next_event()).await.unwrap();
    bob_mux.resume(chat.id()).await.unwrap();
    within("the resume", mux.next_event()).await.unwrap();
    chat.close(CloseReason::Normal).await.unwrap();

    // Alice's mux reports with Bob as its friend, Bob's with Alice, both naming the stream.
    let mut seen: Vec<ChannelReport> = Vec::new();
    within("the reports", async {
        while seen.len() < 7 {
            seen.push(reports.recv().await.unwrap());
        }
    })
    .await;
    let of = |peer| {
        seen.iter()
            .filter(|r| r.peer == peer)
            .map(|r| {
                assert_eq!(r.session, session.id());
                (r.channel, r.change.clone())
            })
            .collect::<Vec<_>>()
    };
    let opened = |by_friend| ChannelChange::Opened {
        cookie: bytes::Bytes::from_static(b"chat"),
        by_friend,
    };
    let refused = |by_friend| ChannelChange::Refused {
        cookie: bytes::Bytes::from_static(b"ftp"),
        by_friend,
        reason: "no ftp here".into(),
    };
    let ftp = ChannelId(chat.id().0 + 2);
    let at_alice = of(bob.id());
    assert_eq!(
        at_alice,
        [
            (chat.id(), opened(false)),
            (ftp, refused(false)),
            (chat.id(), ChannelChange::Pending),
            (chat.id(), ChannelChange::Resumed),
        ]
    );
    let at_bob = of(alice.id());
    assert_eq!(
        at_bob,
        [
            (chat.id(), opened(true)),
            (ftp, refused(true)),
            (chat.id(), ChannelChange::Closed(CloseReason::Normal)),
        ]
    );
}
