//! The channels' hook: channels opened on a multiplexed stream reach the friend's inbox with
//! their IDs and headers, both ways; a channel open naming a plain stream, or none, is
//! refused with a reason (written by hand here, as a peer that does not use the API would).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use carrier_stream::msg::friend::Extension;
use carrier_stream::{SessionConfig, StreamError, StreamKind, StreamMode};
use common::{session, within};

/// postcard's unsigned varint.
fn varint(mut value: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// `Open::Channel { session, stream, channel, header }` behind its length, by hand.
fn channel_open(session: u64, stream: u32, channel: u32, header: &[u8]) -> Vec<u8> {
    let mut body = vec![1, 3];
    varint(session, &mut body);
    varint(u64::from(stream), &mut body);
    varint(u64::from(channel), &mut body);
    varint(header.len() as u64, &mut body);
    body.extend_from_slice(header);
    let mut frame = (body.len() as u16).to_le_bytes().to_vec();
    frame.extend(body);
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_reach_the_friends_inbox_and_a_plain_stream_refuses_them() {
    let (_net, alice, bob) = common::friends(35, 0, SessionConfig::default()).await;
    let (at_alice, at_bob) = session(&alice, &bob).await;
    let mut multiplexed = at_alice
        .add_multiplexed_stream(StreamKind::Application)
        .await
        .unwrap();
    let mut theirs = within("Bob's stream", at_bob.accept_stream())
        .await
        .unwrap();
    assert!(multiplexed.is_multiplexed() && theirs.is_multiplexed());

    // Alice opens, Bob's inbox has it; and the other way round.
    let mut bob_inbox = theirs.incoming_channels().unwrap();
    assert!(theirs.incoming_channels().is_err(), "taken once");
    let opener = multiplexed.channel_opener().unwrap();
    let opened = within("the open", opener.open(6, b"header")).await.unwrap();
    let arrived = within("the channel", bob_inbox.recv()).await.unwrap();
    assert_eq!(
        (arrived.channel(), &arrived.header()[..]),
        (6, &b"header"[..])
    );
    let (mut send, _recv, _share) = opened.into_parts();
    let (_send, mut recv, _share) = arrived.into_parts();
    send.write_all(b"bytes").await.unwrap();
    send.finish().unwrap();
    let got = recv.read_to_end(1024).await.unwrap();
    assert_eq!(got, b"bytes");
    let mut alice_inbox = multiplexed.incoming_channels().unwrap();
    let back = theirs.channel_opener().unwrap();
    within("the open back", back.open(7, b"")).await.unwrap();
    assert_eq!(
        within("Alice's channel", alice_inbox.recv())
            .await
            .unwrap()
            .channel(),
        7
    );
    let long = opener
        .open(8, &[0; carrier_stream::MAX_CHANNEL_HEADER_BYTES + 1])
        .await;
    assert!(matches!(long, Err(StreamError::Invalid(_))));

    // A channel on a plain stream, and on no stream, by hand.
    let plain = at_alice
        .add_stream(StreamKind::Application, StreamMode::Reliable)
        .await
        .unwrap();
    let _plain_theirs = within("Bob's plain stream", at_bob.accept_stream()).await;
    let link = alice.friends.link(&bob.id()).unwrap();
    for (stream, expected) in [(plain.id(), "takes no channels"), (1000, "unknown stream")] {
        let (mut send, mut recv) = link.open_bi(Extension::STREAM).await.unwrap();
        send.write_all(&channel_open(at_alice.id(), stream, 1, b"x"))
            .await
            .unwrap();
        let answer = within("the refusal", recv.read_to_end(1024)).await.unwrap();
        // len ‖ version ‖ Answer::Refused (2) ‖ reason.
        assert_eq!(answer[3], 2, "refused: {answer:?}");
        let reason = String::from_utf8_lossy(&answer[5..]);
        assert!(reason.contains(expected), "{reason}");
    }
}
