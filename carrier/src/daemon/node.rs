//! The node a daemon runs: the DHT and the friend layer on one data directory (each layer
//! above adds its part here as it lands), the events it reports, and the answers to requests.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use carrier::dht::{BootstrapNode, Dht, DhtConfig, NatMapping, PublicPort, Reachability};
use carrier::forward::{Forwarder, Forwarding};
use carrier::friend::{FriendError, Friends, FriendsConfig, Presence, UserInfo};
use carrier::id::{CarrierId, Nospam};
use carrier::msg::{Messenger, MessengerConfig};
use carrier::stream::Sessions;
use carrier::{Carrier, CarrierBuilder};
use serde_json::{json, Value};
use tokio::sync::broadcast;

use super::events;
use super::protocol::{
    echo, ConnectionStatus, ErrorKind, Event, FriendEntry, IncomingEntry, Info, InfoFields,
    OutgoingEntry, PathEntry, PresenceName, Relaying, Request, Requests, Standing, Status,
};
use super::streams::PipeRequests;

/// Events kept for a watcher that falls behind; beyond it the oldest are lost (and it is
/// told how many).
const EVENT_BACKLOG: usize = 1024;
/// Events kept since the start, for watchers that ask for them (`"replay": true`): the oldest
/// go first.
const EVENT_HISTORY: usize = 1024;

/// How the daemon runs its node.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// The data directory.
    pub(crate) data: PathBuf,
    /// Where the node's UDP socket is bound.
    pub(crate) listen: SocketAddr,
    /// Nodes to join through.
    pub(crate) bootstrap: Vec<BootstrapNode>,
    /// Short intervals for tests on one machine (hidden `--test-timers`).
    pub(crate) test_timers: bool,
    /// For tests in the network lab: a DHT client that never checks its reachability, where
    /// `--test-timers` alone makes a server of a loopback network (hidden `--test-client`).
    pub(crate) test_client: bool,
    /// For tests: how often the peer record is announced, in place of the settings' interval
    /// (hidden `--test-announce-secs`).
    pub(crate) announce_interval: Option<Duration>,
    /// For tests: how long a link may stay silent before it is closed, in place of the
    /// settings' limit (hidden `--test-silence-secs`); keep-alives then go every second.
    pub(crate) silence_limit: Option<Duration>,
    /// For tests: first joins tried before the daemon serves anyway, in place of the
    /// settings' (hidden `--test-join-attempts`; 0: it serves at once).
    pub(crate) join_attempts: Option<u32>,
    /// No LAN discovery (`--no-lan`). A node bound to loopback runs none anyway.
    pub(crate) no_lan: bool,
}

impl Settings {
    /// Times the first join is tried before the daemon serves anyway, and the wait after a
    /// failed one.
    fn join_attempts(&self) -> (u32, Duration) {
        let (attempts, wait) = if self.test_timers {
            (10, Duration::from_millis(200))
        } else {
            (3, Duration::from_secs(1))
        };
        (self.join_attempts.unwrap_or(attempts), wait)
    }

    /// How often the node's own connection is looked at, and how long a DHT contact heard
    /// from stays live.
    fn connection_timers(&self) -> (Duration, Duration) {
        if self.test_timers {
            (Duration::from_millis(250), Duration::from_secs(10))
        } else {
            // The friend layer looks at its mailboxes every minute, so a node on the network
            // hears from contacts several times within five minutes.
            (Duration::from_secs(2), Duration::from_secs(5 * 60))
        }
    }

    fn dht_config(&self) -> DhtConfig {
        let mut config = if self.test_timers {
            // Tests run a whole network on loopback: every node a server, no subnet limit.
            let mut config = DhtConfig::local(self.listen);
            config.query_timeout = Duration::from_secs(10);
            config
        } else {
            DhtConfig::new(self.listen)
        };
        if self.test_client {
            config.node.server = false;
            config.node.detect_reachability = false;
        }
        config
            .with_data_dir(self.data.clone())
            .with_bootstrap(self.bootstrap.clone())
    }

    fn friends_config(&self) -> FriendsConfig {
        let mut config = if self.test_timers {
            // A vanished friend is seen gone in 3 s instead of 20 s, so the kill tests wait
            // seconds, not half a minute.
            FriendsConfig::for_tests().with_liveness(Duration::from_secs(1), Duration::from_secs(3))
        } else {
            FriendsConfig::default()
        };
        if let Some(interval) = self.announce_interval {
            config.announce_interval = interval;
        }
        if let Some(limit) = self.silence_limit {
            config = config.with_liveness(Duration::from_secs(1), limit);
        }
        // Also under `--test-timers`: the lab's daemons find each other on their LAN, and
        // loopback tests send nothing out (the friend layer never runs it on loopback).
        config.with_lan(!self.no_lan)
    }

    /// The facade's builder with every layer's settings: one code path for the daemon and
    /// for library users.
    fn builder(&self) -> CarrierBuilder {
        let (attempts, wait) = self.join_attempts();
        let (tick, live_window) = self.connection_timers();
        Carrier::builder()
            .data_dir(self.data.clone())
            .dht_config(self.dht_config())
            .friends_config(self.friends_config())
            .messenger_config(self.messenger_config())
            .join_attempts(attempts, wait)
            .connection_timers(tick, live_window)
    }

    fn messenger_config(&self) -> MessengerConfig {
        if self.test_timers {
            MessengerConfig::for_tests()
        } else {
            MessengerConfig::default()
        }
    }
}

/// A refusal: its kind and what to tell the user.
pub(crate) type Refusal = (ErrorKind, String);

/// The running node, shared by every control connection.
pub(crate) struct DaemonNode {
    /// The node, built as library users build theirs.
    carrier: Carrier,
    pub(super) dht: Dht,
    pub(super) friends: Friends,
    pub(super) messenger: Messenger,
    /// Sessions with friends (`pipe`).
    pub(super) sessions: Sessions,
    /// The friends' `pipe` requests, for the `pipe --listen`s.
    pub(super) pipe_requests: Arc<PipeRequests>,
    /// Services offered and forwardings to friends' services.
    pub(super) forwarder: Forwarder,
    /// The forwardings open, each while the control connection that asked for it lasts.
    pub(super) forwardings: Mutex<HashMap<u64, Forwarding>>,
    pub(super) next_forwarding: AtomicU64,
    events: broadcast::Sender<Event>,
    /// The latest events, sent under this lock so a watcher replays them without a gap.
    history: Mutex<std::collections::VecDeque<Event>>,
    pub(super) auto_accept: AtomicBool,
    /// The extensions whose invites this daemon takes (`invites` registered them).
    pub(super) extensions: Mutex<std::collections::HashSet<String>>,
}

impl DaemonNode {
    /// Starts the node (binds the DHT, joins, starts every layer) and the task that reports
    /// its events.
    pub(crate) async fn start(settings: &Settings) -> Result<Arc<DaemonNode>, String> {
        let (carrier, node_events) = settings
            .builder()
            .start()
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(id = %carrier.id(), listen = %carrier.dht().local_addr(), "node started");
        let (events, _) = broadcast::channel(EVENT_BACKLOG);
        let node = Arc::new(DaemonNode {
            dht: carrier.dht().clone(),
            friends: carrier.friends().clone(),
            messenger: carrier.messenger().clone(),
            sessions: carrier.sessions().clone(),
            pipe_requests: PipeRequests::start(carrier.sessions()).map_err(|e| e.to_string())?,
            forwarder: carrier.forwarder().clone(),
            forwardings: Mutex::new(HashMap::new()),
            next_forwarding: AtomicU64::new(1),
            carrier,
            events,
            history: Mutex::new(std::collections::VecDeque::new()),
            auto_accept: AtomicBool::new(false),
            extensions: Mutex::new(std::collections::HashSet::new()),
        });
        tokio::spawn(events::pump(Arc::downgrade(&node), node_events));
        Ok(node)
    }

    /// The DHT node.
    pub(crate) fn dht(&self) -> &Dht {
        &self.dht
    }

    /// Events from now on, and the latest events before (at most [`EVENT_HISTORY`], since
    /// the daemon started).
    pub(crate) fn subscribe(&self) -> (broadcast::Receiver<Event>, Vec<Event>) {
        let history = lock(&self.history);
        (self.events.subscribe(), history.iter().cloned().collect())
    }

    /// Stops every layer, saving what each keeps, and releases the data directory.
    pub(crate) async fn shutdown(&self) {
        // Their connections hold sessions: closed before the layers stop.
        lock(&self.forwardings).clear();
        self.carrier.shutdown().await;
    }

    pub(super) fn send(&self, event: Event) {
        let mut history = lock(&self.history);
        if history.len() == EVENT_HISTORY {
            history.pop_front();
        }
        history.push_back(event.clone());
        // No watcher is no error.
        let _ = self.events.send(event);
    }

    /// Answers a request (`watch` and `stop` belong to the connection, not here).
    pub(crate) async fn handle(self: &Arc<Self>, request: Request) -> Result<Value, Refusal> {
        let friends = &self.friends;
        Ok(match request {
            Request::Id => json!({ "id": friends.id().to_string() }),
            Request::Address => json!({ "address": friends.address().to_string() }),
            Request::Status => to_value(&self.status()),
            Request::FriendAdd { address, hello } => {
                friends
                    .add_friend(address.trim(), hello.as_bytes())
                    .await
                    .map_err(refusal)?;
                let to = address
                    .trim()
                    .parse::<carrier::id::Address>()
                    .map(|a| a.id().to_string())
                    .unwrap_or_default();
                json!({ "to": to })
            }
            Request::FriendAccept { friend } => {
                let id = self.requester(&friend)?;
                friends.accept_friend(&id).await.map_err(refusal)?;
                json!({ "friend": id.to_string() })
            }
            Request::FriendRefuse { friend } => {
                let id = self.requester(&friend)?;
                friends.refuse_friend(&id).await.map_err(refusal)?;
                json!({ "friend": id.to_string() })
            }
            Request::FriendRemove { friend } => {
                let id = self.friend(&friend)?;
                friends.remove_friend(&id).await.map_err(refusal)?;
                json!({ "friend": id.to_string() })
            }
            Request::FriendBlock { friend } => {
                let id = self.friend(&friend)?;
                friends.block(&id).await.map_err(refusal)?;
                json!({ "blocked": id.to_string() })
            }
            Request::FriendUnblock { friend } => {
                let id = parse_id(&friend)?;
                let was_blocked = friends.unblock(&id).await.map_err(refusal)?;
                json!({ "unblocked": id.to_string(), "was_blocked": was_blocked })
            }
            Request::FriendLabel { friend, label } => {
                let id = self.friend(&friend)?;
                friends.set_label(&id, &label).await.map_err(refusal)?;
                json!({ "friend": id.to_string(), "label": label })
            }
            Request::FriendList => {
                let list: Vec<FriendEntry> = friends
                    .friends()
                    .into_iter()
                    .map(|f| FriendEntry {
                        id: f.id.to_string(),
                        label: f.label,
                        online: friends.is_online(&f.id),
                        presence: presence_name(f.presence),
                        info: info(&f.info),
                        since_unix_secs: f.since_unix_secs,
                    })
                    .collect();
                json!({ "friends": list })
            }
            Request::FriendRequests => to_value(&Requests {
                incoming: friends
                    .incoming_requests()
                    .into_iter()
                    .map(|r| IncomingEntry {
                        from: r.from.to_string(),
                        hello: String::from_utf8_lossy(&r.hello).into_owned(),
                        info: info(&r.info),
                        received_unix_secs: r.received_unix_secs,
                    })
                    .collect(),
                outgoing: friends
                    .outgoing_requests()
                    .into_iter()
                    .map(|r| OutgoingEntry {
                        to: r.to.id().to_string(),
                        address: r.to.to_string(),
                        hello: String::from_utf8_lossy(&r.hello).into_owned(),
                        sent_unix_secs: r.sent_unix_secs,
                    })
                    .collect(),
                blocked: friends.blocked().iter().map(ToString::to_string).collect(),
            }),
            Request::Presence { set } => {
                if let Some(presence) = set {
                    friends
                        .set_presence(match presence {
                            PresenceName::None => Presence::None,
                            PresenceName::Away => Presence::Away,
                            PresenceName::Busy => Presence::Busy,
                        })
                        .await
                        .map_err(refusal)?;
                }
                json!({ "presence": presence_name(friends.presence()) })
            }
            Request::Info { set } => {
                if set != InfoFields::default() {
                    let changed = apply(friends.user_info(), set).map_err(|e| {
                        (ErrorKind::InfoTooLong, format!("{e}: shorten that field"))
                    })?;
                    friends.set_user_info(changed).await.map_err(refusal)?;
                }
                json!({ "info": info(&friends.user_info()) })
            }
            Request::Nospam { rotate } => {
                if rotate {
                    friends
                        .set_nospam(Nospam::random())
                        .await
                        .map_err(refusal)?;
                }
                let address = friends.address();
                json!({ "nospam": address.nospam().0, "address": address.to_string() })
            }
            Request::Outbox => {
                // A read of the database: off the async runtime's threads.
                let reader = friends.clone();
                let items = tokio::task::spawn_blocking(move || reader.outbox())
                    .await
                    .map_err(|e| (ErrorKind::Failed, format!("reading the outbox failed: {e}")))?
                    .map_err(refusal)?;
                let deposited = items
                    .iter()
                    .filter(|e| e.deposited_unix_ms.is_some())
                    .count();
                json!({ "items": items.len(), "deposited": deposited })
            }
            Request::CheckMailboxes => {
                friends.check_mailboxes().await;
                json!({})
            }
            Request::Links => {
                let mut dialled = Vec::new();
                for id in friends.online() {
                    if friends
                        .link(&id)
                        .is_some_and(|link| link.connection().side().is_client())
                    {
                        dialled.push(id.to_string());
                    }
                }
                // The real address each link runs to (quinn sees only a mapped one), and
                // its topology.
                let mut remote = serde_json::Map::new();
                let mut topology = serde_json::Map::new();
                let mut connection = serde_json::Map::new();
                for id in friends.online() {
                    let Some(link) = friends.link(&id) else {
                        continue;
                    };
                    connection.insert(id.to_string(), json!(link.connection().stable_id()));
                    if let Some(path) = friends.link_path(&link) {
                        remote.insert(id.to_string(), json!(path.remote().to_string()));
                        topology.insert(id.to_string(), json!(path.topology.name()));
                    }
                }
                json!({
                    "count": friends.link_count(),
                    "remote": remote,
                    "topology": topology,
                    "connection": connection,
                    "online": friends.online().iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "dialled": dialled,
                })
            }
            Request::Send { friend, text, file } => self.send_message(&friend, text, file).await?,
            Request::Inbox => self.inbox().await?,
            Request::Ack { message } => self.ack(&message).await?,
            Request::Invite {
                friend,
                extension,
                bundle,
                data,
            } => self.invite(&friend, &extension, &bundle, &data).await?,
            Request::Invites { extension } => self.invites(extension.as_deref())?,
            Request::Reply {
                invite,
                status,
                reason,
                data,
            } => self.reply_invite(invite, status, &reason, &data).await?,
            // The connection answers it: it becomes the pipe.
            Request::Pipe { .. } => {
                return Err((
                    ErrorKind::BadArguments,
                    "pipe is answered by its connection".into(),
                ))
            }
            Request::Serve { name, target, only } => self.serve(&name, &target, &only)?,
            Request::Unserve { name } => self.unserve(&name)?,
            Request::Services => self.services(),
            Request::Forwards => self.forwards(),
            // The connection answers it: it holds the forwarding.
            Request::Forward { .. } => {
                return Err((
                    ErrorKind::BadArguments,
                    "forward is answered by its connection".into(),
                ))
            }
            Request::AutoAccept => {
                self.auto_accept.store(true, Ordering::SeqCst);
                for request in friends.incoming_requests() {
                    if let Err(e) = friends.accept_friend(&request.from).await {
                        tracing::warn!(from = %request.from, "auto-accept failed: {e}");
                    }
                }
                json!({})
            }
            Request::Watch { .. } | Request::Stop => {
                return Err((
                    ErrorKind::Failed,
                    "`watch` and `stop` are answered by the connection".into(),
                ))
            }
        })
    }

    /// Where the node stands.
    pub(crate) fn status(&self) -> Status {
        let friends = &self.friends;
        Status {
            id: friends.id().to_string(),
            address: friends.address().to_string(),
            listen: self.dht.local_addr().to_string(),
            connection: match self.carrier.connection() {
                carrier::ConnectionStatus::Online => ConnectionStatus::Online,
                _ => ConnectionStatus::Offline,
            },
            dht_contacts: self.dht.routing_entries(),
            standing: standing(&self.dht),
            friends: friends.friends().len(),
            friends_online: friends.online().len(),
            relays: self
                .dht
                .relay_hints()
                .iter()
                .map(|hint| hint.addr.to_string())
                .collect(),
            relaying: self
                .dht
                .relay_status()
                .map(|(counters, registrations, sessions)| Relaying {
                    registrations,
                    sessions,
                    forwarded_bytes: counters.forwarded_bytes,
                }),
            paths: friends
                .online()
                .iter()
                .filter_map(|id| {
                    let link = friends.link(id)?;
                    Some(PathEntry::new(id, &friends.link_path(&link)?))
                })
                .collect(),
        }
    }

    /// A friend named by its Carrier ID or its label.
    pub(super) fn friend(&self, name: &str) -> Result<CarrierId, Refusal> {
        let name = name.trim();
        if let Ok(id) = name.parse::<CarrierId>() {
            return Ok(id);
        }
        let shown = echo(name);
        let matching: Vec<CarrierId> = self
            .friends
            .friends()
            .into_iter()
            .filter(|f| !f.label.is_empty() && f.label == name)
            .map(|f| f.id)
            .collect();
        match matching.as_slice() {
            [id] => Ok(*id),
            [] => Err((
                ErrorKind::UnknownFriend,
                format!(
                    "no friend has the ID or label `{shown}`: see `carrier friend list` for \
                     your friends"
                ),
            )),
            _ => Err((
                ErrorKind::AmbiguousLabel,
                format!(
                    "{} friends have the label `{shown}`: name the friend by its Carrier ID \
                     (see `carrier friend list`)",
                    matching.len()
                ),
            )),
        }
    }

    /// A requester named by its Carrier ID.
    fn requester(&self, name: &str) -> Result<CarrierId, Refusal> {
        parse_id(name).map_err(|_| {
            (
                ErrorKind::UnknownFriend,
                format!(
                    "`{}` is not a Carrier ID: name the requester by its ID, as \
                     `carrier friend requests` lists it",
                    echo(name.trim())
                ),
            )
        })
    }
}

fn parse_id(name: &str) -> Result<CarrierId, Refusal> {
    name.trim().parse::<CarrierId>().map_err(|e| {
        (
            ErrorKind::UnknownFriend,
            format!("`{}` is not a Carrier ID ({e})", echo(name.trim())),
        )
    })
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded state is a plain value, whole after any panic.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn to_value<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Where the DHT node stands, in the protocol's words.
pub(crate) fn standing(dht: &Dht) -> Standing {
    let standing = dht.standing();
    Standing {
        public_address: standing.public_addr.map(|public| match public.port {
            PublicPort::Same(port) => SocketAddr::new(public.ip, port).to_string(),
            PublicPort::VariesPerPeer => match public.ip {
                std::net::IpAddr::V4(ip) => format!("{ip}:*"),
                std::net::IpAddr::V6(ip) => format!("[{ip}]:*"),
            },
        }),
        nat: match standing.nat {
            NatMapping::Unknown => "unknown",
            NatMapping::EndpointIndependent => "endpoint_independent",
            NatMapping::EndpointDependent => "endpoint_dependent",
        }
        .into(),
        reachability: match standing.reachability {
            Reachability::Unknown => "unknown",
            Reachability::Reachable => "reachable",
            Reachability::Unreachable => "unreachable",
        }
        .into(),
        server: standing.server,
    }
}

pub(super) fn presence_name(presence: Presence) -> PresenceName {
    match presence {
        Presence::None => PresenceName::None,
        Presence::Away => PresenceName::Away,
        Presence::Busy => PresenceName::Busy,
    }
}

pub(super) fn info(info: &UserInfo) -> Info {
    Info {
        name: info.name().into(),
        description: info.description().into(),
        phone: info.phone().into(),
        email: info.email().into(),
        region: info.region().into(),
        gender: info.gender().into(),
        avatar: info.has_avatar(),
    }
}

/// The user info with the given fields changed.
fn apply(mut info: UserInfo, set: InfoFields) -> Result<UserInfo, carrier::friend::InfoError> {
    if let Some(name) = set.name {
        info = info.with_name(&name)?;
    }
    if let Some(description) = set.description {
        info = info.with_description(&description)?;
    }
    if let Some(phone) = set.phone {
        info = info.with_phone(&phone)?;
    }
    if let Some(email) = set.email {
        info = info.with_email(&email)?;
    }
    if let Some(region) = set.region {
        info = info.with_region(&region)?;
    }
    if let Some(gender) = set.gender {
        info = info.with_gender(&gender)?;
    }
    Ok(info)
}

/// What the friend layer's refusal tells the user, and what to do about it.
fn refusal(error: FriendError) -> Refusal {
    let message = error.to_string();
    match error {
        FriendError::Yourself => (
            ErrorKind::Yourself,
            format!("{message}: ask your friend for their address"),
        ),
        FriendError::InvalidAddress(_) => (
            ErrorKind::InvalidAddress,
            format!(
                "{message}: a Carrier address is the text that `carrier address` prints \
                 on your friend's machine; check it was copied whole"
            ),
        ),
        FriendError::UnknownRequest(_) => (
            ErrorKind::UnknownFriend,
            format!("{message}: see `carrier friend requests`"),
        ),
        FriendError::NotAFriend(_) => (
            ErrorKind::UnknownFriend,
            format!("{message}: see `carrier friend list`"),
        ),
        FriendError::EmptyHello => (
            ErrorKind::EmptyHello,
            format!("{message}: say who you are in a few words"),
        ),
        FriendError::HelloTooLong { .. } => (
            ErrorKind::HelloTooLong,
            format!("{message}: shorten the hello"),
        ),
        FriendError::LabelTooLong { .. } => (
            ErrorKind::LabelTooLong,
            format!("{message}: shorten the label"),
        ),
        FriendError::Info(_) => (
            ErrorKind::InfoTooLong,
            format!("{message}: shorten that field"),
        ),
        FriendError::Blocked(_) => (
            ErrorKind::Blocked,
            format!("{message}: unblock it first with `carrier friend unblock`"),
        ),
        _ => (ErrorKind::Failed, message),
    }
}
