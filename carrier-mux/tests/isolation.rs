//! Channels do not hold each other up: eight pended channels with their writers blocked
//! while a ninth moves 16 MiB and messages still flow on the link, nothing lost after the
//! resume; a reader that stops on one channel does not slow another.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use carrier_mux::stream::msg::MessageEvent;
use carrier_mux::stream::CHANNEL_WINDOW_BYTES;
use carrier_mux::{Channel, MuxConfig, MuxEvent};
use common::{muxed, read_all, within, write_pattern};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The ninth channel's transfer.
const BULK_BYTES: usize = 16 * 1024 * 1024;
/// What each pended channel's writer tries to send.
const PENDED_BYTES: usize = 4 * 1024 * 1024;

/// A writer that counts what it wrote, for asserting it is blocked.
struct Counted {
    channel: Channel,
    written: Arc<AtomicU64>,
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.channel).poll_write(cx, data);
        if let std::task::Poll::Ready(Ok(n)) = &polled {
            self.written.fetch_add(*n as u64, Ordering::SeqCst);
        }
        polled
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.channel).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.channel).poll_shutdown(cx)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_pended_channels_block_their_writers_while_a_ninth_and_messages_flow() {
    let (_net, alice, mut bob, _sa, _sb, (mux, _), (bob_mux, mut requests)) =
        muxed(41, 0, MuxConfig::default()).await;
    let accepted = tokio::spawn(async move {
        let mut channels = Vec::new();
        for _ in 0..9 {
            channels.push(requests.recv().await.unwrap().accept().await.unwrap());
        }
        channels
    });
    let mut mine = Vec::new();
    for i in 0..9u8 {
        mine.push(within("a channel", mux.open_channel(&[i])).await.unwrap());
    }
    let mut theirs = within("Bob's channels", accepted).await.unwrap();
    theirs.sort_by_key(|c| c.cookie()[0]);
    let ninth_mine = mine.pop().unwrap();
    let ninth_theirs = theirs.pop().unwrap();

    // Bob pends eight at once; Alice's side sees each.
    for channel in &theirs {
        bob_mux.pend(channel.id()).await.unwrap();
    }
    let mut pended = Vec::new();
    within("eight Pending events", async {
        while pended.len() < 8 {
            if let MuxEvent::Pending(id) = mux.next_event().await.unwrap() {
                pended.push(id);
            }
        }
    })
    .await;
    let mut expected: Vec<_> = mine.iter().map(|c| c.id()).collect();
    pended.sort();
    expected.sort();
    assert_eq!(pended, expected);
    assert!(mine.iter().all(|c| c.is_pended()));

    // Their writers start now and must not get a byte through.
    let mut writers = Vec::new();
    let mut counts = Vec::new();
    for (i, channel) in mine.into_iter().enumerate() {
        let written = Arc::new(AtomicU64::new(0));
        counts.push(written.clone());
        let counted = Counted { channel, written };
        writers.push(tokio::spawn(write_pattern(counted, i as u64, PENDED_BYTES)));
    }

    // The ninth moves 16 MiB meanwhile, and a message crosses the link.
    let reader = tokio::spawn(read_all(ninth_theirs));
    let sent = within(
        "the ninth's transfer",
        write_pattern(ninth_mine, 99, BULK_BYTES),
    )
    .await;
    let (got, len) = within("the ninth's end", reader).await.unwrap();
    assert_eq!((got, len), (sent, BULK_BYTES));
    alice
        .messenger
        .send(&bob.id(), b"still flowing")
        .await
        .unwrap();
    within("the message", async {
        loop {
            if let MessageEvent::Message(message) = bob.message_events.recv().await.unwrap() {
                assert_eq!(message.bytes, b"still flowing");
                return;
            }
        }
    })
    .await;
    for (i, written) in counts.iter().enumerate() {
        assert_eq!(
            written.load(Ordering::SeqCst),
            0,
            "pended channel {i} wrote"
        );
    }
    assert!(writers.iter().all(|w| !w.is_finished()));

    // Resumed, every byte arrives.
    let mut readers = Vec::new();
    for channel in theirs {
        bob_mux.resume(channel.id()).await.unwrap();
        readers.push(tokio::spawn(read_all(channel)));
    }
    for (writer, reader) in writers.into_iter().zip(readers) {
        let sent = within("a resumed writer", writer).await.unwrap();
        let (got, len) = within("a resumed reader", reader).await.unwrap();
        assert_eq!((got, len), (sent, PENDED_BYTES));
    }
    let mut resumed = 0;
    while let Ok(Some(event)) =
        tokio::time::timeout(std::time::Duration::ZERO, mux.next_event()).await
    {
        if matches!(event, MuxEvent::Resumed(_)) {
            resumed += 1;
        }
    }
    assert_eq!(resumed, 8, "each resume seen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_holds_one_credit_and_slows_no_other_channel() {
    let (_net, _alice, _bob, _sa, _sb, (mux, _), (_bob_mux, mut requests)) =
        muxed(41, 20, MuxConfig::default()).await;
    let accepted = tokio::spawn(async move {
        let slow = requests.recv().await.unwrap().accept().await.unwrap();
        let fast = requests.recv().await.unwrap().accept().await.unwrap();
        (slow, fast)
    });
    let slow = within("a channel", mux.open_channel(b"slow"))
        .await
        .unwrap();
    let fast = within("a channel", mux.open_channel(b"fast"))
        .await
        .unwrap();
    let (mut slow_theirs, fast_theirs) = within("Bob's channels", accepted).await.unwrap();
    assert_eq!(slow_theirs.cookie(), b"slow");

    let written = Arc::new(AtomicU64::new(0));
    let slow_writer = tokio::spawn(write_pattern(
        Counted {
            channel: slow,
            written: written.clone(),
        },
        1,
        PENDED_BYTES,
    ));
    // Bob reads 16 KiB of the slow channel, then nothing until the fast one is done.
    let mut first = vec![0u8; 16 * 1024];
    within(
        "the slow channel's start",
        slow_theirs.read_exact(&mut first),
    )
    .await
    .unwrap();

    let reader = tokio::spawn(read_all(fast_theirs));
    let sent = within("the fast transfer", write_pattern(fast, 2, BULK_BYTES)).await;
    let (got, len) = within("the fast end", reader).await.unwrap();
    assert_eq!((got, len), (sent, BULK_BYTES));
    let held = written.load(Ordering::SeqCst);
    assert!(
        held <= 16 * 1024 + u64::from(CHANNEL_WINDOW_BYTES),
        "the slow channel's writer got {held} bytes ahead of its reader"
    );
    assert!(!slow_writer.is_finished());

    // The slow reader goes on: everything arrives.
    let mut rest = Vec::new();
    within(
        "the slow channel's rest",
        slow_theirs.read_to_end(&mut rest),
    )
    .await
    .unwrap();
    let sent = within("the slow writer", slow_writer).await.unwrap();
    let mut hasher = blake3::Hasher::new();
    hasher.update(&first);
    hasher.update(&rest);
    assert_eq!(hasher.finalize(), sent);
    assert_eq!(first.len() + rest.len(), PENDED_BYTES);
    // Channels hold their shares until dropped; Bob's shutdown is unused here.
    let _ = slow_theirs.shutdown().await;
}

/// Channels whose readers stop, together holding more unread data than the link's base
/// receive window (8 MiB).
const STALLED: usize = 48;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_channels_holding_more_than_the_base_window_do_not_stall_another() {
    let (_net, _alice, _bob, _sa, _sb, (mux, _), (_bob_mux, mut requests)) =
        muxed(41, 40, MuxConfig::default()).await;
    let accepted = tokio::spawn(async move {
        let mut channels = Vec::new();
        for _ in 0..=STALLED {
            channels.push(requests.recv().await.unwrap().accept().await.unwrap());
        }
        channels
    });
    let mut mine = Vec::new();
    for i in 0..=STALLED {
        mine.push(
            within("a channel", mux.open_channel(&(i as u32).to_le_bytes()))
                .await
                .unwrap(),
        );
    }
    let mut theirs = within("Bob's channels", accepted).await.unwrap();
    theirs.sort_by_key(|c| c.cookie().to_vec());
    let fast_theirs = theirs.remove(0);
    let fast_mine = mine.remove(0);

    // Each stalled writer runs out its credit, and Bob reads none of it.
    let mut counts = Vec::new();
    let mut writers = Vec::new();
    for (i, channel) in mine.into_iter().enumerate() {
        let written = Arc::new(AtomicU64::new(0));
        counts.push(written.clone());
        let counted = Counted { channel, written };
        writers.push(tokio::spawn(write_pattern(counted, i as u64, PENDED_BYTES)));
    }
    let credit = u64::from(CHANNEL_WINDOW_BYTES);
    within("every stalled writer at its credit", async {
        while counts.iter().any(|c| c.load(Ordering::SeqCst) < credit) {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    let unread: u64 = counts.iter().map(|c| c.load(Ordering::SeqCst)).sum();
    assert!(
        unread > 8 * 1024 * 1024,
        "{unread} bytes unread: more than the base window"
    );
    assert!(counts.iter().all(|c| c.load(Ordering::SeqCst) == credit));

    let reader = tokio::spawn(read_all(fast_theirs));
    let sent = within(
        "the transfer past them",
        write_pattern(fast_mine, 7, BULK_BYTES),
    )
    .await;
    let (got, len) = within("its end", reader).await.unwrap();
    assert_eq!((got, len), (sent, BULK_BYTES));
    for writer in &writers {
        assert!(!writer.is_finished());
    }
    drop(theirs);
}
