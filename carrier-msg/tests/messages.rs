//! Messages between real nodes over 127.x.y.1 with a small DHT: online delivery and its
//! receipt, large beside small, refusals, restarts of either side, expiry, epochs.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use carrier_msg::friend::dht::id::Keypair;
use carrier_msg::friend::FriendEvent;
use carrier_msg::{
    FailReason, MessageEvent, MessageId, Messenger, MessengerConfig, MsgError, WaitReason,
    MAX_MESSAGE_BYTES,
};
use common::{befriend, net, wait_for, Node};

/// Waits for `id`'s `Delivered` at `node`.
async fn delivered(node: &mut Node, id: MessageId) {
    node.until(|e| matches!(e, MessageEvent::Delivered { id: d, .. } if *d == id).then_some(()))
        .await;
}

/// The next message `node` raises.
async fn next_message(node: &mut Node) -> carrier_msg::Message {
    node.until(|e| match e {
        MessageEvent::Message(m) => Some(m.clone()),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_to_an_online_friend_arrives_and_is_delivered() {
    let net = net(31, 1).await;
    let mut alice = net.node([127, 31, 11, 1], "alice").await;
    let mut bob = net.node([127, 31, 12, 1], "bob").await;
    befriend(&mut alice, &mut bob).await;
    alice.linked(bob.id()).await;
    let id = alice
        .messenger
        .send(&bob.id(), b"hello, bob")
        .await
        .unwrap();
    let message = next_message(&mut bob).await;
    assert_eq!(message.id, id);
    assert_eq!(message.from, alice.id());
    assert_eq!(message.bytes, b"hello, bob");
    assert!(!message.offline);
    delivered(&mut alice, id).await;
    assert_eq!(alice.messenger.outbox_len(), 0);
    assert_eq!(bob.messenger.inbox().unwrap(), [message]);
    bob.messenger.ack(id).await.unwrap();
    assert!(bob.messenger.inbox().unwrap().is_empty());
}

/// The messages `node` raises until it has `count`, in order.
async fn messages(node: &mut Node, count: usize) -> Vec<carrier_msg::Message> {
    let mut out = Vec::new();
    while out.len() < count {
        out.push(next_message(node).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5_mib_message_does_not_hold_up_100_small_ones_sent_after_it() {
    let net = net(31, 21).await;
    let mut alice = net.node([127, 31, 31, 1], "alice").await;
    let mut bob = net.node([127, 31, 32, 1], "bob").await;
    befriend(&mut alice, &mut bob).await;
    alice.linked(bob.id()).await;
    let first = alice.messenger.send(&bob.id(), b"before").await.unwrap();
    let big: Vec<u8> = (0..MAX_MESSAGE_BYTES).map(|i| (i % 251) as u8).collect();
    let large = alice.messenger.send(&bob.id(), &big).await.unwrap();
    let mut small = Vec::new();
    for i in 0..100u32 {
        let id = alice
            .messenger
            .send(&bob.id(), &i.to_be_bytes())
            .await
            .unwrap();
        small.push(id);
    }
    let raised = messages(&mut bob, 102).await;
    // The small ones arrive in send order, the first before the large one it preceded.
    let order: Vec<MessageId> = raised
        .iter()
        .map(|m| m.id)
        .filter(|id| *id != large)
        .collect();
    let mut expected = vec![first];
    expected.extend(&small);
    assert_eq!(order, expected);
    let at = |id: MessageId| raised.iter().position(|m| m.id == id).unwrap();
    assert!(at(first) < at(large));
    assert_eq!(raised[at(large)].bytes, big);
    let mut pending: std::collections::HashSet<MessageId> = expected.into_iter().collect();
    pending.insert(large);
    while !pending.is_empty() {
        let id = alice
            .until(|e| match e {
                MessageEvent::Delivered { id, .. } => Some(*id),
                _ => None,
            })
            .await;
        pending.remove(&id);
    }
    assert_eq!(alice.messenger.outbox_len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_self_empty_and_oversized_messages_are_refused_each_with_its_error() {
    let net = net(31, 41).await;
    let alice = net.node([127, 31, 51, 1], "alice").await;
    let stranger = Keypair::generate().id();
    assert!(matches!(
        alice.messenger.send(&alice.id(), b"me").await,
        Err(MsgError::Yourself)
    ));
    assert!(matches!(
        alice.messenger.send(&stranger, b"hi").await,
        Err(MsgError::NotAFriend(id)) if id == stranger
    ));
    let mut bob = net.node([127, 31, 52, 1], "bob").await;
    let mut alice = alice;
    befriend(&mut alice, &mut bob).await;
    assert!(matches!(
        alice.messenger.send(&bob.id(), b"").await,
        Err(MsgError::Empty)
    ));
    let over = vec![0u8; MAX_MESSAGE_BYTES + 1];
    assert!(matches!(
        alice.messenger.send(&bob.id(), &over).await,
        Err(MsgError::TooLarge { len, max }) if len == MAX_MESSAGE_BYTES + 1 && max == MAX_MESSAGE_BYTES
    ));
    assert!(matches!(
        alice.messenger.ack(MessageId([1; 16])).await,
        Err(MsgError::UnknownMessage(_))
    ));
    assert_eq!(
        alice.messenger.outbox_len(),
        0,
        "nothing refused was queued"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_messages_to_a_stopped_friend_are_all_raised_once_it_restarts_marked_offline() {
    let net = net(31, 61).await;
    let mut alice = net.node([127, 31, 71, 1], "alice").await;
    let mut bob = net.node([127, 31, 72, 1], "bob").await;
    befriend(&mut alice, &mut bob).await;
    alice.linked(bob.id()).await;
    let bob_id = bob.id();
    let (dir, bind) = bob.stop().await;
    alice
        .until_friend(|e| *e == FriendEvent::Disconnected(bob_id))
        .await;
    let mut sent = Vec::new();
    for i in 0..10u8 {
        let id = alice.messenger.send(&bob_id, &[i; 100]).await.unwrap();
        alice
            .until(|e| {
                matches!(e, MessageEvent::Waiting { id: w, reason: WaitReason::Offline, .. } if *w == id)
                    .then_some(())
            })
            .await;
        sent.push(id);
    }
    let mut bob = net.start(dir, bind, MessengerConfig::for_tests()).await;
    let raised = messages(&mut bob, 10).await;
    assert_eq!(raised.iter().map(|m| m.id).collect::<Vec<_>>(), sent);
    assert!(raised.iter().all(|m| m.offline && m.from == alice.id()));
    for id in &sent {
        delivered(&mut alice, *id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_raised_again_after_a_restart_until_it_is_acked_and_never_after() {
    let net = net(31, 81).await;
    let mut alice = net.node([127, 31, 91, 1], "alice").await;
    let mut bob = net.node([127, 31, 92, 1], "bob").await;
    befriend(&mut alice, &mut bob).await;
    alice.linked(bob.id()).await;
    let one = alice.messenger.send(&bob.id(), b"one").await.unwrap();
    let two = alice.messenger.send(&bob.id(), b"two").await.unwrap();
    assert_eq!(
        messages(&mut bob, 2)
            .await
            .iter()
            .map(|m| m.id)
            .collect::<Vec<_>>(),
        [one, two]
    );
    delivered(&mut alice, two).await;
    bob.messenger.ack(one).await.unwrap();
    let (dir, bind) = bob.stop().await;
    let bob = net.start(dir, bind, MessengerConfig::for_tests()).await;
    let mut bob = bob;
    // Raised at start, before anything else: only the one not acked.
    let again = next_message(&mut bob).await;
    assert_eq!(again.id, two);
    assert_eq!(again.bytes, b"two");
    assert_eq!(bob.messenger.inbox().unwrap(), [again]);
    bob.messenger.ack(two).await.unwrap();
    let (dir, bind) = bob.stop().await;
    let mut bob = net.start(dir, bind, MessengerConfig::for_tests()).await;
    assert!(bob.messenger.inbox().unwrap().is_empty());
    assert!(bob.events.try_recv().is_err(), "nothing raised again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_restarted_before_its_receipts_sends_again_and_each_is_raised_once() {
    let net = net(31, 101).await;
    let mut alice = net.node([127, 31, 111, 1], "alice").await;
    let mut bob = net.node([127, 31, 112, 1], "bob").await;
    befriend(&mut alice, &mut bob).await;
    alice.linked(bob.id()).await;
    let mut sent = Vec::new();
    for i in 0..50u8 {
        sent.push(alice.messenger.send(&bob.id(), &[i; 10]).await.unwrap());
    }
    // Stopped at once: some receipts are surely lost, maybe some messages unsent.
    let (dir, bind) = alice.stop().await;
    let mut alice = net.start(dir, bind, MessengerConfig::for_tests()).await;
    let raised = messages(&mut bob, 50).await;
    assert_eq!(raised.iter().map(|m| m.id).collect::<Vec<_>>(), sent);
    wait_for(|| async { (alice.messenger.outbox_len() == 0).then_some(()) }).await;
    // Everything is settled; nothing more is raised.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(bob.events.try_recv().is_err(), "a message was raised twice");
    assert_eq!(bob.messenger.inbox().unwrap().len(), 50);
    drop(alice.events.try_recv());
}

/// The chaos test's stall (issue 16): a sender restarted with nothing left in its outbox for
/// a friend sends the next message with a sequence far above 1; it must go at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_restarted_with_everything_delivered_sends_its_next_message() {
    let net = net(31, 131).await;
    let mut alice = net.node([127, 31, 141, 1], "alice").await;
    let mut bob = net.node([127, 31, 142, 1], "bob").await;
    befriend(&mut alice, &mut bob).await;
    alice.linked(bob.id()).await;
    for i in 0..3u8 {
        let id = alice.messenger.send(&bob.id(), &[i; 10]).await.unwrap();
        delivered(&mut alice, id).await;
    }
    messages(&mut bob, 3).await;
    // The receipts' rows are deleted in the background, after the outbox let them go (a
    // stop aborts a delete not done yet): a short wait lets them commit.
    wait_for(|| async { (alice.messenger.outbox_len() == 0).then_some(()) }).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (dir, bind) = alice.stop().await;
    let mut alice = net.start(dir, bind, MessengerConfig::for_tests()).await;
    assert_eq!(alice.messenger.outbox_len(), 0, "nothing was left to load");
    alice.linked(bob.id()).await;
    let id = alice
        .messenger
        .send(&bob.id(), b"after the restart")
        .await
        .unwrap();
    let raised = next_message(&mut bob).await;
    assert_eq!(
        (raised.id, raised.bytes.as_slice()),
        (id, &b"after the restart"[..])
    );
    delivered(&mut alice, id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_message_fails_and_does_not_block_the_ones_after_it() {
    let net = net(31, 121).await;
    // Without the mailbox: a message deposited before it expired may still arrive by letter.
    let config = MessengerConfig::for_tests()
        .with_message_ttl(Duration::from_millis(800))
        .with_mailbox(false);
    let mut alice = net
        .start(
            net.dir.path().join("alice"),
            SocketAddr::from(([127, 31, 131, 1], 0)),
            config,
        )
        .await;
    let mut bob = net.node([127, 31, 132, 1], "bob").await;
    befriend(&mut alice, &mut bob).await;
    alice.linked(bob.id()).await;
    let bob_id = bob.id();
    let (dir, bind) = bob.stop().await;
    alice
        .until_friend(|e| *e == FriendEvent::Disconnected(bob_id))
        .await;
    let lost = alice.messenger.send(&bob_id, b"too late").await.unwrap();
    alice
        .until(|e| {
            matches!(e, MessageEvent::Failed { id, reason: FailReason::Expired, .. } if *id == lost)
                .then_some(())
        })
        .await;
    let mut bob = net.start(dir, bind, MessengerConfig::for_tests()).await;
    alice.linked(bob_id).await;
    let next = alice.messenger.send(&bob_id, b"in time").await.unwrap();
    let raised = next_message(&mut bob).await;
    assert_eq!(raised.id, next);
    delivered(&mut alice, next).await;
    assert!(bob.messenger.inbox().unwrap().iter().all(|m| m.id != lost));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_friend_removed_and_added_again_starts_a_new_epoch() {
    let net = net(31, 141).await;
    let mut alice = net.node([127, 31, 151, 1], "alice").await;
    let mut bob = net.node([127, 31, 152, 1], "bob").await;
    befriend(&mut alice, &mut bob).await;
    alice.linked(bob.id()).await;
    for i in 0..3u8 {
        let id = alice.messenger.send(&bob.id(), &[i]).await.unwrap();
        assert_eq!(next_message(&mut bob).await.id, id);
        delivered(&mut alice, id).await;
    }
    alice.friends.remove_friend(&bob.id()).await.unwrap();
    let alice_id = alice.id();
    bob.until_friend(|e| *e == FriendEvent::Removed(alice_id))
        .await;
    befriend(&mut alice, &mut bob).await;
    alice.linked(bob.id()).await;
    // Sequences 1 and 2 again, in a new epoch: new messages, not duplicates.
    for i in 0..2u8 {
        let id = alice.messenger.send(&bob.id(), &[10 + i]).await.unwrap();
        let raised = next_message(&mut bob).await;
        assert_eq!((raised.id, raised.bytes), (id, vec![10 + i]));
        delivered(&mut alice, id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_waiting_for_a_removed_friend_fail() {
    let net = net(31, 161).await;
    let mut alice = net.node([127, 31, 171, 1], "alice").await;
    let mut bob = net.node([127, 31, 172, 1], "bob").await;
    befriend(&mut alice, &mut bob).await;
    let bob_id = bob.id();
    let (_dir, _bind) = bob.stop().await;
    let id = alice.messenger.send(&bob_id, b"never").await.unwrap();
    alice.friends.remove_friend(&bob_id).await.unwrap();
    alice
        .until(|e| {
            matches!(e, MessageEvent::Failed { id: f, reason: FailReason::Removed, .. } if *f == id)
                .then_some(())
        })
        .await;
    assert_eq!(alice.messenger.outbox_len(), 0);
    assert!(matches!(
        alice.messenger.send(&bob_id, b"again").await,
        Err(MsgError::NotAFriend(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_stopped_in_the_middle_of_a_burst_takes_each_message_once() {
    let net = net(31, 181).await;
    let mut alice = net.node([127, 31, 191, 1], "alice").await;
    let mut bob = net.node([127, 31, 192, 1], "bob").await;
    befriend(&mut alice, &mut bob).await;
    alice.linked(bob.id()).await;
    let bob_id = bob.id();
    let mut sent = Vec::new();
    for i in 0..10u8 {
        sent.push(alice.messenger.send(&bob_id, &[i]).await.unwrap());
    }
    // Stopped at the boundary: some committed, some in flight, receipts partly sent.
    let (dir, bind) = bob.stop().await;
    for i in 10..20u8 {
        sent.push(alice.messenger.send(&bob_id, &[i]).await.unwrap());
    }
    let bob = net.start(dir, bind, MessengerConfig::for_tests()).await;
    for id in &sent {
        delivered(&mut alice, *id).await;
    }
    let inbox: Vec<MessageId> = bob
        .messenger
        .inbox()
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(inbox, sent, "each once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_on_a_stream_the_friend_refused_goes_again_at_once_not_after_the_resend_wait() {
    let net = net(31, 201).await;
    // Alice would send again only after an hour: what brings the message is her writer
    // seeing its stream refused.
    let slow = MessengerConfig::for_tests()
        .with_resend_after(Duration::from_secs(3600))
        .with_tick(Duration::from_secs(3600));
    let mut alice = net
        .start(
            net.dir.path().join("alice"),
            SocketAddr::from(([127, 31, 211, 1], 0)),
            slow,
        )
        .await;
    let mut bob = net.node([127, 31, 212, 1], "bob").await;
    befriend(&mut alice, &mut bob).await;
    alice.linked(bob.id()).await;
    let first = alice.messenger.send(&bob.id(), b"one").await.unwrap();
    delivered(&mut alice, first).await;

    // Bob's messenger stops; his node refuses the messages' streams meanwhile.
    bob.messenger.shutdown().await;
    let second = alice.messenger.send(&bob.id(), b"two").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (messenger, events) = Messenger::start(bob.friends.clone(), MessengerConfig::for_tests())
        .await
        .unwrap();
    bob.messenger = messenger;
    bob.events = events;
    // (The new messenger raises "one" again first: it was never acked.)
    let message = bob
        .until(|e| match e {
            MessageEvent::Message(m) if m.id == second => Some(m.clone()),
            _ => None,
        })
        .await;
    assert_eq!(message.bytes, b"two");
    delivered(&mut alice, second).await;
}
