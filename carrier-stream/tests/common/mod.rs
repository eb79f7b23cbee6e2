//! Real nodes for the sessions' tests: a small DHT of seed servers on 127.x.y.1 and friend
//! nodes with a messenger and a sessions layer each (after carrier-msg's `tests/common`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use carrier_stream::msg::friend::dht::id::CarrierId;
use carrier_stream::msg::friend::dht::socket::{Conditioner, Fate, QUIC_CLASS_BIT};
use carrier_stream::msg::friend::dht::{BootstrapNode, Dht, DhtConfig};
use carrier_stream::msg::friend::{FriendEvent, FriendEvents, Friends, FriendsConfig};
use carrier_stream::msg::{Messenger, MessengerConfig};
use carrier_stream::{Session, SessionConfig, Sessions};

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
        let (messenger, _events) = Messenger::start(friends.clone(), MessengerConfig::for_tests())
            .await
            .unwrap();
        let sessions = Sessions::start(&friends, &messenger, config).await.unwrap();
        let bind = friends.dht().local_addr();
        Node {
            friends,
            friend_events,
            messenger,
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

/// Drops one in `one_in` QUIC packets a socket sends (a fixed pattern from a counter, so a
/// run is repeatable in its loss rate), and counts them.
pub(crate) struct QuicLoss {
    pub(crate) one_in: u64,
    pub(crate) sent: AtomicU64,
    pub(crate) dropped: AtomicU64,
}

impl QuicLoss {
    pub(crate) fn new(one_in: u64) -> Arc<Self> {
        Arc::new(QuicLoss {
            one_in,
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        })
    }
}

impl Conditioner for QuicLoss {
    fn outgoing(&self, _to: SocketAddr, data: &[u8]) -> Fate {
        if data.first().is_none_or(|b| b & QUIC_CLASS_BIT == 0) {
            return Fate::Pass;
        }
        let n = self.sent.fetch_add(1, Ordering::Relaxed);
        // splitmix64: spread the counter so losses are not periodic.
        let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        if z % self.one_in == 0 {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            Fate::Drop
        } else {
            Fate::Pass
        }
    }

    fn incoming(&self, _from: SocketAddr, _data: &[u8]) -> Fate {
        Fate::Pass
    }
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
