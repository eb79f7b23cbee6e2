//! Real nodes for the messenger's tests: a small DHT of seed servers on 127.x.y.1 and friend
//! nodes with data directories and a messenger each (after carrier-friend's
//! `tests/common/net.rs`, with the messenger on top).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use carrier_msg::friend::dht::id::CarrierId;
use carrier_msg::friend::dht::{BootstrapNode, Dht, DhtConfig, MailboxLimits};
use carrier_msg::friend::{FriendEvent, FriendEvents, Friends, FriendsConfig};
use carrier_msg::{MessageEvent, MessageEvents, Messenger, MessengerConfig};

/// DHT servers besides the friends' own nodes.
const SEEDS: usize = 4;
/// How long anything may take to arrive: a bound on outcomes, not a speed assertion.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// A small DHT (each seed on its own /24), and a place for the nodes' data.
pub(crate) struct Net {
    pub(crate) seeds: Vec<Dht>,
    pub(crate) dir: tempfile::TempDir,
    /// What every node's mailbox storer takes.
    pub(crate) limits: MailboxLimits,
}

fn server(
    bind: SocketAddr,
    data_dir: Option<PathBuf>,
    seed: Option<&Dht>,
    limits: MailboxLimits,
) -> DhtConfig {
    let mut config = DhtConfig::new(bind);
    config.node.mailbox = limits;
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
    net_with(a, b, MailboxLimits::default()).await
}

/// [`net`] whose mailbox storers take what `limits` allow.
pub(crate) async fn net_with(a: u8, b: u8, limits: MailboxLimits) -> Net {
    let mut seeds: Vec<Dht> = Vec::new();
    for i in 0..SEEDS {
        let bind = SocketAddr::from(([127, a, b + i as u8, 1], 0));
        let dht = Dht::bind(server(bind, None, seeds.first(), limits))
            .await
            .unwrap();
        if i > 0 {
            dht.bootstrap().await.unwrap();
        }
        seeds.push(dht);
    }
    Net {
        seeds,
        dir: tempfile::tempdir().unwrap(),
        limits,
    }
}

/// A node: its friend layer and messenger, their events, where its data is and where it
/// listens.
pub(crate) struct Node {
    pub(crate) friends: Friends,
    pub(crate) friend_events: FriendEvents,
    pub(crate) messenger: Messenger,
    pub(crate) events: MessageEvents,
    pub(crate) dir: PathBuf,
    pub(crate) bind: SocketAddr,
}

impl Node {
    pub(crate) fn id(&self) -> CarrierId {
        self.friends.id()
    }

    /// Skips message events until `want` picks one, within [`PATIENCE`].
    pub(crate) async fn until<T>(&mut self, mut want: impl FnMut(&MessageEvent) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .expect("no such event in time")
                .expect("events closed");
            if let Some(value) = want(&event) {
                return value;
            }
        }
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
    pub(crate) async fn node(&self, ip: [u8; 4], name: &str) -> Node {
        self.start(
            self.dir.path().join(name),
            SocketAddr::from((ip, 0)),
            MessengerConfig::for_tests(),
        )
        .await
    }

    /// Starts (or starts again) the node whose data is in `dir`, on `bind`.
    pub(crate) async fn start(
        &self,
        dir: PathBuf,
        bind: SocketAddr,
        config: MessengerConfig,
    ) -> Node {
        let seed = self.seeds.first();
        let dht = Dht::bind(server(bind, Some(dir.clone()), seed, self.limits))
            .await
            .unwrap();
        let (friends, friend_events) = Friends::start(dht, FriendsConfig::for_tests())
            .await
            .unwrap();
        let (messenger, events) = Messenger::start(friends.clone(), config).await.unwrap();
        let bind = friends.dht().local_addr();
        Node {
            friends,
            friend_events,
            messenger,
            events,
            dir,
            bind,
        }
    }
}

/// `a` asks `b`, `b` accepts: friends both ways.
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
}

/// Polls `f` every 50 ms until it gives something, within [`PATIENCE`].
pub(crate) async fn wait_for<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(value) = f().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "not in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
