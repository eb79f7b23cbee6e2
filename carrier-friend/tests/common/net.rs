//! A small DHT of seed servers and friend nodes with data directories, for the friend-layer
//! tests (`friends.rs`, `links.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use carrier_friend::dht::id::CarrierId;
use carrier_friend::dht::{BootstrapNode, Dht, DhtConfig};
use carrier_friend::{FriendEvent, FriendEvents, Friends, FriendsConfig, Link, UserInfo};

/// DHT servers besides the friends' own nodes.
const SEEDS: usize = 5;
/// How long anything may take to arrive.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// A small DHT (each seed on its own /24), and a place for the friends' data.
pub(crate) struct Net {
    pub(crate) seeds: Vec<Dht>,
    pub(crate) dir: tempfile::TempDir,
}

/// A DHT server's settings on `bind`, joining through `seed`.
pub(crate) fn server(bind: SocketAddr, data_dir: Option<PathBuf>, seed: Option<&Dht>) -> DhtConfig {
    let mut config = DhtConfig::new(bind);
    config.data_dir = data_dir;
    config.query_timeout = Duration::from_secs(10);
    config.node.server = true;
    config.bootstrap = seed
        .map(|s| vec![BootstrapNode::new(s.id(), s.local_addr())])
        .unwrap_or_default();
    config
}

/// The friend layer's debug log on stderr when `CARRIER_TEST_LOG` is set (for a failure
/// that needs the links' story); once per test binary.
pub(crate) fn init_log() {
    if std::env::var_os("CARRIER_TEST_LOG").is_none() {
        return;
    }
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // `CARRIER_TEST_LOG=trace` shows the path table's every mapping and quinn's packets too.
    let trace = std::env::var_os("CARRIER_TEST_LOG").is_some_and(|v| v == "trace");
    let only = if trace {
        tracing_subscriber::filter::Targets::new()
            .with_target("carrier_friend", tracing::Level::TRACE)
            .with_target("quinn_proto", tracing::Level::DEBUG)
    } else {
        tracing_subscriber::filter::Targets::new()
            .with_target("carrier_friend", tracing::Level::DEBUG)
    };
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_test_writer())
        .with(only)
        .try_init();
}

/// A small DHT whose seeds are on 127.`a`.`b + i`.1.
pub(crate) async fn net(a: u8, b: u8) -> Net {
    init_log();
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

/// A friend node: its friend layer, its events, where its data is and where it listens.
pub(crate) struct Node {
    pub(crate) friends: Friends,
    pub(crate) events: FriendEvents,
    pub(crate) dir: PathBuf,
    pub(crate) bind: SocketAddr,
}

impl Node {
    pub(crate) fn id(&self) -> CarrierId {
        self.friends.id()
    }

    pub(crate) fn address(&self) -> String {
        self.friends.address().to_string()
    }

    /// Skips events until one `want` picks, within [`PATIENCE`]; returns what it picked.
    pub(crate) async fn until<T>(&mut self, mut want: impl FnMut(&FriendEvent) -> Option<T>) -> T {
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

    /// Waits until the node reports its link to `peer` up.
    pub(crate) async fn connected(&mut self, peer: CarrierId) {
        self.until(|e| (*e == FriendEvent::Connected(peer)).then_some(()))
            .await;
    }

    /// Stops the node and waits until its database is closed; where to start it again.
    pub(crate) async fn stop(self) -> (PathBuf, SocketAddr) {
        self.friends.shutdown().await;
        let dht = self.friends.dht().clone();
        drop(self.friends);
        dht.shutdown().await.unwrap();
        (self.dir, self.bind)
    }
}

impl Net {
    /// A friend node named `name` on `ip`, its data in the net's directory.
    pub(crate) async fn node(&self, ip: [u8; 4], name: &str) -> Node {
        self.start(self.dir.path().join(name), SocketAddr::from((ip, 0)))
            .await
    }

    /// Starts (or starts again) the node whose data is in `dir`, on `bind`, with short
    /// intervals; a new node is named after its directory.
    pub(crate) async fn start(&self, dir: PathBuf, bind: SocketAddr) -> Node {
        self.start_with(dir, bind, FriendsConfig::for_tests()).await
    }

    /// [`Net::start`] with the friend layer's settings `config`.
    pub(crate) async fn start_with(
        &self,
        dir: PathBuf,
        bind: SocketAddr,
        config: FriendsConfig,
    ) -> Node {
        // A stopped node's database is closed once `stop` returns: it opens at once. The
        // friend layer joins the DHT through the seed itself.
        let dht = Dht::bind(server(bind, Some(dir.clone()), self.seeds.first()))
            .await
            .unwrap();
        let (friends, events) = Friends::start(dht, config).await.unwrap();
        if friends.user_info().name().is_empty() {
            let name = dir.file_name().unwrap().to_string_lossy().to_string();
            friends
                .set_user_info(UserInfo::new(&name, "a test node").unwrap())
                .await
                .unwrap();
        }
        // Started again, the node keeps its port, as a node usually does.
        let bind = friends.dht().local_addr();
        Node {
            friends,
            events,
            dir,
            bind,
        }
    }
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

/// Waits until `a` and `b` have each held the same link to the other for longer than the
/// tie-break's race window (5 s), so that a new link replaces it instead of racing it.
///
/// `Connected` alone does not tell: the held link may change after it without an event. When
/// both start, the first to start dials the other before the other listens; quinn sends its
/// first packet again a second later (its first timeout, before any round trip was measured),
/// and if that first node has the lower ID, its link wins the race against the link the other
/// dialled meanwhile, on both sides, a second after both reported `Connected`.
pub(crate) async fn hold_steady(a: &Node, b: &Node) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        // The links are kept (not just their IDs) while waiting, so no new connection can
        // take an ID of theirs.
        let before = (a.friends.link(&b.id()), b.friends.link(&a.id()));
        tokio::time::sleep(Duration::from_millis(5200)).await;
        let after = (a.friends.link(&b.id()), b.friends.link(&a.id()));
        let same = |x: &Option<Link>, y: &Option<Link>| match (x, y) {
            (Some(x), Some(y)) => x.connection().stable_id() == y.connection().stable_id(),
            _ => false,
        };
        if same(&before.0, &after.0) && same(&before.1, &after.1) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the links kept changing"
        );
    }
}
