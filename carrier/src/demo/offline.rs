//! Alice offline and back: what Bob sent meanwhile waits in her mailbox on the DHT and in
//! his durable outbox, and reaches her when she starts again from her data directory.

use std::time::Instant;

use carrier::friend::{FriendEvent, UserInfo};
use carrier::msg::{MessageEvent, MessageId};

use super::steps::{ms, step, Error};
use super::Demo;

/// What Bob did while Alice was away, for her to find when she is back.
pub(super) struct WhileAway {
    info: UserInfo,
    message: MessageId,
}

/// Alice stops her node; Bob changes his description and messages her.
pub(super) async fn away(demo: &mut Demo) -> Result<WhileAway, Error> {
    let Demo {
        started,
        alice,
        bob,
        ..
    } = demo;
    let a = alice.id();
    alice.stop().await;
    bob.until("Alice going offline", |e| {
        (*e == FriendEvent::Disconnected(a)).then_some(())
    })
    .await?;
    step(*started, "Alice goes offline; Bob sees her disconnected");
    let info = UserInfo::new("Bob", "back from lunch").ok_or("a bad description")?;
    bob.friends()?.set_user_info(info.clone()).await?;
    let message = bob.messenger()?.send(&a, b"Running late, sorry!").await?;
    bob.until_message("the message stored in Alice's mailbox", |e| match e {
        MessageEvent::Stored { id, .. } if *id == message => Some(()),
        _ => None,
    })
    .await?;
    step(
        *started,
        "Bob changes his description and messages her while she is offline: the message waits \
         sealed in her mailbox on the DHT, and both wait in his durable outbox",
    );
    Ok(WhileAway { info, message })
}

/// Alice starts again from her directory, on her port: she gets Bob's new description and
/// his message, and he gets its receipt.
pub(super) async fn back(demo: &mut Demo, away: WhileAway) -> Result<(), Error> {
    let b = demo.bob.id();
    let restarted = Instant::now();
    demo.alice.restart().await?;
    let Demo {
        started,
        alice,
        bob,
        ..
    } = demo;
    alice
        .until("the link to Bob again", |e| {
            (*e == FriendEvent::Connected(b)).then_some(())
        })
        .await?;
    let linked = ms(restarted);
    let seen = alice
        .until("Bob's new description", |e| match e {
            FriendEvent::InfoChanged(id, info) if *id == b => Some(info.clone()),
            _ => None,
        })
        .await?;
    step(
        *started,
        &format!(
            "Alice starts again from her directory: linked to Bob {linked:.1} ms later, and \
             his description is \"{}\"",
            seen.description()
        ),
    );
    if seen != away.info {
        return Err("Alice got another description than Bob set".into());
    }
    let late = alice
        .until_message("Bob's message sent while she was away", |e| match e {
            MessageEvent::Message(m) if m.id == away.message => Some(m.clone()),
            _ => None,
        })
        .await?;
    alice.messenger()?.ack(late.id).await?;
    bob.until_message("the receipt of the offline message", |e| match e {
        MessageEvent::Delivered { id, .. } if *id == away.message => Some(()),
        _ => None,
    })
    .await?;
    step(
        *started,
        &format!(
            "Alice gets the message Bob sent while she was away: \"{}\" (offline: {}); Bob \
             gets its receipt",
            String::from_utf8_lossy(&late.bytes),
            late.offline
        ),
    );
    Ok(())
}
