//! What the invite tests share: a small DHT on 127.x.y.1, friend nodes with data directories,
//! and a test-only pump standing in for the messages layer: it takes every stream on
//! `Extension::MSG`, reads its kind byte and hands the invite streams to `Invites::accept`.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use carrier_msg::friend::dht::id::CarrierId;
use carrier_msg::friend::dht::{BootstrapNode, Dht, DhtConfig};
use carrier_msg::friend::{Extension, FriendEvent, FriendEvents, Friends, FriendsConfig, Inbound};
use carrier_msg::invite::{InviteConfig, Invites};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The kind byte of an invite stream (`stream_kind::INVITE`, private to the crate).
const INVITE_KIND: u8 = 0x02;
/// DHT servers besides the friends' own nodes.
const SEEDS: usize = 3;
/// How long anything may take to arrive.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// A small DHT (each seed on its own /24), and a place for the friends' data.
pub(crate) struct Net {
    seeds: Vec<Dht>,
    dir: tempfile::TempDir,
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

/// A friend node with its invites layer and the pump feeding it.
pub(crate) struct Node {
    pub(crate) friends: Friends,
    pub(crate) events: FriendEvents,
    pub(crate) invites: Invites,
    pump: JoinHandle<()>,
    /// Whether the pump hands invite streams over now (`false` parks them until `true`).
    pub(crate) pump_open: watch::Sender<bool>,
    /// How many of the next invite streams the pump reads and lets go of unanswered, as a
    /// node does that holds the invite on a newer stream.
    pub(crate) drop_unanswered: Arc<AtomicUsize>,
    dir: PathBuf,
    bind: SocketAddr,
}

impl Node {
    pub(crate) fn id(&self) -> CarrierId {
        self.friends.id()
    }

    /// Skips events until one `want` picks, within [`PATIENCE`].
    pub(crate) async fn until(&mut self, mut want: impl FnMut(&FriendEvent) -> bool) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .expect("no such event in time")
                .expect("events closed");
            if want(&event) {
                return;
            }
        }
    }

    /// Stops the node (invites, pump, friends, DHT); where to start it again.
    pub(crate) async fn stop(self) -> (PathBuf, SocketAddr) {
        self.invites.shutdown().await;
        self.pump.abort();
        let _ = self.pump.await;
        drop(self.invites);
        self.friends.shutdown().await;
        let dht = self.friends.dht().clone();
        drop(self.friends);
        dht.shutdown().await.unwrap();
        (self.dir, self.bind)
    }
}

impl Net {
    /// A friend node named `name` on `ip`.
    pub(crate) async fn node(&self, ip: [u8; 4], name: &str, config: InviteConfig) -> Node {
        self.start(
            self.dir.path().join(name),
            SocketAddr::from((ip, 0)),
            config,
        )
        .await
    }

    /// Starts (or starts again) the node whose data is in `dir`, on `bind`.
    pub(crate) async fn start(&self, dir: PathBuf, bind: SocketAddr, config: InviteConfig) -> Node {
        let dht = Dht::bind(server(bind, Some(dir.clone()), self.seeds.first()))
            .await
            .unwrap();
        let (friends, events) = Friends::start(dht, FriendsConfig::for_tests())
            .await
            .unwrap();
        let invites = Invites::new(friends.clone(), config);
        let (pump_open, open) = watch::channel(true);
        let drop_unanswered = Arc::new(AtomicUsize::new(0));
        let pump = pump(&friends, invites.clone(), open, drop_unanswered.clone());
        let bind = friends.dht().local_addr();
        Node {
            friends,
            events,
            invites,
            pump,
            pump_open,
            drop_unanswered,
            dir,
            bind,
        }
    }
}

/// Stands in for the messages layer: every invite stream on `Extension::MSG` to `invites`,
/// once `open` says so.
fn pump(
    friends: &Friends,
    invites: Invites,
    open: watch::Receiver<bool>,
    drop_unanswered: Arc<AtomicUsize>,
) -> JoinHandle<()> {
    let mut inbox = friends.register(Extension::MSG).unwrap();
    tokio::spawn(async move {
        while let Some(inbound) = inbox.recv().await {
            let Inbound::Bi {
                peer,
                send,
                mut recv,
            } = inbound
            else {
                continue;
            };
            let invites = invites.clone();
            let mut open = open.clone();
            let drop_unanswered = drop_unanswered.clone();
            tokio::spawn(async move {
                let mut kind = [0u8; 1];
                if recv.read_exact(&mut kind).await.is_ok()
                    && kind[0] == INVITE_KIND
                    && open.wait_for(|open| *open).await.is_ok()
                {
                    let dropped = drop_unanswered
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                    if dropped {
                        let _ = recv.read_to_end(64 * 1024).await;
                        let mut send = send;
                        let _ = send.finish();
                        return;
                    }
                    invites.accept(peer, send, recv);
                }
            });
        }
    })
}

/// `a` asks `b`, `b` accepts; both see the other connected.
pub(crate) async fn befriend(a: &mut Node, b: &mut Node) {
    a.friends
        .add_friend(&b.friends.address().to_string(), b"hi")
        .await
        .unwrap();
    let a_id = a.id();
    b.until(|e| matches!(e, FriendEvent::Request(r) if r.from == a_id))
        .await;
    b.friends.accept_friend(&a_id).await.unwrap();
    let b_id = b.id();
    a.until(|e| *e == FriendEvent::Connected(b_id)).await;
    b.until(|e| *e == FriendEvent::Connected(a_id)).await;
}

/// Polls `f` every 50 ms until it gives something, within [`PATIENCE`].
pub(crate) async fn wait_for<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(value) = f() {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "not in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
