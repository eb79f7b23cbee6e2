//! The friend and message steps: Alice and Bob meet, link up, see each other's presence,
//! exchange a message with its receipt, and an invite.

use std::time::Instant;

use carrier::friend::{FriendEvent, Presence, UserInfo};
use carrier::msg::MessageEvent;

use super::steps::{ms, step, Error};
use super::Demo;

/// Both name themselves; the demo shows who is who.
pub(super) async fn introduce(demo: &mut Demo) -> Result<(), Error> {
    let Demo {
        started,
        alice,
        bob,
        ..
    } = demo;
    alice
        .friends()?
        .set_user_info(UserInfo::new("Alice", "at home").ok_or("a bad name")?)
        .await?;
    bob.friends()?
        .set_user_info(UserInfo::new("Bob", "at work").ok_or("a bad name")?)
        .await?;
    step(*started, "Alice and Bob start, each with a data directory:");
    println!("             Alice's Carrier ID is {}", alice.id());
    println!(
        "             her address (ID, nospam, checksum) is {}",
        alice.friends()?.address()
    );
    println!("             Bob's Carrier ID is {}", bob.id());
    Ok(())
}

/// Bob asks Alice, by her address, to be friends.
pub(super) async fn request(demo: &mut Demo) -> Result<(), Error> {
    let Demo {
        started,
        alice,
        bob,
        ..
    } = demo;
    let asked = Instant::now();
    bob.friends()?
        .add_friend(
            &alice.friends()?.address().to_string(),
            b"Hi Alice, it's Bob!",
        )
        .await?;
    let request = alice
        .until("Bob's friend request", |e| match e {
            FriendEvent::Request(r) => Some(r.clone()),
            _ => None,
        })
        .await?;
    step(
        *started,
        &format!(
            "Alice gets a friend request from {} ({}): \"{}\" ({:.1} ms after Bob sent it; \
             Bob found her through her peer record in the DHT)",
            request.info.name(),
            request.from,
            String::from_utf8_lossy(&request.hello),
            ms(asked)
        ),
    );
    Ok(())
}

/// Alice accepts; both see the other added and linked.
pub(super) async fn accept(demo: &mut Demo) -> Result<(), Error> {
    let Demo {
        started,
        alice,
        bob,
        ..
    } = demo;
    let accepted = Instant::now();
    alice.friends()?.accept_friend(&bob.id()).await?;
    let (a, b) = (alice.id(), bob.id());
    bob.until("Alice's accept", |e| {
        (*e == FriendEvent::Added(a)).then_some(())
    })
    .await?;
    alice
        .until("the link to Bob", |e| {
            (*e == FriendEvent::Connected(b)).then_some(())
        })
        .await?;
    bob.until("the link to Alice", |e| {
        (*e == FriendEvent::Connected(a)).then_some(())
    })
    .await?;
    step(
        *started,
        &format!(
            "Alice accepts: they are friends, linked by QUIC with TLS 1.3 keyed by their \
             Carrier IDs ({:.1} ms after the accept)",
            ms(accepted)
        ),
    );
    Ok(())
}

/// Alice goes away; Bob sees it.
pub(super) async fn presence(demo: &mut Demo) -> Result<(), Error> {
    let Demo {
        started,
        alice,
        bob,
        ..
    } = demo;
    let a = alice.id();
    let changed = Instant::now();
    alice.friends()?.set_presence(Presence::Away).await?;
    bob.until("Alice's presence", |e| {
        (*e == FriendEvent::PresenceChanged(a, Presence::Away)).then_some(())
    })
    .await?;
    step(
        *started,
        &format!(
            "Alice sets her presence to away; Bob sees it {:.1} ms later",
            ms(changed)
        ),
    );
    Ok(())
}

/// Bob messages Alice; her node's receipt comes back.
pub(super) async fn message(demo: &mut Demo) -> Result<(), Error> {
    let Demo {
        started,
        alice,
        bob,
        ..
    } = demo;
    let sent = Instant::now();
    let id = bob.messenger()?.send(&alice.id(), b"Lunch at one?").await?;
    let message = alice
        .until_message("Bob's message", |e| match e {
            MessageEvent::Message(m) if m.id == id => Some(m.clone()),
            _ => None,
        })
        .await?;
    let raised = ms(sent);
    alice.messenger()?.ack(message.id).await?;
    bob.until_message("the receipt", |e| match e {
        MessageEvent::Delivered { id: done, .. } if *done == id => Some(()),
        _ => None,
    })
    .await?;
    step(
        *started,
        &format!(
            "Bob messages Alice: \"{}\" reaches her {raised:.1} ms after he sent it, and her \
             node's receipt is back at his after {:.1} ms (committed on disk at both ends)",
            String::from_utf8_lossy(&message.bytes),
            ms(sent)
        ),
    );
    Ok(())
}

/// Alice invites Bob to an extension of his; he answers.
pub(super) async fn invite(demo: &mut Demo) -> Result<(), Error> {
    let Demo {
        started,
        alice,
        bob,
        ..
    } = demo;
    let mut chat = bob.messenger()?.register_extension("chat")?;
    let answering = bob.messenger()?.clone();
    let answer = async move {
        let invite = chat.recv().await.ok_or("Bob's chat extension closed")?;
        answering
            .reply_invite(invite.id, 0, "", b"see you there")
            .await?;
        Ok::<(), Error>(())
    };
    let invited = Instant::now();
    let ask = async {
        Ok::<_, Error>(
            alice
                .messenger()?
                .invite(&bob.id(), "chat", b"", b"a call at one?")
                .await?,
        )
    };
    let (reply, ()) = tokio::try_join!(ask, answer)?;
    step(
        *started,
        &format!(
            "Alice invites Bob to his \"chat\" extension; he confirms with \"{}\" ({:.1} ms \
             round trip; sessions open this way)",
            String::from_utf8_lossy(&reply.data),
            ms(invited)
        ),
    );
    Ok(())
}
