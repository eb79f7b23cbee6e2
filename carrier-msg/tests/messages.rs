//! Messages between real nodes over 127.x.y.1 with a small DHT: online delivery and its
//! receipt, large beside small, refusals, restarts of either side, expiry, epochs.
#![allow(clippy::unwrap_used)]

mod common;

use carrier_msg::{MessageEvent, MessageId};
use common::{befriend, net, Node};

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
