//! [`CarrierBuilder`]: the settings of a node, each with a default that runs on the internet.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{Carrier, CarrierError, Events};
use crate::dht::{BootstrapNode, DhtConfig};
use crate::forward::ForwardConfig;
use crate::friend::{FriendsConfig, UserInfo};
use crate::msg::MessengerConfig;
use crate::stream::SessionConfig;

/// The environment variable naming a node's data directory when the builder is given none.
pub const DATA_ENV: &str = "CARRIER_DATA";

/// Settings of a [`Carrier`] node. [`Carrier::builder`] starts from defaults that run on the
/// internet: the data directory from the environment, a dual-stack socket, production timers.
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `start`"]
pub struct CarrierBuilder {
    pub(super) data_dir: Option<PathBuf>,
    pub(super) dht: DhtConfig,
    pub(super) friends: FriendsConfig,
    pub(super) messages: MessengerConfig,
    pub(super) sessions: SessionConfig,
    pub(super) forward: ForwardConfig,
    pub(super) user_info: Option<UserInfo>,
    pub(super) join_attempts: u32,
    pub(super) join_wait: Duration,
    pub(super) connection_tick: Duration,
    pub(super) connection_window: Duration,
}

impl Default for CarrierBuilder {
    fn default() -> Self {
        CarrierBuilder {
            data_dir: None,
            dht: DhtConfig::default(),
            friends: FriendsConfig::default(),
            messages: MessengerConfig::default(),
            sessions: SessionConfig::default(),
            forward: ForwardConfig::default(),
            user_info: None,
            join_attempts: 3,
            join_wait: Duration::from_secs(1),
            connection_tick: Duration::from_secs(2),
            // The friend layer reads its mailboxes every minute, so a node on the network
            // hears from DHT contacts several times within five minutes.
            connection_window: Duration::from_secs(5 * 60),
        }
    }
}

impl CarrierBuilder {
    /// The node's data directory: its key, its database (friends, messages, DHT contacts).
    /// Default: `$CARRIER_DATA`, else `$XDG_DATA_HOME/carrier`, else
    /// `$HOME/.local/share/carrier`.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Where the node's one UDP socket (DHT and links) is bound. Default `[::]:0`.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.dht.bind = addr;
        self
    }

    /// Nodes to join the network through. A node with saved contacts rejoins through those
    /// when none is given.
    pub fn bootstrap(mut self, nodes: impl IntoIterator<Item = BootstrapNode>) -> Self {
        self.dht.bootstrap = nodes.into_iter().collect();
        self
    }

    /// The profile friends see (set at start when it differs from the stored one).
    pub fn user_info(mut self, info: UserInfo) -> Self {
        self.user_info = Some(info);
        self
    }

    /// The DHT's settings in full. Its data directory and bootstrap nodes are the builder's
    /// when those are set too.
    pub fn dht_config(mut self, config: DhtConfig) -> Self {
        self.dht = config;
        self
    }

    /// The friend layer's settings.
    pub fn friends_config(mut self, config: FriendsConfig) -> Self {
        self.friends = config;
        self
    }

    /// The messenger's settings.
    pub fn messenger_config(mut self, config: MessengerConfig) -> Self {
        self.messages = config;
        self
    }

    /// The sessions layer's settings.
    pub fn sessions_config(mut self, config: SessionConfig) -> Self {
        self.sessions = config;
        self
    }

    /// The forwarder's settings (services and TCP forwardings).
    pub fn forward_config(mut self, config: ForwardConfig) -> Self {
        self.forward = config;
        self
    }

    /// How many times the first join is tried, and the wait after a failed one, before the
    /// node runs anyway (it keeps trying in the background). Default 3 times, 1 s apart; 0:
    /// the node runs at once and joins in the background.
    pub fn join_attempts(mut self, attempts: u32, wait: Duration) -> Self {
        self.join_attempts = attempts;
        self.join_wait = wait;
        self
    }

    /// How often the node's own connection is looked at, and how long a DHT contact heard
    /// from keeps it online. Default 2 s and 5 minutes.
    pub fn connection_timers(mut self, tick: Duration, live_window: Duration) -> Self {
        self.connection_tick = tick;
        self.connection_window = live_window;
        self
    }

    /// Settings for a network that lives on this machine (tests, demos): every node a DHT
    /// server, and the layers' short test timers. Never for a real network.
    pub fn local(mut self, listen: SocketAddr) -> Self {
        let mut dht = DhtConfig::local(listen);
        dht.bootstrap = std::mem::take(&mut self.dht.bootstrap);
        dht.query_timeout = Duration::from_secs(10);
        self.dht = dht;
        self.friends = FriendsConfig::for_tests();
        self.messages = MessengerConfig::for_tests();
        self.join_attempts = 10;
        self.join_wait = Duration::from_millis(200);
        self.connection_tick = Duration::from_millis(250);
        self.connection_window = Duration::from_secs(10);
        self
    }

    /// Starts the node: binds its socket, joins the network, starts every layer on one
    /// data directory. Returns the node and its one event stream.
    pub async fn start(self) -> Result<(Carrier, Events), CarrierError> {
        Carrier::start(self).await
    }

    /// The data directory: the one given, else the environment's.
    pub(super) fn resolve_data_dir(&self) -> Result<PathBuf, CarrierError> {
        if let Some(dir) = self.data_dir.as_ref().or(self.dht.data_dir.as_ref()) {
            return Ok(dir.clone());
        }
        let from = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        if let Some(dir) = from(DATA_ENV) {
            return Ok(PathBuf::from(dir));
        }
        if let Some(base) = from("XDG_DATA_HOME") {
            return Ok(PathBuf::from(base).join("carrier"));
        }
        if let Some(home) = from("HOME") {
            return Ok(PathBuf::from(home).join(".local/share/carrier"));
        }
        Err(CarrierError::NoDataDir)
    }
}
