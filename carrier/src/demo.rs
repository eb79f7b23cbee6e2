//! `carrier demo`: a whole Carrier network on this machine, and two friends using it.
//!
//! Every node binds its own UDP socket on 127.0.0.1, so everything runs through the real
//! stack: DHT packets, QUIC links with TLS 1.3, the durable outbox, the data directories.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use std::collections::VecDeque;

use carrier::dht::id::CarrierId;
use carrier::dht::{BootstrapNode, Dht, DhtConfig};
use carrier::friend::{FriendEvent, Friends, Presence, UserInfo};
use carrier::msg::{MessageEvent, Messenger};
use carrier::{Carrier, Event, Events};

/// What can stop the demo (or the node): any layer's error, or a step that did not happen in
/// time.
pub(crate) type Error = Box<dyn std::error::Error + Send + Sync>;

/// How long any one step may take before the demo gives up.
const STEP_LIMIT: Duration = Duration::from_secs(30);

/// Where every node binds: loopback, a port of its own.
const LOOPBACK: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// A DHT node's settings for the demo: a network on one machine (every node a server from
/// the start, no per-subnet limit, since all share 127.0.0.1), joining through `seed`.
fn config(bind: SocketAddr, data_dir: Option<PathBuf>, seed: Option<&Dht>) -> DhtConfig {
    let mut config = DhtConfig::local(bind)
        .with_bootstrap(seed.map(|s| BootstrapNode::new(s.id(), s.local_addr())));
    config.data_dir = data_dir;
    config.query_timeout = Duration::from_secs(10);
    config
}

/// One of the two friends: a [`Carrier`] node (DHT, friend layer, messenger) on its own data
/// directory, and the events it reported that the demo has not waited for yet.
struct Person {
    name: &'static str,
    node: Carrier,
    events: Events,
    /// Events read while waiting for another, in order: the next wait looks here first.
    pending: VecDeque<Event>,
}

impl Person {
    /// Starts (or starts again, from its directory and on its port) `name`'s node.
    async fn start(
        name: &'static str,
        dir: PathBuf,
        bind: SocketAddr,
        seed: &Dht,
    ) -> Result<Person, Error> {
        // A node that was shut down has let go of its database: it reopens at once.
        let (node, events) = Carrier::builder()
            .local(bind)
            .bootstrap([BootstrapNode::new(seed.id(), seed.local_addr())])
            .data_dir(dir)
            .start()
            .await?;
        Ok(Person {
            name,
            node,
            events,
            pending: VecDeque::new(),
        })
    }

    fn id(&self) -> CarrierId {
        self.node.id()
    }

    fn friends(&self) -> &Friends {
        self.node.friends()
    }

    fn messenger(&self) -> &Messenger {
        self.node.messenger()
    }

    /// Waits for the event `want` picks (among those read before, then new ones), within
    /// [`STEP_LIMIT`]; events it does not pick stay for later waits.
    async fn until_event<T>(
        &mut self,
        what: &str,
        mut want: impl FnMut(&Event) -> Option<T>,
    ) -> Result<T, Error> {
        if let Some(found) = self.pending.iter().position(|e| want(e).is_some()) {
            if let Some(event) = self.pending.remove(found) {
                if let Some(value) = want(&event) {
                    return Ok(value);
                }
            }
        }
        let deadline = tokio::time::Instant::now() + STEP_LIMIT;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .map_err(|_| format!("{}: {what} did not happen within {STEP_LIMIT:?}", self.name))?
                .ok_or_else(|| format!("{}: the node stopped", self.name))?;
            match want(&event) {
                Some(value) => return Ok(value),
                None => self.pending.push_back(event),
            }
        }
    }

    /// Waits for the friend event `want` picks.
    async fn until<T>(
        &mut self,
        what: &str,
        mut want: impl FnMut(&FriendEvent) -> Option<T>,
    ) -> Result<T, Error> {
        self.until_event(what, |e| match e {
            Event::Friend(e) => want(e),
            _ => None,
        })
        .await
    }

    /// Waits for the message event `want` picks.
    async fn until_message<T>(
        &mut self,
        what: &str,
        mut want: impl FnMut(&MessageEvent) -> Option<T>,
    ) -> Result<T, Error> {
        self.until_event(what, |e| match e {
            Event::Message(e) => want(e),
            _ => None,
        })
        .await
    }

    /// Stops the node; where to start it again.
    async fn stop(self) -> Result<(PathBuf, SocketAddr), Error> {
        let (dir, bind) = (
            self.node.data_dir().to_path_buf(),
            self.node.dht().local_addr(),
        );
        self.node.shutdown().await;
        Ok((dir, bind))
    }
}

/// Prints one step, with the time since `since`.
fn step(since: Instant, text: &str) {
    println!(
        "[{:>7.1} ms] {text}",
        since.elapsed().as_secs_f64() * 1000.0
    );
}

/// Runs the demo with `servers` DHT nodes besides the friends'.
pub(crate) async fn run(servers: u8) -> Result<(), Error> {
    let started = Instant::now();
    let dir = tempfile::tempdir()?;
    println!("Carrier demo: a network on this machine (127.0.0.1), real UDP and QUIC.\n");

    let mut seeds: Vec<Dht> = Vec::new();
    for _ in 0..servers {
        let dht = Dht::bind(config(LOOPBACK, None, seeds.first())).await?;
        if !seeds.is_empty() {
            dht.bootstrap().await?;
        }
        seeds.push(dht);
    }
    let first = seeds
        .first()
        .ok_or("the demo needs at least one DHT node")?
        .clone();
    step(
        started,
        &format!(
            "{servers} DHT nodes form a Kademlia network; the first is {}",
            seed_line(&first)
        ),
    );

    let mut alice = Person::start("alice", dir.path().join("alice"), LOOPBACK, &first).await?;
    let mut bob = Person::start("bob", dir.path().join("bob"), LOOPBACK, &first).await?;
    alice
        .friends()
        .set_user_info(UserInfo::new("Alice", "at home").ok_or("a bad name")?)
        .await?;
    bob.friends()
        .set_user_info(UserInfo::new("Bob", "at work").ok_or("a bad name")?)
        .await?;
    step(started, "Alice and Bob start, each with a data directory:");
    println!("             Alice's Carrier ID is {}", alice.id());
    println!(
        "             her address (ID, nospam, checksum) is {}",
        alice.friends().address()
    );
    println!("             Bob's Carrier ID is {}", bob.id());

    let asked = Instant::now();
    bob.friends()
        .add_friend(
            &alice.friends().address().to_string(),
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
        started,
        &format!(
            "Alice gets a friend request from {} ({}): \"{}\" ({:.1} ms after Bob sent it; \
             Bob found her through her peer record in the DHT)",
            request.info.name(),
            request.from,
            String::from_utf8_lossy(&request.hello),
            ms(asked)
        ),
    );

    let accepted = Instant::now();
    alice.friends().accept_friend(&bob.id()).await?;
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
        started,
        &format!(
            "Alice accepts: they are friends, linked by QUIC with TLS 1.3 keyed by their \
             Carrier IDs ({:.1} ms after the accept)",
            ms(accepted)
        ),
    );

    let changed = Instant::now();
    alice.friends().set_presence(Presence::Away).await?;
    bob.until("Alice's presence", |e| {
        (*e == FriendEvent::PresenceChanged(a, Presence::Away)).then_some(())
    })
    .await?;
    step(
        started,
        &format!(
            "Alice sets her presence to away; Bob sees it {:.1} ms later",
            ms(changed)
        ),
    );

    let sent = Instant::now();
    let id = bob.messenger().send(&a, b"Lunch at one?").await?;
    let message = alice
        .until_message("Bob's message", |e| match e {
            MessageEvent::Message(m) if m.id == id => Some(m.clone()),
            _ => None,
        })
        .await?;
    let raised = ms(sent);
    alice.messenger().ack(message.id).await?;
    bob.until_message("the receipt", |e| match e {
        MessageEvent::Delivered { id: done, .. } if *done == id => Some(()),
        _ => None,
    })
    .await?;
    step(
        started,
        &format!(
            "Bob messages Alice: \"{}\" reaches her {raised:.1} ms after he sent it, and her \
             node's receipt is back at his after {:.1} ms (committed on disk at both ends)",
            String::from_utf8_lossy(&message.bytes),
            ms(sent)
        ),
    );

    let mut chat = bob.messenger().register_extension("chat")?;
    let answering = bob.messenger().clone();
    let answer = tokio::spawn(async move {
        if let Some(invite) = chat.recv().await {
            let _ = answering
                .reply_invite(invite.id, 0, "", b"see you there")
                .await;
        }
    });
    let invited = Instant::now();
    let reply = alice
        .messenger()
        .invite(&b, "chat", b"", b"a call at one?")
        .await?;
    answer.await?;
    step(
        started,
        &format!(
            "Alice invites Bob to his \"chat\" extension; he confirms with \"{}\" ({:.1} ms \
             round trip; sessions will open this way)",
            String::from_utf8_lossy(&reply.data),
            ms(invited)
        ),
    );

    let (alice_dir, alice_bind) = alice.stop().await?;
    bob.until("Alice going offline", |e| {
        (*e == FriendEvent::Disconnected(a)).then_some(())
    })
    .await?;
    step(started, "Alice goes offline; Bob sees her disconnected");
    let info = UserInfo::new("Bob", "back from lunch").ok_or("a bad description")?;
    bob.friends().set_user_info(info.clone()).await?;
    let waiting = bob.messenger().send(&a, b"Running late, sorry!").await?;
    bob.until_message("the message stored in Alice's mailbox", |e| match e {
        MessageEvent::Stored { id, .. } if *id == waiting => Some(()),
        _ => None,
    })
    .await?;
    step(
        started,
        "Bob changes his description and messages her while she is offline: the message waits \
         sealed in her mailbox on the DHT, and both wait in his durable outbox",
    );

    let restarted = Instant::now();
    let mut alice = Person::start("alice", alice_dir, alice_bind, &first).await?;
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
        started,
        &format!(
            "Alice starts again from her directory: linked to Bob {linked:.1} ms later, and \
             his description is \"{}\"",
            seen.description()
        ),
    );
    if seen != info {
        return Err("Alice got another description than Bob set".into());
    }
    let late = alice
        .until_message("Bob's message sent while she was away", |e| match e {
            MessageEvent::Message(m) if m.id == waiting => Some(m.clone()),
            _ => None,
        })
        .await?;
    alice.messenger().ack(late.id).await?;
    bob.until_message("the receipt of the offline message", |e| match e {
        MessageEvent::Delivered { id, .. } if *id == waiting => Some(()),
        _ => None,
    })
    .await?;
    step(
        started,
        &format!(
            "Alice gets the message Bob sent while she was away: \"{}\" (offline: {}); Bob \
             gets its receipt",
            String::from_utf8_lossy(&late.bytes),
            late.offline
        ),
    );

    println!(
        "\nDone in {:.1} s. Streams (try `carrier pipe`), channels and port forwarding join the demo next; see README.md. \
         Stopping every node cleanly…",
        started.elapsed().as_secs_f64()
    );
    alice.stop().await?;
    bob.stop().await?;
    for seed in seeds {
        seed.shutdown().await?;
    }
    Ok(())
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

fn seed_line(node: &Dht) -> String {
    format!("{}@{}", node.id(), node.local_addr())
}
