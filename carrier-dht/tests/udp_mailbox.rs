//! Mailboxes between real nodes on real UDP sockets over 127.1.x.1: a 64 KiB letter deposited
//! for a recipient that restarts before fetching it, read and deleted by that recipient only;
//! friend requests by nospam; and deposits refused over quota or over size.

// Helpers of these tests unwrap as the tests do: a failure is the test failing.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use carrier_dht::id::{Address, Keypair, Nospam};
use carrier_dht::mailbox::{day_of, mailbox_key, open_letters};
use carrier_dht::{
    BootstrapNode, Dht, DhtConfig, DhtError, MailboxError, MailboxKind, MAX_LETTER_BYTES,
};

const NODES: usize = 16;
const SENDER: usize = 3;
const RECIPIENT: usize = 5;
const STRANGER: usize = 7;
/// Items one mailbox may hold at each storer here: one 64 KiB letter (98 items) fits, two do
/// not.
const ITEMS_PER_MAILBOX: usize = 150;

/// Node `i` listens on 127.1.(i+1).1: no two nodes share a /24.
fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 1, (i + 1) as u8, 1], 0))
}

fn keypair(i: usize) -> Keypair {
    Keypair::from_seed(&[i as u8 + 101; 32])
}

fn config(i: usize, data_dir: Option<std::path::PathBuf>) -> DhtConfig {
    let mut config = DhtConfig::new(addr(i));
    config.keypair = data_dir.is_none().then(|| keypair(i));
    config.data_dir = data_dir;
    config.query_timeout = Duration::from_secs(20);
    config.node.server = true;
    config.node.mailbox.max_items_per_mailbox = ITEMS_PER_MAILBOX;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_letter_survives_its_recipients_restart_and_only_the_recipient_reads_or_deletes_it() {
    let dirs = tempfile::tempdir().unwrap();
    let recipient_dir = dirs.path().join("recipient");
    let first = Dht::bind(config(0, None)).await.unwrap();
    let seed = BootstrapNode::new(first.id(), first.local_addr());
    let mut nodes = vec![first];
    for i in 1..NODES {
        let dir = (i == RECIPIENT).then(|| recipient_dir.clone());
        let mut config = config(i, dir);
        config.bootstrap = vec![seed.clone()];
        let node = Dht::bind(config).await.unwrap();
        // One after another, as a network grows.
        node.bootstrap().await.unwrap();
        nodes.push(node);
    }
    common::settle(&nodes).await;
    let recipient_id = nodes[RECIPIENT].id();
    let sender_id = nodes[SENDER].id();

    // A 64 KiB letter, deposited while the recipient is about to go away.
    let letter: Vec<u8> = (0..MAX_LETTER_BYTES).map(|i| (i * 7) as u8).collect();
    let deposit = nodes[SENDER].deposit(&recipient_id, &letter).await.unwrap();
    assert_eq!(deposit.items, 98, "97 chunks and a manifest");
    assert!(deposit.fewest_acks >= 1, "{deposit:?}");
    println!("64 KiB letter: {deposit:?}");

    // The recipient restarts on its data directory (same key, saved contacts).
    let recipient = nodes.remove(RECIPIENT);
    recipient.shutdown().await.unwrap();
    let mut restarted = config(RECIPIENT, Some(recipient_dir.clone()));
    restarted.bootstrap = Vec::new();
    let recipient = Dht::bind(restarted).await.unwrap();
    assert_eq!(recipient.id(), recipient_id, "same key after the restart");
    recipient.bootstrap().await.unwrap();

    // A stranger can fetch the sealed items but not open them, nor delete them.
    let stranger = &nodes[STRANGER - 1];
    let key = deposit.mailbox;
    let day = day_of(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    );
    assert!(
        key == mailbox_key(&recipient_id, MailboxKind::Messages, day)
            || key == mailbox_key(&recipient_id, MailboxKind::Messages, day - 1),
        "the mailbox key is the recipient's of the day"
    );
    let sealed = stranger.fetch_items(key).await.unwrap();
    assert_eq!(sealed.len(), 98);
    assert!(open_letters(&keypair(STRANGER), key, &sealed).is_empty());
    assert!(
        stranger.fetch().await.unwrap().is_empty(),
        "not its mailbox"
    );

    // The recipient reads it, verified and whole, from the sender.
    let letters = recipient.fetch().await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].sender, sender_id);
    assert_eq!(letters[0].bytes, letter);

    // The stranger knows every item ID, but not the delete secrets.
    match stranger.delete(&letters[0]).await {
        Err(DhtError::Mailbox(MailboxError::NoStorerAccepted { missing, .. })) => {
            assert_eq!(missing, 98)
        }
        other => panic!("a stranger's delete: {other:?}"),
    }
    assert_eq!(stranger.fetch_items(key).await.unwrap().len(), 98);

    // The recipient's restart made others hand the mailbox on to whoever stood in for it, and
    // to it again when it came back: let that settle, so no copy is in flight during the delete.
    let mut all: Vec<&Dht> = nodes.iter().collect();
    all.push(&recipient);
    common::until_still(|| {
        all.iter()
            .map(|n| n.with_node(|core| core.mailboxes().items_in(&key)))
            .collect::<Vec<_>>()
    })
    .await;

    // The recipient deletes it. A delete succeeds once every item is gone from at least one
    // storer; a storer whose requests were all lost keeps its copy, and deleting again (which
    // changes nothing where the item is already gone) clears it. Within three deletes the
    // letter is gone from every storer.
    assert!(recipient.delete(&letters[0]).await.unwrap() >= 1);
    assert!(recipient.fetch().await.unwrap().is_empty());
    let mut left = stranger.fetch_items(key).await.unwrap().len();
    for _ in 0..2 {
        if left == 0 {
            break;
        }
        assert!(recipient.delete(&letters[0]).await.unwrap() >= 1);
        left = stranger.fetch_items(key).await.unwrap().len();
    }
    assert_eq!(left, 0, "items left after three deletes");

    // Friend requests go to the mailbox the nospam selects.
    let address = Address::new(recipient_id, Nospam(0x0bad_cafe));
    nodes[SENDER]
        .deposit_request(&address, b"be my friend")
        .await
        .unwrap();
    let requests = recipient.fetch_requests(Nospam(0x0bad_cafe)).await.unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].bytes, b"be my friend");
    assert!(recipient
        .fetch_requests(Nospam(1))
        .await
        .unwrap()
        .is_empty());
    assert!(recipient.fetch().await.unwrap().is_empty());

    // Over quota: one more 64 KiB letter fits the mailbox, a second does not.
    nodes[SENDER].deposit(&recipient_id, &letter).await.unwrap();
    match nodes[SENDER].deposit(&recipient_id, &letter).await {
        Err(DhtError::Mailbox(MailboxError::Quota { missing, items })) => {
            assert_eq!(items, 98);
            // A storer that holds the first 98 items takes 52 more; one that missed the
            // first letter (storer sets can shift between deposits) takes more of them.
            assert!(
                (1..=98 - (ITEMS_PER_MAILBOX - 98)).contains(&missing),
                "{missing} items refused"
            );
        }
        other => panic!("a deposit over quota: {other:?}"),
    }
    let too_large = vec![0; MAX_LETTER_BYTES + 1];
    assert!(matches!(
        nodes[SENDER].deposit(&recipient_id, &too_large).await,
        Err(DhtError::Mailbox(MailboxError::TooLarge { .. }))
    ));
}
