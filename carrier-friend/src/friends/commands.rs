//! The public commands and views of [`Friends`]: requests, the friend list, the block list,
//! the nospam, user info and presence, links.

use carrier_dht::bounded::BoundedBytes;
use carrier_dht::id::{Address, CarrierId, Nospam};
use carrier_dht::Dht;

use super::error::FriendError;
use super::events::{Friend, FriendEvents, FriendRequest, OutgoingRequest};
use super::rules::{queue_control, queue_profile, KIND_PROFILE, KIND_REQUEST};
use super::state::{FriendRow, OutgoingRow, OUTBOX};
use super::wire::{
    self, Body, Change, Presence, RequestBody, UserInfo, MAX_HELLO_BYTES, MAX_LABEL_BYTES,
};
use super::{lock, read, unix_ms, Friends};
use crate::link::extension::{AlreadyRegistered, Extension, ExtensionInbox, ExtensionRouter};
use crate::link::{Link, LinkEndpoint, LinkPath};
use crate::outbox::{OutboxEntry, OutboxId, Route};

impl Friends {
    /// This node's Carrier ID.
    pub fn id(&self) -> CarrierId {
        self.core.id
    }

    /// This node's address: its ID and current nospam. Give it to whoever may ask to be a
    /// friend.
    pub fn address(&self) -> Address {
        Address::new(self.core.id, read(&self.core.state).nospam)
    }

    /// The DHT node underneath.
    pub fn dht(&self) -> &Dht {
        &self.core.dht
    }

    /// The node's QUIC endpoint, whose gate admits friends (and peers this node asked); the
    /// links themselves are [`link`](Self::link)'s.
    pub fn endpoint(&self) -> &LinkEndpoint {
        &self.core.endpoint
    }

    /// The live link of friend `id`, if it is online: open streams and send datagrams on it
    /// with [`Link::open_bi`], [`Link::open_uni`] and [`Link::send_datagram`], which write the
    /// layer header. `None` for a friend without a link, and for anyone not a friend.
    ///
    /// A link can close at any moment (the friend vanished, or it lost a race of dials and
    /// was closed with [`close::DUPLICATE`](crate::close::DUPLICATE)); a stream on it then fails with the close code,
    /// never silently, and its layer sends again on the next link.
    pub fn link(&self, id: &CarrierId) -> Option<Link> {
        if !self.is_friend(id) {
            return None;
        }
        lock(&self.core.machine).link(id)
    }

    /// The path `link` (a friend's, from [`Friends::link`]) runs on now: its topology (LAN,
    /// P2P or relayed), this node's socket and the real path. `None` once the link's mapped
    /// address is gone.
    pub fn link_path(&self, link: &Link) -> Option<LinkPath> {
        self.core.link_path_of(link)
    }

    /// Looks friend `id` up and dials it now, whatever the backoff and even if a link is held
    /// (the tie-break then keeps one of the two, on both sides alike); returns the link
    /// dialled, which may be the one closed as the duplicate.
    pub async fn dial_friend(&self, id: &CarrierId) -> Result<Link, FriendError> {
        if !self.is_friend(id) {
            return Err(FriendError::NotAFriend(*id));
        }
        match self.core.find_and_dial(*id, false).await {
            Some(link) => {
                self.core.adopt(link.clone(), true);
                Ok(link)
            }
            None => Err(FriendError::Unreachable(*id)),
        }
    }

    /// Whether friend `id` is connected (reported [`FriendEvent::Connected`](crate::FriendEvent::Connected) and not
    /// disconnected since).
    pub fn is_online(&self, id: &CarrierId) -> bool {
        lock(&self.core.machine).is_online(id)
    }

    /// The friends connected now, in ID order.
    pub fn online(&self) -> Vec<CarrierId> {
        lock(&self.core.machine).online()
    }

    /// How many friends are being looked up and dialled now (at most
    /// [`FriendsConfig::max_concurrent_dials`](crate::FriendsConfig::max_concurrent_dials)).
    pub fn dials_in_flight(&self) -> usize {
        lock(&self.core.machine).dials_in_flight()
    }

    /// Every event from now on, for a layer above (messages, sessions) that must follow
    /// links and friendships while the application reads the events `start` returned. Each
    /// subscriber gets each event once, in the same order as the application; dropping the
    /// receiver ends the subscription. Events before the call are not replayed: read
    /// [`Friends::online`] and [`Friends::friends`] after subscribing.
    pub fn subscribe(&self) -> FriendEvents {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        lock(&self.core.subscribers).push(sender);
        receiver
    }

    /// How many links the node holds now: one per connected friend, plus any short-lived
    /// link to a peer that is not (or no longer) a friend, such as one delivering a remove.
    pub fn link_count(&self) -> usize {
        lock(&self.core.machine).link_count()
    }

    /// The inbox of `layer`: every stream and datagram any friend sends it on a link (header
    /// removed). One per layer; [`Extension::FRIEND`] is this layer's own.
    pub fn register(&self, layer: Extension) -> Result<ExtensionInbox, AlreadyRegistered> {
        self.core.router.register(layer)
    }

    /// The router serving every friend link (its refusal counters, for diagnostics).
    pub fn router(&self) -> &ExtensionRouter {
        &self.core.router
    }

    /// Asks the owner of `address` to be friends, with `hello` (1 to [`MAX_HELLO_BYTES`]
    /// bytes). Returns once the request is stored; it is then delivered directly, or through
    /// the target's request mailbox while the target is offline, until the target takes it.
    /// Asking an existing friend again sends the request again (the friend answers with an
    /// accept); asking again before an answer replaces the earlier request.
    pub async fn add_friend(&self, address: &str, hello: &[u8]) -> Result<(), FriendError> {
        let address: Address = address.trim().parse()?;
        let peer = address.id();
        if peer == self.core.id {
            return Err(FriendError::Yourself);
        }
        check_hello(hello)?;
        let hello = BoundedBytes::from_slice(hello).map_err(|_| FriendError::HelloTooLong {
            len: hello.len(),
            max: MAX_HELLO_BYTES,
        })?;
        let now_ms = unix_ms();
        let request = OutboxId::random();
        let nospam = address.nospam();
        self.core
            .change(move |t| {
                if t.is_blocked(&peer)? {
                    return Ok(Err(FriendError::Blocked(peer)));
                }
                let payload = wire::encode(&Body::Request(RequestBody {
                    id: request,
                    seq: t.next_control_seq(now_ms)?,
                    nospam,
                    info: t.info()?,
                    hello: hello.clone(),
                }));
                if let Some(old) = t.outgoing(&peer)? {
                    OUTBOX.remove(t.txn(), &peer, &old.request)?;
                }
                t.put_outgoing(
                    &peer,
                    &OutgoingRow {
                        request,
                        nospam,
                        hello: hello.to_vec(),
                        sent_unix_secs: now_ms / 1000,
                    },
                )?;
                OUTBOX.put(
                    t.txn(),
                    &OutboxEntry {
                        peer,
                        id: request,
                        kind: KIND_REQUEST,
                        route: Route::Requests(nospam),
                        payload,
                        created_unix_ms: now_ms,
                        attempts: 0,
                        next_attempt_unix_ms: now_ms,
                        deposited_unix_ms: None,
                    },
                )?;
                Ok(Ok(()))
            })
            .await??;
        self.core.wake.notify_one();
        Ok(())
    }

    /// Accepts the pending request from `id`: `id` is a friend from now on, and the
    /// requester is told (through its mailbox if it is offline) and gets
    /// [`FriendEvent::Added`](crate::FriendEvent::Added).
    pub async fn accept_friend(&self, id: &CarrierId) -> Result<(), FriendError> {
        let peer = *id;
        let now_ms = unix_ms();
        self.core
            .change(move |t| {
                let Some(request) = t.incoming(&peer)? else {
                    return Ok(Err(FriendError::UnknownRequest(peer)));
                };
                t.remove_incoming(&peer)?;
                t.remove_outgoing(&peer)?;
                if t.friend(&peer)?.is_none() {
                    t.put_friend(
                        &peer,
                        &FriendRow {
                            label: String::new(),
                            info: request.info,
                            since_unix_secs: now_ms / 1000,
                            presence: Presence::None,
                            profile_seq: 0,
                        },
                    )?;
                }
                queue_control(t, peer, Change::Accept(t.info()?), now_ms)?;
                queue_profile(t, peer, now_ms)?;
                Ok(Ok(()))
            })
            .await??;
        self.core.wake.notify_one();
        self.core.refresh_online(peer);
        Ok(())
    }

    /// Drops the pending request from `id`, without telling the requester.
    pub async fn refuse_friend(&self, id: &CarrierId) -> Result<(), FriendError> {
        let peer = *id;
        self.core
            .change(move |t| {
                Ok(if t.remove_incoming(&peer)? {
                    Ok(())
                } else {
                    Err(FriendError::UnknownRequest(peer))
                })
            })
            .await?
    }

    /// Removes friend `id`; the friend is told (through its mailbox if it is offline) and
    /// gets [`FriendEvent::Removed`](crate::FriendEvent::Removed).
    pub async fn remove_friend(&self, id: &CarrierId) -> Result<(), FriendError> {
        let peer = *id;
        let now_ms = unix_ms();
        self.core
            .change(move |t| {
                if !t.remove_friend(&peer)? {
                    return Ok(Err(FriendError::NotAFriend(peer)));
                }
                // A request asking the friend again is moot now: its answer must not make
                // the friendship again.
                t.remove_outgoing(&peer)?;
                OUTBOX.remove_kinds(t.txn(), &peer, |kind| {
                    kind == KIND_REQUEST || kind == KIND_PROFILE
                })?;
                queue_control(t, peer, Change::Remove, now_ms)?;
                Ok(Ok(()))
            })
            .await??;
        self.core.wake.notify_one();
        self.core.refresh_online(peer);
        Ok(())
    }

    /// Puts `id` on the block list: its requests are dropped silently from now on, and its
    /// pending request (if any) is dropped. A friend stays a friend until removed.
    pub async fn block(&self, id: &CarrierId) -> Result<(), FriendError> {
        let peer = *id;
        if peer == self.core.id {
            return Err(FriendError::Yourself);
        }
        let now = unix_ms() / 1000;
        self.core
            .change(move |t| {
                t.block(&peer, now)?;
                t.remove_incoming(&peer)?;
                Ok(())
            })
            .await
    }

    /// Takes `id` off the block list; returns whether it was on it.
    pub async fn unblock(&self, id: &CarrierId) -> Result<bool, FriendError> {
        let peer = *id;
        self.core.change(move |t| t.unblock(&peer)).await
    }

    /// Replaces the nospam, and so the address: requests to the old address are dropped from
    /// now on (the request mailbox moves with it).
    pub async fn set_nospam(&self, nospam: Nospam) -> Result<(), FriendError> {
        self.core.change(move |t| t.set_nospam(nospam)).await
    }

    /// Sets the user info sent with this node's requests and accepts, and tells every friend:
    /// at once over its link, or when it comes back (directly, or through its mailbox).
    pub async fn set_user_info(&self, info: UserInfo) -> Result<(), FriendError> {
        let now_ms = unix_ms();
        self.core
            .change(move |t| {
                t.set_info(&info)?;
                for friend in t.friend_ids()? {
                    queue_profile(t, friend, now_ms)?;
                }
                Ok(())
            })
            .await?;
        self.core.wake.notify_one();
        Ok(())
    }

    /// Sets this node's presence and tells every friend, like
    /// [`set_user_info`](Self::set_user_info). It stays until changed, restarts included.
    pub async fn set_presence(&self, presence: Presence) -> Result<(), FriendError> {
        let now_ms = unix_ms();
        self.core
            .change(move |t| {
                t.set_presence(presence)?;
                for friend in t.friend_ids()? {
                    queue_profile(t, friend, now_ms)?;
                }
                Ok(())
            })
            .await?;
        self.core.wake.notify_one();
        Ok(())
    }

    /// This node's presence.
    pub fn presence(&self) -> Presence {
        read(&self.core.state).presence
    }

    /// Sets the local label of friend `id` (at most [`MAX_LABEL_BYTES`]).
    pub async fn set_label(&self, id: &CarrierId, label: &str) -> Result<(), FriendError> {
        if label.len() > MAX_LABEL_BYTES {
            return Err(FriendError::LabelTooLong {
                len: label.len(),
                max: MAX_LABEL_BYTES,
            });
        }
        let (peer, label) = (*id, label.to_string());
        self.core
            .change(move |t| {
                let Some(mut row) = t.friend(&peer)? else {
                    return Ok(Err(FriendError::NotAFriend(peer)));
                };
                row.label.clone_from(&label);
                t.put_friend(&peer, &row)?;
                Ok(Ok(()))
            })
            .await?
    }

    /// The friend list, in ID order.
    pub fn friends(&self) -> Vec<Friend> {
        let state = read(&self.core.state);
        let mut friends: Vec<Friend> = state
            .friends
            .iter()
            .map(|(id, row)| Friend {
                id: *id,
                label: row.label.clone(),
                info: row.info.clone(),
                presence: row.presence,
                since_unix_secs: row.since_unix_secs,
            })
            .collect();
        friends.sort_by_key(|f| f.id.to_bytes());
        friends
    }

    /// Whether `id` is a friend.
    pub fn is_friend(&self, id: &CarrierId) -> bool {
        read(&self.core.state).friends.contains_key(id)
    }

    /// Requests waiting for [`accept_friend`](Self::accept_friend) or
    /// [`refuse_friend`](Self::refuse_friend), in ID order.
    pub fn incoming_requests(&self) -> Vec<FriendRequest> {
        let state = read(&self.core.state);
        let mut requests: Vec<FriendRequest> = state
            .incoming
            .iter()
            .map(|(from, row)| FriendRequest {
                from: *from,
                info: row.info.clone(),
                hello: row.hello.clone(),
                received_unix_secs: row.received_unix_secs,
            })
            .collect();
        requests.sort_by_key(|r| r.from.to_bytes());
        requests
    }

    /// Requests this node sent that are not accepted yet, in ID order.
    pub fn outgoing_requests(&self) -> Vec<OutgoingRequest> {
        let state = read(&self.core.state);
        let mut requests: Vec<OutgoingRequest> = state
            .outgoing
            .iter()
            .map(|(to, row)| OutgoingRequest {
                to: Address::new(*to, row.nospam),
                hello: row.hello.clone(),
                sent_unix_secs: row.sent_unix_secs,
            })
            .collect();
        requests.sort_by_key(|r| r.to.id().to_bytes());
        requests
    }

    /// The block list, in ID order.
    pub fn blocked(&self) -> Vec<CarrierId> {
        let mut blocked: Vec<CarrierId> = read(&self.core.state).blocked.iter().copied().collect();
        blocked.sort_by_key(CarrierId::to_bytes);
        blocked
    }

    /// The user info this node sends.
    pub fn user_info(&self) -> UserInfo {
        read(&self.core.state).info.clone()
    }

    /// Items (requests, accepts, removes) still waiting for their peer's acknowledgement,
    /// with their retry state.
    pub fn outbox(&self) -> Result<Vec<OutboxEntry>, FriendError> {
        Ok(OUTBOX.load(&self.core.store)?)
    }

    /// Checks the node's request and message mailboxes now, instead of at the next
    /// [`poll_interval`](crate::FriendsConfig::poll_interval).
    pub async fn check_mailboxes(&self) {
        self.core.poll_mailboxes().await;
    }

    /// Announces the node's peer record now; returns how many storers took it.
    pub async fn announce(&self) -> Result<usize, FriendError> {
        self.core.announce().await
    }

    /// Stops the background work, waits until every task of the layer has ended, and closes
    /// the QUIC endpoint (telling peers). The DHT is the caller's to shut down: once it is,
    /// and the `Friends` handles are dropped, nothing holds the node's database, so a node
    /// started again on the same data directory opens it at once.
    pub async fn shutdown(&self) {
        self.tasks.stop().await;
        self.core.endpoint.shutdown().await;
    }
}

pub(super) fn check_hello(hello: &[u8]) -> Result<(), FriendError> {
    if hello.is_empty() {
        return Err(FriendError::EmptyHello);
    }
    if hello.len() > MAX_HELLO_BYTES {
        return Err(FriendError::HelloTooLong {
            len: hello.len(),
            max: MAX_HELLO_BYTES,
        });
    }
    Ok(())
}
