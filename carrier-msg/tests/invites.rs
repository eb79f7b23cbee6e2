//! Invites between two friends on 127.x.y.1 with a small DHT: confirmed, refused with a
//! reason, refused at once for an extension nobody registered, timed out; data of 1200, 1270,
//! 2550 and 8192 bytes round-trip both ways and 8193 is refused; each refused argument its
//! own error; an invite to an offline friend waits for its link.
#![allow(clippy::unwrap_used)]

mod invite_support;

use std::time::Duration;

use carrier_msg::friend::close;
use carrier_msg::friend::dht::id::Keypair;
use carrier_msg::invite::{
    IncomingInvite, InviteConfig, InviteError, InviteId, InviteInbox, Invites, HOLD_GRACE,
    MAX_BUNDLE_BYTES, MAX_INVITE_DATA_BYTES,
};
use invite_support::{befriend, net, PATIENCE};

/// The next invite in `inbox`, within [`PATIENCE`].
async fn next(inbox: &mut InviteInbox) -> IncomingInvite {
    tokio::time::timeout(PATIENCE, inbox.recv())
        .await
        .expect("no invite in time")
        .expect("inbox closed")
}

/// Answers every invite in `inbox`: data starting with `no` is refused with status -7 and a
/// reason, anything else confirmed with the same data back.
fn answer_all(invites: Invites, mut inbox: InviteInbox) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(invite) = inbox.recv().await {
            let replied = if invite.data.starts_with(b"no") {
                invites
                    .reply_invite(invite.id, -7, "not now, thanks", b"")
                    .await
            } else {
                invites.reply_invite(invite.id, 0, "", &invite.data).await
            };
            // A link lost under the invite keeps the reply for the invite sent again.
            match replied {
                Ok(()) | Err(InviteError::InviterGone(_)) => {}
                Err(e) => panic!("{e}"),
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invites_are_confirmed_refused_with_a_reason_and_refused_for_an_unknown_extension() {
    let net = net(51, 1).await;
    let mut alice = net
        .node([127, 52, 1, 1], "alice", InviteConfig::default())
        .await;
    let mut bob = net
        .node([127, 52, 2, 1], "bob", InviteConfig::default())
        .await;
    befriend(&mut alice, &mut bob).await;
    let mut chat = bob.invites.register_extension("chat").unwrap();
    assert!(matches!(
        bob.invites.register_extension("chat"),
        Err(InviteError::AlreadyRegistered(name)) if name == "chat"
    ));

    // Confirmed, by hand, so the invite can be looked at on Bob's side.
    let inviter = alice.invites.clone();
    let bob_id = bob.id();
    let invite = tokio::spawn(async move {
        inviter
            .invite(&bob_id, "chat", b"bundle/1", b"shall we talk?")
            .await
    });
    let incoming = next(&mut chat).await;
    assert_eq!(incoming.from, alice.id());
    assert_eq!(incoming.extension, "chat");
    assert_eq!(incoming.bundle, b"bundle/1");
    assert_eq!(incoming.data, b"shall we talk?");
    assert_eq!(bob.invites.pending(), vec![incoming.clone()]);
    // The link the invite came on may lose the race of the two friends' first dials: the
    // reply is then kept and sent on the next link, where the invite comes again.
    match bob
        .invites
        .reply_invite(incoming.id, 0, "", b"yes, on port 7")
        .await
    {
        Ok(()) | Err(InviteError::InviterGone(_)) => {}
        Err(e) => panic!("{e}"),
    }
    let reply = invite.await.unwrap().unwrap();
    assert!(reply.is_confirmed());
    assert_eq!(reply.reason, "");
    assert_eq!(reply.data, b"yes, on port 7");
    assert!(bob.invites.pending().is_empty());
    // Replying twice, or to an invite never received, is refused.
    assert!(matches!(
        bob.invites.reply_invite(incoming.id, 0, "", b"again").await,
        Err(InviteError::AlreadyReplied(id)) if id == incoming.id
    ));
    let never = InviteId::from_u64(incoming.id.as_u64() + 1000);
    assert!(matches!(
        bob.invites.reply_invite(never, 1, "", b"").await,
        Err(InviteError::UnknownInvite(id)) if id == never
    ));

    // Refused with a reason.
    let answering = answer_all(bob.invites.clone(), chat);
    let reply = alice
        .invites
        .invite(&bob.id(), "chat", b"", b"no? then later")
        .await
        .unwrap();
    assert!(!reply.is_confirmed());
    assert_eq!(reply.status, -7);
    assert_eq!(reply.reason, "not now, thanks");
    assert!(reply.data.is_empty());

    // An extension nobody registered on Bob's node: refused at once, by Bob's node.
    let started = tokio::time::Instant::now();
    let refused = alice
        .invites
        .invite(&bob.id(), "files", b"", b"take this")
        .await;
    assert!(matches!(
        refused,
        Err(InviteError::UnknownExtension { friend, extension })
            if friend == bob.id() && extension == "files"
    ));
    assert!(started.elapsed() < PATIENCE, "refused, not timed out");
    assert!(bob.invites.pending().is_empty());

    // Each refused argument has its own error, and nothing is sent.
    let stranger = Keypair::generate().id();
    let a = &alice.invites;
    let to = bob.id();
    assert!(matches!(
        a.invite(&alice.id(), "chat", b"", b"d").await,
        Err(InviteError::Yourself)
    ));
    assert!(matches!(
        a.invite(&stranger, "chat", b"", b"d").await,
        Err(InviteError::NotAFriend(id)) if id == stranger
    ));
    assert!(matches!(
        a.invite(&to, "", b"", b"d").await,
        Err(InviteError::EmptyExtension)
    ));
    assert!(matches!(
        a.invite(&to, &"e".repeat(32), b"", b"d").await,
        Err(InviteError::ExtensionTooLong { len: 32, max: 31 })
    ));
    assert!(matches!(
        a.invite(&to, "chat", &[0; MAX_BUNDLE_BYTES + 1], b"d")
            .await,
        Err(InviteError::BundleTooLong { len: 512, max: 511 })
    ));
    assert!(matches!(
        a.invite(&to, "chat", b"", b"").await,
        Err(InviteError::EmptyData)
    ));
    // The largest bundle goes through.
    let reply = a
        .invite(&to, "chat", &[b'b'; MAX_BUNDLE_BYTES], b"ok")
        .await
        .unwrap();
    assert_eq!(reply.data, b"ok");

    answering.abort();
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_data_of_1200_1270_2550_and_8192_bytes_round_trips_and_8193_is_refused() {
    let net = net(53, 1).await;
    let mut alice = net
        .node([127, 54, 1, 1], "alice", InviteConfig::default())
        .await;
    let mut bob = net
        .node([127, 54, 2, 1], "bob", InviteConfig::default())
        .await;
    befriend(&mut alice, &mut bob).await;
    let chat = bob.invites.register_extension("chat").unwrap();
    let answering = answer_all(bob.invites.clone(), chat);

    for len in [1200, 1270, 2550, MAX_INVITE_DATA_BYTES] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
        let reply = alice
            .invites
            .invite(&bob.id(), "chat", b"sizes", &data)
            .await
            .unwrap();
        assert!(reply.is_confirmed());
        assert_eq!(reply.data, data, "{len} bytes there and back");
    }
    assert!(matches!(
        alice
            .invites
            .invite(&bob.id(), "chat", b"", &[1; MAX_INVITE_DATA_BYTES + 1])
            .await,
        Err(InviteError::DataTooLong {
            len: 8193,
            max: 8192
        })
    ));

    answering.abort();
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_invite_times_out_and_the_invitee_forgets_it() {
    let net = net(55, 1).await;
    let timeout = Duration::from_secs(2);
    let mut alice = net
        .node(
            [127, 56, 1, 1],
            "alice",
            InviteConfig::default().with_timeout(timeout),
        )
        .await;
    let mut bob = net
        .node([127, 56, 2, 1], "bob", InviteConfig::default())
        .await;
    befriend(&mut alice, &mut bob).await;
    let mut slow = bob.invites.register_extension("slow").unwrap();

    let started = tokio::time::Instant::now();
    let inviter = alice.invites.clone();
    let bob_id = bob.id();
    let invite = tokio::spawn(async move { inviter.invite(&bob_id, "slow", b"", b"hello?").await });
    let incoming = next(&mut slow).await;
    assert_eq!(bob.invites.pending(), vec![incoming.clone()]);
    let outcome = invite.await.unwrap();
    assert!(matches!(outcome, Err(InviteError::Timeout)), "{outcome:?}");
    assert!(started.elapsed() >= timeout);

    // Alice gave up, and Bob holds the invite no longer than she waits (and a grace).
    tokio::time::sleep(HOLD_GRACE + Duration::from_millis(200)).await;
    assert!(bob.invites.pending().is_empty());
    assert!(matches!(
        bob.invites
            .reply_invite(incoming.id, 0, "", b"too late")
            .await,
        Err(InviteError::UnknownInvite(_))
    ));

    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_to_an_offline_friend_waits_for_its_link() {
    let net = net(57, 1).await;
    let config = InviteConfig::default().with_timeout(PATIENCE);
    let mut alice = net.node([127, 58, 1, 1], "alice", config.clone()).await;
    let mut bob = net.node([127, 58, 2, 1], "bob", config.clone()).await;
    befriend(&mut alice, &mut bob).await;
    let bob_id = bob.id();
    let (bob_dir, bob_bind) = bob.stop().await;
    alice
        .until(|e| *e == carrier_msg::friend::FriendEvent::Disconnected(bob_id))
        .await;

    let inviter = alice.invites.clone();
    let invite = tokio::spawn(async move { inviter.invite(&bob_id, "chat", b"", b"back?").await });
    // Bob is offline: the invite waits.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!invite.is_finished());

    let bob = net.start(bob_dir, bob_bind, config).await;
    let chat = bob.invites.register_extension("chat").unwrap();
    let answering = answer_all(bob.invites.clone(), chat);
    let reply = tokio::time::timeout(PATIENCE, invite)
        .await
        .expect("no reply in time")
        .unwrap()
        .unwrap();
    assert_eq!(reply.data, b"back?");

    answering.abort();
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_whose_link_closes_is_sent_again_raised_once_and_answered_on_the_next_link() {
    let net = net(59, 1).await;
    let config = InviteConfig::default().with_timeout(PATIENCE);
    let mut alice = net.node([127, 60, 1, 1], "alice", config.clone()).await;
    let mut bob = net.node([127, 60, 2, 1], "bob", config).await;
    befriend(&mut alice, &mut bob).await;
    let mut chat = bob.invites.register_extension("chat").unwrap();
    let (alice_id, bob_id) = (alice.id(), bob.id());

    // The link closes while Bob holds the invite: Alice sends it again on the next link, Bob
    // raises it once, and his reply goes on the new stream.
    let inviter = alice.invites.clone();
    let first = tokio::spawn(async move { inviter.invite(&bob_id, "chat", b"", b"one").await });
    let incoming = next(&mut chat).await;
    let link = alice.friends.link(&bob_id).unwrap();
    let at_bob = bob.friends.link(&alice_id).unwrap();
    link.close(close::SILENT, b"test: lost");
    at_bob.connection().closed().await;
    invite_support::wait_for(|| {
        let held = alice.friends.link(&bob_id);
        held.filter(|l| l.connection().stable_id() != link.connection().stable_id())
    })
    .await;
    // Sent again: Bob's pending list still holds it once, and nothing new was raised.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(bob.invites.pending(), vec![incoming.clone()]);
    assert!(chat.try_recv().is_none());
    bob.invites
        .reply_invite(incoming.id, 0, "", b"one, at last")
        .await
        .unwrap();
    assert_eq!(first.await.unwrap().unwrap().data, b"one, at last");

    // The link closes before Bob replies, and Bob's node takes no invite stream for now: his
    // reply finds the stream gone, and is given to Alice when she sends the invite again on
    // the next link.
    let inviter = alice.invites.clone();
    let second = tokio::spawn(async move { inviter.invite(&bob_id, "chat", b"", b"two").await });
    let incoming = next(&mut chat).await;
    let link = alice.friends.link(&bob_id).unwrap();
    let at_bob = bob.friends.link(&alice_id).unwrap();
    bob.pump_open.send(false).unwrap();
    link.close(close::SILENT, b"test: lost");
    at_bob.connection().closed().await;
    assert!(matches!(
        bob.invites.reply_invite(incoming.id, 0, "", b"two, kept").await,
        Err(InviteError::InviterGone(id)) if id == incoming.id
    ));
    bob.pump_open.send(true).unwrap();
    let reply = tokio::time::timeout(PATIENCE, second)
        .await
        .expect("no reply in time")
        .unwrap()
        .unwrap();
    assert_eq!(reply.data, b"two, kept");
    assert!(chat.try_recv().is_none(), "raised once");
    assert!(bob.invites.pending().is_empty());

    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_stream_the_invitee_lets_go_unanswered_is_sent_again_and_answered() {
    let net = net(59, 11).await;
    let config = InviteConfig::default().with_timeout(PATIENCE);
    let mut alice = net.node([127, 60, 11, 1], "alice", config.clone()).await;
    let mut bob = net.node([127, 60, 12, 1], "bob", config).await;
    befriend(&mut alice, &mut bob).await;
    let chat = bob.invites.register_extension("chat").unwrap();
    let answering = answer_all(bob.invites.clone(), chat);
    // Bob's node reads the first stream and finishes it with no answer: an end with nothing
    // is no answer, not a malformed one, and the invite goes again.
    bob.drop_unanswered
        .store(1, std::sync::atomic::Ordering::SeqCst);
    let reply = alice
        .invites
        .invite(&bob.id(), "chat", b"", b"hello")
        .await
        .unwrap();
    assert_eq!(reply.data, b"hello");
    assert_eq!(
        bob.drop_unanswered
            .load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the first stream was let go"
    );
    answering.abort();
    alice.stop().await;
    bob.stop().await;
}
