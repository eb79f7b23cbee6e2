//! Real nodes for the channels' tests: a small DHT of seed servers on 127.x.y.1 and friend
//! nodes with a messenger and a sessions layer each (copied from carrier-stream's
//! `tests/common`, what these tests need), and a mux between two of them.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use carrier_mux::stream::msg::friend::dht::id::CarrierId;
use carrier_mux::stream::msg::friend::dht::{BootstrapNode, Dht, DhtConfig};
use carrier_mux::stream::msg::friend::{FriendEvent, FriendEvents, Friends, FriendsConfig};
use carrier_mux::stream::msg::{MessageEvents, Messenger, MessengerConfig};
use carrier_mux::stream::{Session, SessionConfig, Sessions};
use carrier_mux::{ChannelRequests, Mux, MuxConfig};

/// DHT servers besides the friends' own nodes.
const SEEDS: usize = 3;
/// How long anything may take to arrive: a bound on outcomes, not a speed assertion.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// A small DHT (each seed on its own /24), and a place for the nodes' data.
pub(crate) struct Net {
    pub(crate) seeds: Vec<Dht>,
    pub(crate) dir: tempfile::TempDir,
}

fn server(bind: SocketAddr, data_dir: Option<PathBuf>, seed: Option<&Dht>) -> DhtConfig {
    let mut config = DhtConfig::new(bind);
    config.data_dir = data_dir;
    config.query_timeout = Duration::from_secs(10);
    config.node.server = true;
    config.bootstrap = seed
        .map(|s| vec![BootstrapNode::new(s.id(), s.local_addr())])
        .unwrap_or_default();
    config
}

/// A small DHT whose seeds are on 127.`a`.`b + i`.1.
pub(crate) async fn net(a: u8, b: u8) -> Net {
    let mut seeds: Vec<Dht> = Vec::new();
    for i in 0..SEEDS {
        let bind = SocketAddr::from(([127, a, b + i as u8, 1], 0));
        let dht = Dht::bind(server(bind, None, seeds.first())).await.unwrap();
        if i > 0 {
            dht.bootstrap().await.unwrap();
        }
        seeds.push(dht);
    }
    Net {
        seeds,
        dir: tempfile::tempdir().unwrap(),
    }
}

/// A node: its friend layer, messenger and sessions, where its data is and where it listens.
pub(crate) struct Node {
    pub(crate) friends: Friends,
    pub(crate) friend_events: FriendEvents,
    pub(crate) messenger: Messenger,
    pub(crate) message_events: MessageEvents,
    pub(crate) sessions: Sessions,
    pub(crate) dir: PathBuf,
    pub(crate) bind: SocketAddr,
}

impl Node {
    pub(crate) fn id(&self) -> CarrierId {
        self.friends.id()
    }

    /// Skips friend events until `want` picks one, within [`PATIENCE`].
    pub(crate) async fn until_friend(&mut self, mut want: impl FnMut(&FriendEvent) -> bool) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let event = tokio::time::timeout_at(deadline, self.friend_events.recv())
                .await
                .expect("no such friend event in time")
                .expect("friend events closed");
            if want(&event) {
                return;
            }
        }
    }

    /// Waits until the link to `peer` is up.
    pub(crate) async fn linked(&mut self, peer: CarrierId) {
        if self.friends.is_online(&peer) {
            return;
        }
        self.until_friend(|e| *e == FriendEvent::Connected(peer))
            .await;
    }

    /// Stops the node and waits until its database is closed; where to start it again.
    pub(crate) async fn stop(self) -> (PathBuf, SocketAddr) {
        self.sessions.shutdown().await;
        drop(self.sessions);
        self.messenger.shutdown().await;
        drop(self.messenger);
        self.friends.shutdown().await;
        let dht = self.friends.dht().clone();
        drop(self.friends);
        dht.shutdown().await.unwrap();
        (self.dir, self.bind)
    }
}

impl Net {
    /// A node named `name` on `ip`, its data in the net's directory.
    pub(crate) async fn node(&self, ip: [u8; 4], name: &str, config: SessionConfig) -> Node {
        self.start(
            self.dir.path().join(name),
            SocketAddr::from((ip, 0)),
            config,
        )
        .await
    }

    /// Starts (or starts again) the node whose data is in `dir`, on `bind`.
    pub(crate) async fn start(
        &self,
        dir: PathBuf,
        bind: SocketAddr,
        config: SessionConfig,
    ) -> Node {
        // A node stopped a moment ago may still hold its port while its last connections
        // drain: polled, within PATIENCE.
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let dht = loop {
            match Dht::bind(server(bind, Some(dir.clone()), self.seeds.first())).await {
                Ok(dht) => break dht,
                Err(error) if tokio::time::Instant::now() < deadline => {
                    let _ = error;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => panic!("start {bind}: {error}"),
            }
        };
        let (friends, friend_events) = Friends::start(dht, FriendsConfig::for_tests())
            .await
            .unwrap();
        let (messenger, message_events) =
            Messenger::start(friends.clone(), MessengerConfig::for_tests())
                .await
                .unwrap();
        let sessions = Sessions::start(&friends, &messenger, config).await.unwrap();
        let bind = friends.dht().local_addr();
        Node {
            friends,
            friend_events,
            messenger,
            message_events,
            sessions,
            dir,
            bind,
        }
    }
}

/// `a` asks `b`, `b` accepts: friends both ways, linked.
pub(crate) async fn befriend(a: &mut Node, b: &mut Node) {
    a.friends
        .add_friend(&b.friends.address().to_string(), b"hello")
        .await
        .unwrap();
    let from = a.id();
    b.until_friend(|e| matches!(e, FriendEvent::Request(r) if r.from == from))
        .await;
    b.friends.accept_friend(&a.id()).await.unwrap();
    let added = b.id();
    a.until_friend(|e| *e == FriendEvent::Added(added)).await;
    a.linked(b.id()).await;
    b.linked(a.id()).await;
}

/// A net on 127.`a`.`b`.x and two friends on it, linked, with `config` on both.
pub(crate) async fn friends(a: u8, b: u8, config: SessionConfig) -> (Net, Node, Node) {
    let net = net(a, b).await;
    let mut alice = net.node([127, a, b + 10, 1], "alice", config.clone()).await;
    let mut bob = net.node([127, a, b + 11, 1], "bob", config).await;
    befriend(&mut alice, &mut bob).await;
    (net, alice, bob)
}

/// Within [`PATIENCE`], or the test fails naming `what`.
pub(crate) async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {PATIENCE:?}"))
}

/// A session between the two nodes (Bob takes every bundle), as (Alice's end, Bob's end).
pub(crate) async fn session(alice: &Node, bob: &Node) -> (Session, Session) {
    let mut requests = bob.sessions.handle("").unwrap();
    let bob_id = bob.id();
    let asked = tokio::spawn({
        let sessions = alice.sessions.clone();
        async move { sessions.request(&bob_id, "test").await }
    });
    let at_bob = within("the request", requests.recv())
        .await
        .unwrap()
        .accept()
        .await
        .unwrap();
    (asked.await.unwrap().unwrap(), at_bob)
}

/// A mux between the two sessions: (Alice's, Bob's), each with its channel requests.
pub(crate) async fn mux(
    at_alice: &Session,
    at_bob: &Session,
    config: MuxConfig,
) -> ((Mux, ChannelRequests), (Mux, ChannelRequests)) {
    let opened = within(
        "the multiplexed stream",
        Mux::open(at_alice, config.clone()),
    )
    .await
    .unwrap();
    let stream = within("Bob's stream", at_bob.accept_stream())
        .await
        .unwrap();
    let accepted = Mux::accept(stream, config).unwrap();
    (opened, accepted)
}

/// Two friends on 127.`a`.`b`.x with a session and a mux between them.
pub(crate) async fn muxed(
    a: u8,
    b: u8,
    config: MuxConfig,
) -> (
    Net,
    Node,
    Node,
    Session,
    Session,
    (Mux, ChannelRequests),
    (Mux, ChannelRequests),
) {
    let (net, alice, bob) = friends(a, b, SessionConfig::default()).await;
    let (at_alice, at_bob) = session(&alice, &bob).await;
    let (mine, theirs) = mux(&at_alice, &at_bob, config).await;
    (net, alice, bob, at_alice, at_bob, mine, theirs)
}

/// `len` bytes of a pattern seeded by `seed`.
pub(crate) fn pattern(seed: u64, len: usize) -> Vec<u8> {
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
pub(crate) async fn write_pattern(
    mut writer: impl tokio::io::AsyncWrite + Unpin,
    seed: u64,
    len: usize,
) -> blake3::Hash {
    use tokio::io::AsyncWriteExt;
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
pub(crate) async fn read_all(
    mut reader: impl tokio::io::AsyncRead + Unpin,
) -> (blake3::Hash, usize) {
    use tokio::io::AsyncReadExt;
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
