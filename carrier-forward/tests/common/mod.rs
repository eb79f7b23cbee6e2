//! Real nodes for the forwarding tests: a small DHT of seed servers on 127.x.y.1 and friend
//! nodes with a messenger, a sessions layer and a forwarder each (as carrier-mux's
//! `tests/common`), and the TCP programs at both ends of a forwarding.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use carrier_forward::mux::stream::msg::friend::dht::id::CarrierId;
use carrier_forward::mux::stream::msg::friend::dht::{BootstrapNode, Dht, DhtConfig};
use carrier_forward::mux::stream::msg::friend::{
    FriendEvent, FriendEvents, Friends, FriendsConfig,
};
use carrier_forward::mux::stream::msg::{MessageEvents, Messenger, MessengerConfig};
use carrier_forward::mux::stream::{SessionConfig, Sessions};
use carrier_forward::{ForwardConfig, ForwardEvent, ForwardEvents, Forwarder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// DHT servers besides the friends' own nodes.
const SEEDS: usize = 3;
/// How long anything may take to arrive: a bound on outcomes, not a speed assertion.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// A small DHT (each seed on its own /24), and a place for the nodes' data.
pub(crate) struct Net {
    pub(crate) seeds: Vec<Dht>,
    pub(crate) dir: tempfile::TempDir,
}

fn server(bind: SocketAddr, data_dir: Option<std::path::PathBuf>, seed: Option<&Dht>) -> DhtConfig {
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

/// A node: its friend layer, messenger, sessions and forwarder.
pub(crate) struct Node {
    pub(crate) friends: Friends,
    pub(crate) friend_events: FriendEvents,
    pub(crate) messenger: Messenger,
    pub(crate) message_events: MessageEvents,
    pub(crate) sessions: Sessions,
    pub(crate) forwarder: Forwarder,
    pub(crate) events: ForwardEvents,
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

    /// Skips forwarding events until `want` picks one, within [`PATIENCE`]; that one.
    pub(crate) async fn until_event(
        &mut self,
        mut want: impl FnMut(&ForwardEvent) -> bool,
    ) -> ForwardEvent {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .expect("no such forwarding event in time")
                .expect("forwarding events closed");
            if want(&event) {
                return event;
            }
        }
    }
}

impl Net {
    /// A node named `name` on `ip`, its data in the net's directory.
    pub(crate) async fn node(&self, ip: [u8; 4], name: &str) -> Node {
        let bind = SocketAddr::from((ip, 0));
        let dht = Dht::bind(server(
            bind,
            Some(self.dir.path().join(name)),
            self.seeds.first(),
        ))
        .await
        .unwrap();
        let (friends, friend_events) = Friends::start(dht, FriendsConfig::for_tests())
            .await
            .unwrap();
        let (messenger, message_events) =
            Messenger::start(friends.clone(), MessengerConfig::for_tests())
                .await
                .unwrap();
        let sessions = Sessions::start(&friends, &messenger, SessionConfig::default())
            .await
            .unwrap();
        let (forwarder, events) = Forwarder::start(&sessions, ForwardConfig::default()).unwrap();
        Node {
            friends,
            friend_events,
            messenger,
            message_events,
            sessions,
            forwarder,
            events,
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

/// A net on 127.`a`.`b`.x and two friends on it, linked: (net, Alice, Bob).
pub(crate) async fn friends(a: u8, b: u8) -> (Net, Node, Node) {
    let net = net(a, b).await;
    let mut alice = net.node([127, a, b + 10, 1], "alice").await;
    let mut bob = net.node([127, a, b + 11, 1], "bob").await;
    befriend(&mut alice, &mut bob).await;
    (net, alice, bob)
}

/// Within [`PATIENCE`], or the test fails naming `what`.
pub(crate) async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {PATIENCE:?}"))
}

/// Any free port on loopback.
pub(crate) fn any_local() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// An echo service on loopback: each connection gets back what it sent, and its write side
/// is shut once the connection's read side ended (so a client that half-closes reads the
/// rest). Its address.
pub(crate) async fn echo_service() -> SocketAddr {
    let listener = TcpListener::bind(any_local()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = tcp.into_split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
                let _ = write.shutdown().await;
            });
        }
    });
    addr
}

/// A loopback address nothing listens on (a port bound, then released).
pub(crate) async fn dead_address() -> SocketAddr {
    let listener = TcpListener::bind(any_local()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

/// Sends `data` through `addr`, half-closes, reads to the end: what came back.
pub(crate) async fn round_trip(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = tcp.split();
    let mut answer = Vec::new();
    let (written, read) = tokio::join!(
        async {
            write.write_all(data).await?;
            write.shutdown().await
        },
        read.read_to_end(&mut answer)
    );
    written.unwrap();
    read.unwrap();
    answer
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

/// Connects to `addr`, sends `data` and reads: true if the connection was closed without an
/// answer (an end, or a reset: data unread when it was closed makes it a reset).
pub(crate) async fn closed_without_answer(addr: SocketAddr, data: &[u8]) -> bool {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    // The write may meet the close already.
    let _ = tcp.write_all(data).await;
    let mut buf = [0u8; 64];
    matches!(tcp.read(&mut buf).await, Ok(0) | Err(_))
}
