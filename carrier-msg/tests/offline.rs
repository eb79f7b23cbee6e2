//! Offline delivery through the DHT mailbox between real nodes over 127.x.y.1: messages and
//! receipts by letter, a full mailbox, a large message waiting for the link while small ones
//! go by letter, a message that came both ways.
#![allow(clippy::unwrap_used)]

mod common;

use carrier_msg::friend::dht::id::CarrierId;
use carrier_msg::friend::dht::MailboxLimits;
use carrier_msg::friend::FriendEvent;
use carrier_msg::{Message, MessageEvent, MessageId, MessengerConfig, WaitReason};
use common::{befriend, net, net_with, Node};

async fn next_message(node: &mut Node) -> Message {
    node.until(|e| match e {
        MessageEvent::Message(m) => Some(m.clone()),
        _ => None,
    })
    .await
}

async fn delivered(node: &mut Node, id: MessageId) {
    node.until(|e| matches!(e, MessageEvent::Delivered { id: d, .. } if *d == id).then_some(()))
        .await;
}

async fn stored(node: &mut Node, id: MessageId) {
    node.until(|e| matches!(e, MessageEvent::Stored { id: s, .. } if *s == id).then_some(()))
        .await;
}

/// Alice and Bob, friends, with Bob stopped (and Alice knowing it): Alice, Bob's ID, and
/// where Bob starts again.
async fn bob_offline(
    net: &common::Net,
    c: u8,
) -> (Node, CarrierId, std::path::PathBuf, std::net::SocketAddr) {
    let mut alice = net.node([127, 32, c, 1], "alice").await;
    let mut bob = net.node([127, 32, c + 1, 1], "bob").await;
    befriend(&mut alice, &mut bob).await;
    alice.linked(bob.id()).await;
    let bob_id = bob.id();
    let (dir, bind) = bob.stop().await;
    alice
        .until_friend(|e| *e == FriendEvent::Disconnected(bob_id))
        .await;
    (alice, bob_id, dir, bind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_to_an_offline_friend_wait_in_its_mailbox_and_arrive_while_the_sender_is_away() {
    let net = net(32, 1).await;
    let (mut alice, bob_id, dir, bind) = bob_offline(&net, 11).await;
    let mut sent = Vec::new();
    for i in 0..5u8 {
        let id = alice.messenger.send(&bob_id, &[i; 300]).await.unwrap();
        sent.push(id);
    }
    for id in &sent {
        stored(&mut alice, *id).await;
    }
    let alice_id = alice.id();
    let (alice_dir, alice_bind) = alice.stop().await;
    // Bob starts while Alice is away: the letters are all it has.
    let mut bob = net.start(dir, bind, MessengerConfig::for_tests()).await;
    let mut raised = Vec::new();
    for _ in 0..5 {
        raised.push(next_message(&mut bob).await);
    }
    assert_eq!(raised.iter().map(|m| m.id).collect::<Vec<_>>(), sent);
    assert!(raised.iter().all(|m| m.offline && m.from == alice_id));
    // Alice comes back: every message is delivered (the receipt by letter or by link).
    let mut alice = net
        .start(alice_dir, alice_bind, MessengerConfig::for_tests())
        .await;
    for id in &sent {
        delivered(&mut alice, *id).await;
    }
    assert_eq!(alice.messenger.outbox_len(), 0);
    bob.messenger.check_mailbox().await;
    assert!(bob.events.try_recv().is_err(), "raised once each");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_mailbox_leaves_messages_waiting_and_they_arrive_once_the_friend_is_online() {
    // One item per mailbox and day: no letter fits.
    let limits = MailboxLimits {
        max_items_per_mailbox: 1,
        ..MailboxLimits::default()
    };
    let net = net_with(32, 21, limits).await;
    let (mut alice, bob_id, dir, bind) = bob_offline(&net, 31).await;
    let id = alice.messenger.send(&bob_id, b"wait for me").await.unwrap();
    alice
        .until(|e| {
            matches!(e, MessageEvent::Waiting { id: w, reason: WaitReason::MailboxFull, .. } if *w == id)
                .then_some(())
        })
        .await;
    let mut bob = net.start(dir, bind, MessengerConfig::for_tests()).await;
    let message = next_message(&mut bob).await;
    assert_eq!(
        (message.id, message.bytes.as_slice()),
        (id, &b"wait for me"[..])
    );
    delivered(&mut alice, id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_message_waits_for_the_link_while_small_ones_sent_after_it_go_by_letter() {
    let net = net(32, 41).await;
    let (mut alice, bob_id, dir, bind) = bob_offline(&net, 51).await;
    let large = alice
        .messenger
        .send(&bob_id, &vec![7u8; 100 * 1024])
        .await
        .unwrap();
    alice
        .until(|e| {
            matches!(e, MessageEvent::Waiting { id, reason: WaitReason::TooLargeForMailbox, .. } if *id == large)
                .then_some(())
        })
        .await;
    let mut small = Vec::new();
    for i in 0..3u8 {
        let id = alice.messenger.send(&bob_id, &[i]).await.unwrap();
        stored(&mut alice, id).await;
        small.push(id);
    }
    let (alice_dir, alice_bind) = alice.stop().await;
    let mut bob = net.start(dir, bind, MessengerConfig::for_tests()).await;
    for id in &small {
        assert_eq!(
            next_message(&mut bob).await.id,
            *id,
            "not held up by the large one"
        );
    }
    let mut alice = net
        .start(alice_dir, alice_bind, MessengerConfig::for_tests())
        .await;
    let arrived = next_message(&mut bob).await;
    assert_eq!((arrived.id, arrived.bytes.len()), (large, 100 * 1024));
    delivered(&mut alice, large).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_arrives_by_letter_and_by_link_is_raised_once() {
    let net = net(32, 61).await;
    let (mut alice, bob_id, dir, bind) = bob_offline(&net, 71).await;
    let id = alice.messenger.send(&bob_id, b"both ways").await.unwrap();
    stored(&mut alice, id).await;
    // Bob starts with Alice online: the link and the letter both bring it.
    let mut bob = net
        .start(
            dir,
            bind,
            MessengerConfig::for_tests().with_mailbox_poll(std::time::Duration::from_secs(3600)),
        )
        .await;
    assert_eq!(next_message(&mut bob).await.id, id);
    delivered(&mut alice, id).await;
    bob.messenger.check_mailbox().await;
    bob.messenger.check_mailbox().await;
    assert!(bob.events.try_recv().is_err(), "raised twice");
    assert_eq!(bob.messenger.inbox().unwrap().len(), 1);
}
