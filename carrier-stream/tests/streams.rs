//! Reliable streams between two friends' nodes on loopback: bulk both ways with equal
//! hashes, `tokio::io::copy`, 200 streams at once past the link's initial limit, a slow
//! reader that slows only its own stream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use carrier_stream::{SessionConfig, StreamKind, StreamMode};
use common::{session, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `len` bytes of a pattern seeded by `seed`.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Writes `len` bytes of `seed`'s pattern in 64 KiB pieces, then half-closes; the hash of
/// what was written.
async fn write_pattern(
    mut writer: impl tokio::io::AsyncWrite + Unpin,
    seed: u64,
    len: usize,
) -> blake3::Hash {
    let data = pattern(seed, 1 << 20);
    let mut hasher = blake3::Hasher::new();
    let mut left = len;
    while left > 0 {
        let n = left.min(64 * 1024);
        let offset = (left * 31) % (data.len() - n);
        let piece = &data[offset..offset + n];
        writer.write_all(piece).await.unwrap();
        hasher.update(piece);
        left -= n;
    }
    writer.shutdown().await.unwrap();
    hasher.finalize()
}

/// Reads to the end; the hash and the length of what was read.
async fn read_all(mut reader: impl tokio::io::AsyncRead + Unpin) -> (blake3::Hash, usize) {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    loop {
        let n = reader.read(&mut buf).await.unwrap();
        if n == 0 {
            return (hasher.finalize(), total);
        }
        hasher.update(&buf[..n]);
        total += n;
    }
}

/// Bulk size: 100 MiB each way took about 1 s in the debug profile (dependencies are built
/// at opt-level 3) on loopback; the 1 GiB figure is the bench's (`stream.reliable_MBps`).
const BULK_BYTES: usize = 100 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_mib_cross_a_reliable_stream_both_ways_at_once_with_equal_hashes() {
    let (_net, alice, bob) = common::friends(32, 0, SessionConfig::default()).await;
    let (at_alice, at_bob) = session(&alice, &bob).await;
    let mine = at_alice
        .add_stream(StreamKind::Application, StreamMode::Reliable)
        .await
        .unwrap();
    let theirs = within("Bob's stream", at_bob.accept_stream())
        .await
        .unwrap();
    let started = Instant::now();
    let (alice_read, alice_write) = tokio::io::split(mine);
    let (bob_read, bob_write) = tokio::io::split(theirs);
    let (sent_ab, sent_ba, got_at_bob, got_at_alice) = tokio::join!(
        tokio::spawn(write_pattern(alice_write, 1, BULK_BYTES)),
        tokio::spawn(write_pattern(bob_write, 2, BULK_BYTES)),
        tokio::spawn(read_all(bob_read)),
        tokio::spawn(read_all(alice_read)),
    );
    let elapsed = started.elapsed();
    let (got_at_bob, len_at_bob) = got_at_bob.unwrap();
    let (got_at_alice, len_at_alice) = got_at_alice.unwrap();
    assert_eq!(len_at_bob, BULK_BYTES);
    assert_eq!(len_at_alice, BULK_BYTES);
    assert_eq!(got_at_bob, sent_ab.unwrap());
    assert_eq!(got_at_alice, sent_ba.unwrap());
    eprintln!("2 × {} MiB in {elapsed:?}", BULK_BYTES >> 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_io_copy_echoes_through_a_stream() {
    let (_net, alice, bob) = common::friends(32, 20, SessionConfig::default()).await;
    let (at_alice, at_bob) = session(&alice, &bob).await;
    // Bob echoes every stream with tokio::io::copy, then half-closes.
    tokio::spawn(async move {
        while let Some(stream) = at_bob.accept_stream().await {
            tokio::spawn(async move {
                let (mut reader, mut writer) = tokio::io::split(stream);
                tokio::io::copy(&mut reader, &mut writer).await.unwrap();
                writer.shutdown().await.unwrap();
            });
        }
    });
    let stream = at_alice
        .add_stream(StreamKind::Application, StreamMode::Reliable)
        .await
        .unwrap();
    let (reader, writer) = tokio::io::split(stream);
    let data = pattern(7, 3 * 1024 * 1024 + 17);
    let sent = blake3::hash(&data);
    let writing = tokio::spawn(async move {
        let mut source: &[u8] = &data;
        let mut writer = writer;
        tokio::io::copy(&mut source, &mut writer).await.unwrap();
        writer.shutdown().await.unwrap();
    });
    let (echoed, len) = within("the echo", read_all(reader)).await;
    writing.await.unwrap();
    assert_eq!(len, 3 * 1024 * 1024 + 17);
    assert_eq!(echoed, sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_streams_at_once_each_carry_their_own_data() {
    const STREAMS: usize = 200;
    // An open that waited on the link's limit would fail here rather than hang.
    let config = SessionConfig::default().with_open_timeout(Duration::from_secs(5));
    let (_net, alice, bob) = common::friends(32, 40, config).await;
    let (at_alice, at_bob) = session(&alice, &bob).await;
    // Bob holds every stream open until all are in, then echoes each one's hash.
    let holding = tokio::spawn(async move {
        let mut streams = Vec::new();
        while streams.len() < STREAMS {
            streams.push(at_bob.accept_stream().await.unwrap());
        }
        let mut echoes = Vec::new();
        for mut stream in streams {
            echoes.push(tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(chunk) = stream.recv().await.unwrap() {
                    got.extend_from_slice(&chunk);
                }
                stream.send(blake3::hash(&got).as_bytes()).await.unwrap();
                stream.finish().unwrap();
                let _ = stream.recv().await;
            }));
        }
        for echo in echoes {
            echo.await.unwrap();
        }
        at_bob
    });
    let mut opened = Vec::new();
    for _ in 0..STREAMS {
        opened.push(
            at_alice
                .add_stream(StreamKind::Application, StreamMode::Reliable)
                .await
                .unwrap(),
        );
    }
    let mut checks = Vec::new();
    for (i, mut stream) in opened.into_iter().enumerate() {
        checks.push(tokio::spawn(async move {
            let data = pattern(i as u64, 1000 + i * 37);
            stream.send(&data).await.unwrap();
            stream.finish().unwrap();
            let mut answer = Vec::new();
            while let Some(chunk) = stream.recv().await.unwrap() {
                answer.extend_from_slice(&chunk);
            }
            assert_eq!(answer, blake3::hash(&data).as_bytes(), "stream {i}");
        }));
    }
    for check in checks {
        within("a stream's echo", check).await.unwrap();
    }
    within("Bob's side", holding).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_on_one_stream_does_not_slow_another() {
    let (_net, alice, bob) = common::friends(32, 60, SessionConfig::default()).await;
    let (at_alice, at_bob) = session(&alice, &bob).await;
    let mut stalled = at_alice
        .add_stream(StreamKind::Application, StreamMode::Reliable)
        .await
        .unwrap();
    let flowing = at_alice
        .add_stream(StreamKind::Application, StreamMode::Reliable)
        .await
        .unwrap();
    // Bob never reads the first stream; the second he reads to the end.
    let unread = within("Bob's first stream", at_bob.accept_stream())
        .await
        .unwrap();
    let read = within("Bob's second stream", at_bob.accept_stream())
        .await
        .unwrap();
    // Alice fills the stalled stream until its window is full: the write stops.
    let stuck = tokio::spawn(async move {
        let chunk = vec![0u8; 64 * 1024];
        loop {
            if stalled.send(&chunk).await.is_err() {
                return;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!stuck.is_finished());
    let reading = tokio::spawn(read_all(read));
    let sent = write_pattern(flowing, 9, 32 * 1024 * 1024).await;
    let (got, len) = within("the flowing stream", reading).await.unwrap();
    assert_eq!(len, 32 * 1024 * 1024, "32 MiB passed the stalled stream");
    assert_eq!(got, sent);
    assert!(!stuck.is_finished(), "the stalled stream is still stalled");
    drop(unread);
    stuck.abort();
}
