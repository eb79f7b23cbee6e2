//! [`Carrier`]: a running node with every layer, on one data directory, with one event stream.

mod builder;
mod connection;
mod error;
mod events;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

pub use builder::{CarrierBuilder, DATA_ENV};
pub use connection::ConnectionStatus;
pub(crate) use connection::SelfConnection;
pub use error::CarrierError;
pub use events::{Event, Events};

use crate::dht::{Dht, DhtError, DhtEvent};
use crate::forward::{ForwardEvents, Forwarder};
use crate::friend::{FriendEvents, Friends};
use crate::id::{Address, CarrierId};
use crate::msg::invite::InviteInbox;
use crate::msg::{MessageEvents, Messenger};
use crate::mux::{ChannelReport, MuxConfig};
use crate::stream::{SessionReports, Sessions};

/// A running Carrier node: the DHT, the friend layer, the messenger, the sessions and the
/// forwarder on one data directory and one UDP socket, with one event stream ([`Events`])
/// for all of them.
/// Cheap to clone; [`shutdown`](Self::shutdown) stops every layer and releases the data
/// directory.
///
/// ```no_run
/// # async fn run() -> Result<(), carrier::CarrierError> {
/// let (node, mut events) = carrier::Carrier::builder().data_dir("alice").start().await?;
/// println!("my address: {}", node.address());
/// while let Some(event) = events.recv().await {
///     println!("{event:?}");
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Carrier {
    inner: Arc<Inner>,
}

struct Inner {
    dht: Dht,
    friends: Friends,
    messenger: Messenger,
    sessions: Sessions,
    forwarder: Forwarder,
    /// The forwarder's mux settings: its channels are reported on the event stream.
    mux_config: MuxConfig,
    data_dir: PathBuf,
    connection: Arc<Mutex<SelfConnection>>,
    /// Where the node's events go; taken at shutdown, so the stream ends.
    events: Mutex<Option<mpsc::UnboundedSender<Event>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Carrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Carrier")
            .field("id", &self.id())
            .field("data_dir", &self.inner.data_dir)
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing panics while these locks are held; a poisoned lock's data is still whole.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Carrier {
    /// A builder with defaults that run on the internet.
    pub fn builder() -> CarrierBuilder {
        CarrierBuilder::default()
    }

    async fn start(builder: CarrierBuilder) -> Result<(Carrier, Events), CarrierError> {
        let data_dir = builder.resolve_data_dir()?;
        let mut dht_config = builder.dht.clone();
        dht_config.data_dir = Some(data_dir.clone());
        let dht = Dht::bind(dht_config)
            .await
            .map_err(|source| CarrierError::Dht {
                dir: data_dir.clone(),
                source,
            })?;
        // Subscribed before the join, so its standing and `Bootstrapped` are reported.
        let dht_events = dht.events();
        let joining = join(&dht, builder.join_attempts, builder.join_wait).await;
        let (friends, friend_events) = match Friends::start(dht.clone(), builder.friends).await {
            Ok(started) => started,
            Err(e) => {
                if let Some(task) = joining {
                    task.abort();
                }
                let _ = dht.shutdown().await;
                return Err(CarrierError::Friends(e));
            }
        };
        let (messenger, message_events) =
            match Messenger::start(friends.clone(), builder.messages).await {
                Ok(started) => started,
                Err(e) => {
                    if let Some(task) = joining {
                        task.abort();
                    }
                    friends.shutdown().await;
                    let _ = dht.shutdown().await;
                    return Err(CarrierError::Messages(e));
                }
            };
        let sessions = match Sessions::start(&friends, &messenger, builder.sessions).await {
            Ok(sessions) => sessions,
            Err(e) => {
                if let Some(task) = joining {
                    task.abort();
                }
                messenger.shutdown().await;
                friends.shutdown().await;
                let _ = dht.shutdown().await;
                return Err(CarrierError::Sessions(e));
            }
        };
        // Subscribed before any session can open.
        let session_reports = sessions.subscribe();
        let (channel_sender, channel_reports) = mpsc::unbounded_channel();
        let mux_config = builder.forward.mux().clone().with_reports(channel_sender);
        let forward_config = builder.forward.with_mux(mux_config.clone());
        let (forwarder, forward_events) = match Forwarder::start(&sessions, forward_config) {
            Ok(started) => started,
            Err(e) => {
                if let Some(task) = joining {
                    task.abort();
                }
                sessions.shutdown().await;
                messenger.shutdown().await;
                friends.shutdown().await;
                let _ = dht.shutdown().await;
                return Err(CarrierError::Forward(e));
            }
        };
        if let Some(info) = builder.user_info {
            if friends.user_info() != info {
                if let Err(e) = friends.set_user_info(info).await {
                    if let Some(task) = joining {
                        task.abort();
                    }
                    sessions.shutdown().await;
                    messenger.shutdown().await;
                    friends.shutdown().await;
                    let _ = dht.shutdown().await;
                    return Err(CarrierError::UserInfo(e));
                }
            }
        }
        let (sender, receiver) = mpsc::unbounded_channel();
        let connection = Arc::new(Mutex::new(SelfConnection::new(builder.connection_window)));
        let mut tasks = vec![
            tokio::spawn(forward_friends(friend_events, sender.clone())),
            tokio::spawn(forward_messages(message_events, sender.clone())),
            tokio::spawn(forward_forwarding(forward_events, sender.clone())),
            tokio::spawn(forward_sessions(session_reports, sender.clone())),
            tokio::spawn(forward_channels(channel_reports, sender.clone())),
            tokio::spawn(forward_dht(dht_events, sender.clone())),
            tokio::spawn(watch_connection(
                dht.clone(),
                connection.clone(),
                builder.connection_tick,
                sender.clone(),
            )),
        ];
        tasks.extend(joining);
        let node = Carrier {
            inner: Arc::new(Inner {
                dht,
                friends,
                messenger,
                sessions,
                forwarder,
                mux_config,
                data_dir,
                connection,
                events: Mutex::new(Some(sender)),
                tasks: Mutex::new(tasks),
            }),
        };
        Ok((node, Events { receiver }))
    }

    /// The node's Carrier ID.
    pub fn id(&self) -> CarrierId {
        self.inner.friends.id()
    }

    /// The address others send friend requests to (the ID and the current nospam).
    pub fn address(&self) -> Address {
        self.inner.friends.address()
    }

    /// The data directory the node runs on.
    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// The node's own connection to the network, as last looked at.
    pub fn connection(&self) -> ConnectionStatus {
        lock(&self.inner.connection).status()
    }

    /// The DHT layer.
    pub fn dht(&self) -> &Dht {
        &self.inner.dht
    }

    /// The friend layer: requests, friends, links, presence.
    pub fn friends(&self) -> &Friends {
        &self.inner.friends
    }

    /// The messenger: messages to friends, online or offline, and invites.
    pub fn messenger(&self) -> &Messenger {
        &self.inner.messenger
    }

    /// Sessions with friends, whose streams run in reliable or datagram mode.
    pub fn sessions(&self) -> &Sessions {
        &self.inner.sessions
    }

    /// Services offered to friends and local TCP ports forwarded to theirs.
    pub fn forwarder(&self) -> &Forwarder {
        &self.inner.forwarder
    }

    /// Mux settings whose channels are reported on the node's event stream
    /// ([`Event::Channel`]): start muxes of your own with these, or with changes of them.
    ///
    /// ```no_run
    /// # async fn run(node: carrier::Carrier, session: carrier::stream::Session) -> Result<(), carrier::mux::MuxError> {
    /// let (mux, _requests) = carrier::mux::Mux::open(&session, node.mux_config()).await?;
    /// let channel = mux.open_channel(b"chat").await?;
    /// # Ok(()) }
    /// ```
    pub fn mux_config(&self) -> MuxConfig {
        self.inner.mux_config.clone()
    }

    /// Takes the invites friends send to `extension` (an application's name for its kind of
    /// invite): each one arrives on the event stream as [`Event::Invite`], to be answered
    /// with the messenger's [`Invites::reply_invite`](crate::msg::invite::Invites::reply_invite).
    /// [`CarrierError::Invites`] if something takes them already (the sessions layer takes
    /// `session`).
    pub fn take_invites(&self, extension: &str) -> Result<(), CarrierError> {
        let Some(sender) = lock(&self.inner.events).clone() else {
            return Err(CarrierError::ShutDown);
        };
        let inbox = self
            .inner
            .messenger
            .invites()
            .register_extension(extension)
            .map_err(CarrierError::Invites)?;
        lock(&self.inner.tasks).push(tokio::spawn(forward_invites(inbox, sender)));
        Ok(())
    }

    /// Stops every layer from the top down, saving what each keeps, and releases the data
    /// directory: a node may start on it again as soon as this returns. The event stream
    /// ends once its last events are read.
    pub async fn shutdown(&self) {
        lock(&self.inner.events).take();
        let tasks: Vec<JoinHandle<()>> = lock(&self.inner.tasks).drain(..).collect();
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            // Cancelled, as asked.
            let _ = task.await;
        }
        self.inner.forwarder.shutdown().await;
        self.inner.sessions.shutdown().await;
        self.inner.messenger.shutdown().await;
        self.inner.friends.shutdown().await;
        if let Err(e) = self.inner.dht.clone().shutdown().await {
            tracing::warn!("the DHT node did not shut down cleanly: {e}");
        }
    }
}

/// The first join: `attempts` tries, `wait` apart. If none succeeds the node runs anyway and
/// a background task (returned) keeps trying, backing off to once a minute.
async fn join(dht: &Dht, attempts: u32, wait: Duration) -> Option<JoinHandle<()>> {
    for attempt in 1..=attempts {
        match dht.bootstrap().await {
            Ok(contacts) => {
                tracing::info!(contacts, "joined the network");
                return None;
            }
            Err(DhtError::NotBootstrapped) => {
                tracing::warn!(
                    "no node to join through and no saved contacts: this node waits for others \
                     to join it (give it a bootstrap node)"
                );
                return None;
            }
            Err(e) => tracing::debug!(attempt, "joining failed: {e}"),
        }
        tokio::time::sleep(wait).await;
    }
    if attempts > 0 {
        tracing::warn!("could not join the network yet; trying again in the background");
    }
    let dht = dht.clone();
    Some(tokio::spawn(async move {
        let mut wait = wait;
        // Without attempts before the node runs, the first is made at once.
        let mut first = attempts == 0;
        loop {
            if !std::mem::take(&mut first) {
                tokio::time::sleep(wait).await;
            }
            match dht.bootstrap().await {
                Ok(contacts) => {
                    tracing::info!(contacts, "joined the network");
                    return;
                }
                Err(e) => tracing::debug!("joining failed: {e}"),
            }
            wait = (wait * 2).min(Duration::from_secs(60));
        }
    }))
}

async fn forward_friends(mut events: FriendEvents, to: mpsc::UnboundedSender<Event>) {
    while let Some(event) = events.recv().await {
        if to.send(Event::Friend(event)).is_err() {
            return;
        }
    }
}

async fn forward_messages(mut events: MessageEvents, to: mpsc::UnboundedSender<Event>) {
    while let Some(event) = events.recv().await {
        if to.send(Event::Message(event)).is_err() {
            return;
        }
    }
}

async fn forward_forwarding(mut events: ForwardEvents, to: mpsc::UnboundedSender<Event>) {
    while let Some(event) = events.recv().await {
        if to.send(Event::Forward(event)).is_err() {
            return;
        }
    }
}

async fn forward_sessions(mut reports: SessionReports, to: mpsc::UnboundedSender<Event>) {
    while let Some(report) = reports.recv().await {
        if to.send(Event::Session(report)).is_err() {
            return;
        }
    }
}

async fn forward_channels(
    mut reports: mpsc::UnboundedReceiver<ChannelReport>,
    to: mpsc::UnboundedSender<Event>,
) {
    while let Some(report) = reports.recv().await {
        if to.send(Event::Channel(report)).is_err() {
            return;
        }
    }
}

async fn forward_invites(mut inbox: InviteInbox, to: mpsc::UnboundedSender<Event>) {
    while let Some(invite) = inbox.recv().await {
        if to.send(Event::Invite(invite)).is_err() {
            return;
        }
    }
}

async fn forward_dht(mut events: broadcast::Receiver<DhtEvent>, to: mpsc::UnboundedSender<Event>) {
    loop {
        match events.recv().await {
            Ok(event) => {
                if to.send(Event::Dht(event)).is_err() {
                    return;
                }
            }
            // The DHT's own channel is bounded; its standing is reported again on change.
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Feeds the self-connection rule with the DHT's most recently heard contact.
async fn watch_connection(
    dht: Dht,
    connection: Arc<Mutex<SelfConnection>>,
    tick: Duration,
    to: mpsc::UnboundedSender<Event>,
) {
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let changed = lock(&connection).observe(Instant::now(), dht.last_heard());
        if let Some(status) = changed {
            match status {
                ConnectionStatus::Online => tracing::info!("online: DHT contacts answer"),
                ConnectionStatus::Offline => tracing::warn!("offline: no DHT contact answers"),
            }
            if to.send(Event::Connection(status)).is_err() {
                return;
            }
        }
    }
}
