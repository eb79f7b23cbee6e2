//! [`Messenger`]: the tokio driver of the messages protocol on the friend layer.
//!
//! One writer task per friend with something to send writes batches and receipts on its
//! own `MESSAGES` stream of the friend's current link (and each large message on a stream of
//! its own); the pump takes every stream friends open on [`Extension::MSG`] and routes it by
//! its kind byte ([`route`]); a timer task expires messages and wakes writers whose
//! receipts are late; a follower of the friend layer's events wakes a friend's writer when it
//! connects and fails its messages when it is removed. Decisions are the [`Outbox`]'s and
//! the window's; this file only moves bytes and commits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use carrier_friend::dht::id::CarrierId;
use carrier_friend::dht::store::Store;
use carrier_friend::dht::{DhtError, MailboxError, MAX_LETTER_BYTES};
use carrier_friend::quinn::{RecvStream, SendStream, VarInt};
use carrier_friend::{Extension, FriendEvent, Friends, Inbound};
use tokio::sync::{mpsc, Notify};
use tokio::task::{JoinHandle, JoinSet};

use crate::invite::{InviteError, InviteId, InviteInbox, InviteReply, Invites};
use crate::outbox::{Deposit, MailboxTerms, NewLarge, Outbox, Planned, Queued, Settled};
use crate::store::{self, Outgoing};
use crate::wire::{self, Batch, Frame, Item, Large, Receipt, Small, MAX_SMALL_BYTES};
use crate::{
    stream_kind, FailReason, Message, MessageEvent, MessageEvents, MessageId, MessengerConfig,
    MsgError, WaitReason, MAX_MESSAGE_BYTES,
};

/// The pause before a new stream after the friend stopped one or the link was lost.
const RESTREAM_PAUSE: Duration = Duration::from_millis(50);
/// Items one batch frame carries at most.
const BATCH_ITEMS: usize = 1024;
/// Bodies one batch frame carries, about (a 64 KiB message may go over).
const BATCH_BYTES: usize = 256 * 1024;
/// Bytes gathered into one stream write, about.
const WRITE_BYTES: usize = 1024 * 1024;
/// Receipts kept for a friend without a link (they are not durable: a sender sends again).
const MAX_PENDING_RECEIPTS: usize = 1024;
/// The code a refused or broken stream of this layer is stopped with.
const STREAM_REFUSED: VarInt = VarInt::from_u32(0x4d01);

/// The messenger of a node: sends messages to friends and receives theirs, on the friend
/// layer, with its tables in the node's database. Cheap to clone; its tasks stop when the
/// last clone is dropped or on [`shutdown`](Self::shutdown).
#[derive(Clone)]
pub struct Messenger {
    core: Arc<Core>,
    tasks: Arc<Tasks>,
}

impl std::fmt::Debug for Messenger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Messenger")
            .field("id", &self.core.id)
            .finish_non_exhaustive()
    }
}

struct Tasks {
    core: Arc<Core>,
    loops: Mutex<Vec<JoinHandle<()>>>,
}

impl Tasks {
    fn abort(&self) {
        self.core.closed.store(true, Ordering::SeqCst);
        for task in lock(&self.loops).drain(..) {
            task.abort();
        }
        lock(&self.core.work).abort_all();
    }

    async fn stop(&self) {
        self.core.closed.store(true, Ordering::SeqCst);
        let loops: Vec<JoinHandle<()>> = lock(&self.loops).drain(..).collect();
        for task in &loops {
            task.abort();
        }
        for task in loops {
            // Cancelled, as asked.
            let _ = task.await;
        }
        loop {
            let mut work = std::mem::take(&mut *lock(&self.core.work));
            if work.is_empty() {
                break;
            }
            work.abort_all();
            while work.join_next().await.is_some() {}
        }
        lock(&self.core.peers).clear();
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.abort();
        lock(&self.core.peers).clear();
    }
}

/// What the messenger shares between its tasks.
struct Core {
    friends: Friends,
    /// The invites, whose streams this layer's inbox routes to them.
    invites: Invites,
    store: Store,
    id: CarrierId,
    config: MessengerConfig,
    outbox: Mutex<Outbox>,
    events: mpsc::UnboundedSender<MessageEvent>,
    /// Per friend: its writer's wake-up, its receipts to send, its receive order.
    peers: Mutex<HashMap<CarrierId, Arc<PeerState>>>,
    /// When each friendship was made (the epoch's key), as the friend layer lists it.
    since: Mutex<HashMap<CarrierId, u64>>,
    /// Wakes the timer: the outbox's next deadline may be earlier.
    timer: Notify,
    work: Mutex<JoinSet<()>>,
    closed: AtomicBool,
    /// Held while the own mailbox is read, so one read runs at a time.
    draining: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct PeerState {
    wake: Notify,
    receipts: Mutex<Vec<Receipt>>,
    /// Held while a receive commits and raises, so a friend's messages are raised in order
    /// even while an old and a new link overlap.
    receive: tokio::sync::Mutex<()>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while these locks are held; a poisoned lock's data is still whole.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl Messenger {
    /// Starts the messenger on `friends` (one per node): creates its tables, loads the outbox
    /// (a message queued before a restart is sent again), fails what waits for peers that are
    /// friends no more, registers the [`Extension::MSG`] inbox, and raises every inbox message
    /// not acked yet as a [`MessageEvent::Message`] again.
    pub async fn start(
        friends: Friends,
        config: MessengerConfig,
    ) -> Result<(Messenger, MessageEvents), MsgError> {
        let store = friends.dht().store().ok_or(MsgError::NoStore)?;
        store::ensure_schema(&store).await?;
        let inbox = friends.register(Extension::MSG)?;
        let subscription = friends.subscribe();
        let (events, receiver) = mpsc::unbounded_channel();
        let invites = Invites::new(friends.clone(), config.invites.clone());
        let core = Arc::new(Core {
            invites,
            id: friends.id(),
            outbox: Mutex::new(Outbox::new(millis(config.resend_after))),
            friends,
            store,
            config,
            events,
            peers: Mutex::new(HashMap::new()),
            since: Mutex::new(HashMap::new()),
            timer: Notify::new(),
            work: Mutex::new(JoinSet::new()),
            closed: AtomicBool::new(false),
            draining: tokio::sync::Mutex::new(()),
        });
        core.refresh_since();
        core.load().await?;
        for message in store::inbox(&core.store)? {
            core.emit(MessageEvent::Message(message));
        }
        let loops = vec![
            tokio::spawn(pump(core.clone(), inbox)),
            tokio::spawn(follow(core.clone(), subscription)),
            tokio::spawn(timer(core.clone())),
            tokio::spawn(poll_mailbox(core.clone())),
        ];
        let messenger = Messenger {
            tasks: Arc::new(Tasks {
                core: core.clone(),
                loops: Mutex::new(loops),
            }),
            core,
        };
        Ok((messenger, receiver))
    }

    /// Sends `bytes` (1 byte to [`MAX_MESSAGE_BYTES`]) to friend `to`. Returns the message's
    /// ID once the outbox has committed it; its receipt arrives as events
    /// ([`MessageEvent::Delivered`], or `Waiting` / `Stored` / `Failed` on the way).
    pub async fn send(&self, to: &CarrierId, bytes: &[u8]) -> Result<MessageId, MsgError> {
        let core = &self.core;
        if core.closed.load(Ordering::SeqCst) {
            return Err(MsgError::Closed);
        }
        if *to == core.id {
            return Err(MsgError::Yourself);
        }
        if bytes.is_empty() {
            return Err(MsgError::Empty);
        }
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(MsgError::TooLarge {
                len: bytes.len(),
                max: MAX_MESSAGE_BYTES,
            });
        }
        let since = core.since_of(to).ok_or(MsgError::NotAFriend(*to))?;
        let online = core.friends.link(to).is_some();
        let large = bytes.len() > MAX_SMALL_BYTES;
        let id = MessageId::next();
        let sent_at_ms = unix_ms();
        let expires_at_ms = sent_at_ms.saturating_add(millis(core.config.message_ttl));
        let (peer, body) = (*to, bytes.to_vec());
        let row = core
            .store
            .write(move |txn| {
                store::commit_send(
                    txn,
                    &Outgoing {
                        peer,
                        id,
                        body: &body,
                        large,
                        sent_at_ms,
                        offline: !online,
                        expires_at_ms,
                        since,
                    },
                )
            })
            .await?;
        {
            let mut outbox = lock(&core.outbox);
            match row.seq {
                Some(seq) => outbox.queue(
                    peer,
                    row.epoch,
                    seq,
                    Queued {
                        id,
                        sent_at_ms,
                        offline: !online,
                        expires_at_ms,
                        skip: false,
                        body: Some(bytes.to_vec()),
                        len: bytes.len(),
                    },
                ),
                None => outbox.queue_large(
                    peer,
                    row.epoch,
                    NewLarge {
                        id,
                        after: row.after,
                        sent_at_ms,
                        offline: !online,
                        expires_at_ms,
                    },
                ),
            }
        }
        if !online {
            let reason = if large && core.config.mailbox {
                WaitReason::TooLargeForMailbox
            } else {
                WaitReason::Offline
            };
            core.emit(MessageEvent::Waiting {
                to: peer,
                id,
                reason,
            });
        }
        core.peer(peer).wake.notify_one();
        core.timer.notify_one();
        Ok(id)
    }

    /// Acks a message of the inbox: the application handled it. Once this returns it is never
    /// raised again.
    pub async fn ack(&self, id: MessageId) -> Result<(), MsgError> {
        let removed = self
            .core
            .store
            .write(move |txn| store::ack(txn, &id))
            .await?;
        if removed {
            Ok(())
        } else {
            Err(MsgError::UnknownMessage(id))
        }
    }

    /// The messages received and not yet acked, in the order they were committed.
    pub fn inbox(&self) -> Result<Vec<Message>, MsgError> {
        Ok(store::inbox(&self.core.store)?)
    }

    /// Messages waiting for their receipt (to every friend).
    pub fn outbox_len(&self) -> usize {
        let outbox = lock(&self.core.outbox);
        outbox.peers().iter().map(|p| outbox.len(p)).sum()
    }

    /// Reads the node's own mailbox now (it is read at start, every
    /// [`mailbox_poll`](MessengerConfig::mailbox_poll) and when a friend connects): takes
    /// friends' messages and receipts, deletes the letters taken.
    pub async fn check_mailbox(&self) {
        self.core.drain().await;
    }

    /// The invites of this node ([`Invites`]): requests to a friend's named extension that
    /// resolve to the friend's reply. Their streams reach them through this messenger.
    pub fn invites(&self) -> &Invites {
        &self.core.invites
    }

    /// Invites friend `to` to its `extension`: [`Invites::invite`].
    pub async fn invite(
        &self,
        to: &CarrierId,
        extension: &str,
        bundle: &[u8],
        data: &[u8],
    ) -> Result<InviteReply, InviteError> {
        self.core.invites.invite(to, extension, bundle, data).await
    }

    /// The inbox of the invites addressed to `name`: [`Invites::register_extension`].
    pub fn register_extension(&self, name: &str) -> Result<InviteInbox, InviteError> {
        self.core.invites.register_extension(name)
    }

    /// Replies to the pending invite `id`: [`Invites::reply_invite`].
    pub async fn reply_invite(
        &self,
        id: InviteId,
        status: i32,
        reason: &str,
        data: &[u8],
    ) -> Result<(), InviteError> {
        self.core
            .invites
            .reply_invite(id, status, reason, data)
            .await
    }

    /// Stops every task (the invites' too) and waits until they ended. The friend layer
    /// keeps running.
    pub async fn shutdown(&self) {
        self.core.invites.shutdown().await;
        self.tasks.stop().await;
    }
}

impl Core {
    fn emit(&self, event: MessageEvent) {
        // Nobody listening is the application's choice.
        let _ = self.events.send(event);
    }

    /// Runs `work` in the background until it ends or the messenger stops.
    fn spawn(&self, work: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut set = lock(&self.work);
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        while set.try_join_next().is_some() {}
        set.spawn(work);
    }

    fn refresh_since(&self) {
        let listed: HashMap<CarrierId, u64> = self
            .friends
            .friends()
            .into_iter()
            .map(|f| (f.id, f.since_unix_secs))
            .collect();
        *lock(&self.since) = listed;
    }

    /// When the friendship with `peer` was made, if it is a friend.
    fn since_of(&self, peer: &CarrierId) -> Option<u64> {
        if !self.friends.is_friend(peer) {
            return None;
        }
        if let Some(&since) = lock(&self.since).get(peer) {
            return Some(since);
        }
        self.refresh_since();
        lock(&self.since).get(peer).copied()
    }

    /// The state of `peer`, with its writer started.
    fn peer(self: &Arc<Self>, peer: CarrierId) -> Arc<PeerState> {
        let mut peers = lock(&self.peers);
        if let Some(state) = peers.get(&peer) {
            return state.clone();
        }
        let state = Arc::new(PeerState::default());
        peers.insert(peer, state.clone());
        drop(peers);
        self.spawn(write_loop(self.clone(), peer, state.clone()));
        state
    }

    /// Loads the outbox; what waits for a peer that is no friend (or a friendship made again
    /// since) fails.
    async fn load(self: &Arc<Self>) -> Result<(), MsgError> {
        let rows = store::load_outbox(&self.store)?;
        let mut stale: HashMap<CarrierId, Vec<(MessageId, bool)>> = HashMap::new();
        let mut current: HashMap<CarrierId, Option<store::PeerRow>> = HashMap::new();
        {
            let mut outbox = lock(&self.outbox);
            for (peer, id, row) in rows {
                let epoch = match current.get(&peer) {
                    Some(row) => row.map(|r| r.epoch),
                    None => {
                        let since = self.since_of(&peer);
                        let row =
                            store::peer_row(&self.store, &peer)?.filter(|r| Some(r.since) == since);
                        current.insert(peer, row);
                        row.map(|r| r.epoch)
                    }
                };
                if epoch != Some(row.epoch) {
                    stale.entry(peer).or_default().push((id, row.skip));
                    continue;
                }
                match row.seq {
                    Some(seq) => outbox.queue(
                        peer,
                        row.epoch,
                        seq,
                        Queued {
                            id,
                            sent_at_ms: row.sent_at_ms,
                            offline: row.offline,
                            expires_at_ms: row.expires_at_ms,
                            skip: row.skip,
                            body: None,
                            len: row.len,
                        },
                    ),
                    None => outbox.queue_large(
                        peer,
                        row.epoch,
                        NewLarge {
                            id,
                            after: row.after,
                            sent_at_ms: row.sent_at_ms,
                            offline: row.offline,
                            expires_at_ms: row.expires_at_ms,
                        },
                    ),
                }
            }
        }
        // The floor of every friend with a row, queued or not: a friend whose messages were
        // all delivered before the restart takes the next sequence at once.
        let mut committed = Vec::new();
        for (peer, row) in store::peer_rows(&self.store)? {
            if self.since_of(&peer) == Some(row.since) {
                committed.push((peer, row.epoch, row.next_seq));
            }
        }
        {
            let mut outbox = lock(&self.outbox);
            outbox.loaded(committed);
            for (peer, row) in &current {
                if let Some(row) = row {
                    outbox.restore_deposit(peer, row.deposited_through, row.deposited_at_ms);
                }
            }
        }
        for (peer, ids) in stale {
            let settled: Vec<Settled> = ids
                .into_iter()
                .map(|(id, skip)| Settled { peer, id, skip })
                .collect();
            self.fail(peer, settled, FailReason::Removed).await?;
        }
        let peers = lock(&self.outbox).peers();
        for peer in peers {
            self.peer(peer).wake.notify_one();
        }
        Ok(())
    }

    /// `settled` of `peer` failed for `reason`: their rows go, and each not reported before is
    /// reported.
    async fn fail(
        &self,
        peer: CarrierId,
        settled: Vec<Settled>,
        reason: FailReason,
    ) -> Result<(), MsgError> {
        let ids: Vec<MessageId> = settled.iter().map(|s| s.id).collect();
        let forget = reason == FailReason::Removed && self.since_of(&peer).is_none();
        self.store
            .write(move |txn| {
                if forget {
                    store::forget_peer(txn, &peer, &ids)
                } else {
                    store::settle(txn, &peer, &ids)
                }
            })
            .await?;
        for s in settled.into_iter().filter(|s| !s.skip) {
            self.emit(MessageEvent::Failed {
                to: peer,
                id: s.id,
                reason,
            });
        }
        Ok(())
    }

    /// `peer` was removed: everything queued for it fails.
    async fn removed(&self, peer: CarrierId) {
        lock(&self.since).remove(&peer);
        let settled = lock(&self.outbox).remove_peer(&peer);
        // A failed write leaves the rows, which the next start fails.
        let _ = self.fail(peer, settled, FailReason::Removed).await;
    }

    /// Expires what is due; returns when to look again.
    async fn expire(&self) -> Option<u64> {
        let now = unix_ms();
        let expired = lock(&self.outbox).expire(now);
        let mut by_peer: HashMap<CarrierId, (Vec<MessageId>, Vec<MessageId>)> = HashMap::new();
        for s in &expired {
            let entry = by_peer.entry(s.peer).or_default();
            if s.skip {
                entry.0.push(s.id);
            } else {
                entry.1.push(s.id);
            }
        }
        for (peer, (skipped, gone)) in by_peer {
            let (s, g) = (skipped.clone(), gone.clone());
            let written = self
                .store
                .write(move |txn| {
                    store::mark_skipped(txn, &peer, &s)?;
                    store::settle(txn, &peer, &g)
                })
                .await;
            if written.is_err() {
                continue;
            }
            for id in skipped.into_iter().chain(gone) {
                self.emit(MessageEvent::Failed {
                    to: peer,
                    id,
                    reason: FailReason::Expired,
                });
            }
            if let Some(state) = lock(&self.peers).get(&peer) {
                state.wake.notify_one();
            }
        }
        lock(&self.outbox).poll_timeout()
    }

    /// A receipt from `peer`: what it settles leaves the outbox and is reported delivered;
    /// the rows are deleted in the background (a crash before that commits sends them again
    /// after the restart, which the friend acknowledges again: `Delivered` may then be
    /// reported twice, never too early).
    fn on_receipt(&self, peer: CarrierId, receipt: Receipt) {
        let settled = lock(&self.outbox).receipt(
            &peer,
            receipt.epoch,
            &receipt.delivered,
            &receipt.large,
            unix_ms(),
        );
        if settled.is_empty() {
            return;
        }
        let ids: Vec<MessageId> = settled.iter().map(|s| s.id).collect();
        for s in settled.into_iter().filter(|s| !s.skip) {
            self.emit(MessageEvent::Delivered { to: peer, id: s.id });
        }
        let store = self.store.clone();
        self.spawn(async move {
            // A failed write leaves rows that are sent again after a restart and
            // acknowledged again: the receiver takes each once.
            let _ = store
                .write(move |txn| store::settle(txn, &peer, &ids))
                .await;
        });
    }

    fn terms(&self) -> MailboxTerms {
        MailboxTerms {
            letter_bytes: MAX_LETTER_BYTES,
            republish_ms: millis(self.config.republish),
            retry_ms: millis(self.config.deposit_retry),
            max_retry_ms: millis(self.config.deposit_retry_max),
        }
    }

    /// Deposits in offline `peer`'s mailbox the receipts waiting for it, then the messages
    /// its outbox rules say are due, one letter at a time.
    async fn deposit(&self, peer: CarrierId, state: &PeerState) {
        let dht = self.friends.dht();
        let receipts = std::mem::take(&mut *lock(&state.receipts));
        for receipt in merge_receipts(receipts) {
            let letter = wire::encode_letter(&Frame::Receipt(receipt.clone()));
            if dht.deposit(&peer, &letter).await.is_err() {
                // Kept for the link or the next deposit; the sender sends again meanwhile.
                let mut pending = lock(&state.receipts);
                if pending.len() < MAX_PENDING_RECEIPTS {
                    pending.push(receipt);
                }
            }
        }
        let terms = self.terms();
        loop {
            let plan = lock(&self.outbox).next_deposit(&peer, unix_ms(), &terms);
            let (epoch, planned, new_from) = match plan {
                None => return,
                Some(Deposit::TooLarge { id, first }) => {
                    if first {
                        self.emit(MessageEvent::Waiting {
                            to: peer,
                            id,
                            reason: WaitReason::TooLargeForMailbox,
                        });
                    }
                    return;
                }
                Some(Deposit::Letter {
                    epoch,
                    planned,
                    new_from,
                }) => (epoch, planned, new_from),
            };
            let Ok(items) = items(&self.store, planned) else {
                return;
            };
            let Some(through) = items.last().map(|item| item.range().last) else {
                return;
            };
            let messages: Vec<(u64, MessageId)> = items
                .iter()
                .filter_map(|item| match item {
                    Item::Message(m) => Some((m.seq, m.id)),
                    Item::Skip(_) => None,
                })
                .collect();
            let letter = wire::encode_letter(&Frame::Batch(Batch { epoch, items }));
            match dht.deposit(&peer, &letter).await {
                Ok(_) => {
                    let at = unix_ms();
                    lock(&self.outbox).deposited(&peer, through, at);
                    // Lost, it costs one deposit again after a restart.
                    let _ = self
                        .store
                        .write(move |txn| store::record_deposit(txn, &peer, epoch, through, at))
                        .await;
                    for (_, id) in messages.into_iter().filter(|(seq, _)| *seq >= new_from) {
                        self.emit(MessageEvent::Stored { to: peer, id });
                    }
                }
                Err(error) => {
                    let news =
                        lock(&self.outbox).deposit_refused(&peer, through, unix_ms(), &terms);
                    if matches!(error, DhtError::Mailbox(MailboxError::Quota { .. })) {
                        for (_, id) in messages.into_iter().filter(|(seq, _)| *seq >= news) {
                            self.emit(MessageEvent::Waiting {
                                to: peer,
                                id,
                                reason: WaitReason::MailboxFull,
                            });
                        }
                    }
                    return;
                }
            }
        }
    }

    /// Takes what waits in the node's own message mailbox: friends' messages (committed
    /// like those of a link, then acknowledged) and receipts; deletes each letter taken.
    async fn drain(self: &Arc<Self>) {
        let _one = self.draining.lock().await;
        let dht = self.friends.dht();
        let Ok(letters) = dht.fetch().await else {
            return;
        };
        // Batches in sequence order, so letters fetched in any order fill the window.
        let mut batches = Vec::new();
        for letter in letters {
            // Letters of other layers are theirs to take.
            let Some(frame) = wire::decode_letter(&letter.bytes) else {
                continue;
            };
            match frame {
                Ok(Frame::Batch(batch)) => batches.push((batch, letter)),
                Ok(Frame::Receipt(receipt)) => {
                    self.on_receipt(letter.sender, receipt);
                    // A delete that fails is tried at the next check; it is taken once.
                    let _ = dht.delete(&letter).await;
                }
                // Ours, but nothing to take.
                Err(_) => {
                    let _ = dht.delete(&letter).await;
                }
            }
        }
        batches.sort_by_key(|(batch, letter)| {
            let first = batch.items.first().map_or(0, |item| item.range().first);
            (letter.sender, batch.epoch, first)
        });
        for (batch, letter) in batches {
            let sender = letter.sender;
            if !self.friends.is_friend(&sender) {
                // Perhaps a friend again soon; the letter expires otherwise.
                continue;
            }
            let batch = Arc::new(batch);
            let received = self
                .receive(sender, move |txn| {
                    store::receive_batch(txn, &sender, &batch, true)
                })
                .await;
            // A letter with messages beyond a gap stays until the gap is filled (the sender
            // sends again meanwhile, and the window takes each once).
            if matches!(received, Ok(true)) {
                let _ = dht.delete(&letter).await;
            }
        }
    }

    /// Commits what is new in a batch or large message from `peer`, queues its receipt,
    /// raises its messages; whether all of it is taken now. `Err` if the commit failed
    /// (nothing is acknowledged then).
    async fn receive<F>(self: &Arc<Self>, peer: CarrierId, commit: F) -> Result<bool, MsgError>
    where
        F: FnMut(
                &redb::WriteTransaction,
            ) -> Result<store::Received, carrier_friend::dht::store::DatabaseError>
            + Send
            + 'static,
    {
        let state = self.peer(peer);
        let _order = state.receive.lock().await;
        let mut received = self.store.write(commit).await?;
        let (messages, whole) = (std::mem::take(&mut received.messages), received.whole);
        let mut receipts = lock(&state.receipts);
        for receipt in received.receipts() {
            if receipts.len() < MAX_PENDING_RECEIPTS {
                receipts.push(receipt);
            }
        }
        if !receipts.is_empty() {
            state.wake.notify_one();
        }
        drop(receipts);
        for message in messages {
            self.emit(MessageEvent::Message(message));
        }
        Ok(whole)
    }
}

/// Takes every stream friends open on [`Extension::MSG`] and routes it.
async fn pump(core: Arc<Core>, mut inbox: carrier_friend::ExtensionInbox) {
    while let Some(inbound) = inbox.recv().await {
        route(&core, inbound);
    }
}

/// Routes one stream by its kind byte: the one place that knows every kind.
fn route(core: &Arc<Core>, inbound: Inbound) {
    let core2 = core.clone();
    match inbound {
        Inbound::Uni { peer, recv } => core.spawn(async move {
            let (kind, recv) = match read_kind(recv).await {
                Some(read) => read,
                None => return,
            };
            match kind {
                stream_kind::MESSAGES => read_messages(core2, peer, recv).await,
                stream_kind::LARGE_MESSAGE => read_large(core2, peer, recv).await,
                _ => refuse(None, recv),
            }
        }),
        Inbound::Bi { peer, send, recv } => core.spawn(async move {
            let Some((kind, recv)) = read_kind(recv).await else {
                return;
            };
            match kind {
                stream_kind::INVITE => core2.invites.accept(peer, send, recv),
                _ => refuse(Some(send), recv),
            }
        }),
        // The messages protocol sends no datagrams.
        Inbound::Datagram { .. } => {}
    }
}

async fn read_kind(mut recv: RecvStream) -> Option<(u8, RecvStream)> {
    let mut kind = [0u8; 1];
    match tokio::time::timeout(
        carrier_friend::extension::HEADER_TIMEOUT,
        recv.read_exact(&mut kind),
    )
    .await
    {
        Ok(Ok(())) => Some((kind[0], recv)),
        _ => {
            let _ = recv.stop(STREAM_REFUSED);
            None
        }
    }
}

fn refuse(send: Option<SendStream>, mut recv: RecvStream) {
    // The stream may be gone already.
    let _ = recv.stop(STREAM_REFUSED);
    if let Some(mut send) = send {
        let _ = send.reset(STREAM_REFUSED);
    }
}

/// Batches read from a stream and not committed yet, at most: the reader waits beyond.
const UNCOMMITTED_BATCHES: usize = 64;

/// Reads the frames of a friend's `MESSAGES` stream until it ends. Batches go to a committer
/// that commits all those waiting in one write, so the stream is read on while a commit
/// waits for the disk.
async fn read_messages(core: Arc<Core>, peer: CarrierId, mut recv: RecvStream) {
    let (batches, waiting) = mpsc::channel(UNCOMMITTED_BATCHES);
    core.spawn(commit_batches(core.clone(), peer, waiting));
    let mut prefix = [0u8; 4];
    let mut frame = Vec::new();
    loop {
        if recv.read_exact(&mut prefix).await.is_err() {
            return;
        }
        let len = u32::from_le_bytes(prefix) as usize;
        if len > wire::MAX_FRAME_BYTES {
            return refuse(None, recv);
        }
        frame.resize(len, 0);
        if recv.read_exact(&mut frame).await.is_err() {
            return;
        }
        match wire::decode_frame(&frame) {
            Ok(Frame::Batch(batch)) => {
                if batches.send(batch).await.is_err() {
                    // The committer stopped on a failed commit: nothing more is taken.
                    return refuse(None, recv);
                }
            }
            Ok(Frame::Receipt(receipt)) => core.on_receipt(peer, receipt),
            Err(_) => return refuse(None, recv),
        }
    }
}

/// Commits the batches a stream's reader hands over, all that wait in one write.
async fn commit_batches(core: Arc<Core>, peer: CarrierId, mut waiting: mpsc::Receiver<Batch>) {
    while let Some(first) = waiting.recv().await {
        let mut batches = vec![first];
        while batches.len() < UNCOMMITTED_BATCHES {
            match waiting.try_recv() {
                Ok(batch) => batches.push(batch),
                Err(_) => break,
            }
        }
        let batches = Arc::new(batches);
        let committed = core
            .receive(peer, move |txn| {
                let mut received = store::Received {
                    whole: true,
                    ..store::Received::default()
                };
                for batch in batches.iter() {
                    received = received.then(store::receive_batch(txn, &peer, batch, false)?);
                }
                Ok(received)
            })
            .await;
        if committed.is_err() {
            // Not acknowledged: the sender sends it again on its next link.
            return;
        }
    }
}

/// Reads one large message from its own stream.
async fn read_large(core: Arc<Core>, peer: CarrierId, mut recv: RecvStream) {
    let Ok(bytes) = recv.read_to_end(wire::MAX_LARGE_FRAME_BYTES).await else {
        return refuse(None, recv);
    };
    let Ok(large) = wire::decode_large(&bytes) else {
        return refuse(None, recv);
    };
    let large = Arc::new(large);
    // A failed commit is not acknowledged: the sender sends it again.
    let _ = core
        .receive(peer, move |txn| {
            store::receive_large(txn, &peer, &large, false)
        })
        .await;
}

/// The link a writer writes on: which one, and its `MESSAGES` stream.
struct Writing {
    generation: u64,
    stream: SendStream,
    /// Resolves when the friend stops the stream (its node refused it: no messenger there
    /// yet, or a friend not admitted yet) or the link is lost (closed as a duplicate of a
    /// link dialled at the same time, timed out, shut down).
    stopped: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

/// Writes `peer`'s receipts and queued messages on its link whenever there is something to
/// write and a link to write it on.
async fn write_loop(core: Arc<Core>, peer: CarrierId, state: Arc<PeerState>) {
    let mut writing: Option<Writing> = None;
    loop {
        match writing.as_mut() {
            Some(current) => {
                let mut lost = false;
                tokio::select! {
                    () = state.wake.notified() => {}
                    () = &mut current.stopped => lost = true,
                }
                if lost {
                    // What was written on that stream goes again at once, on a new stream of
                    // the link held now, instead of after `resend_after`. A short pause keeps
                    // a node that refuses every stream from being asked in a tight loop.
                    writing = None;
                    lock(&core.outbox).link_down(&peer);
                    tokio::time::sleep(RESTREAM_PAUSE).await;
                }
            }
            None => state.wake.notified().await,
        }
        loop {
            let Some(link) = core.friends.link(&peer) else {
                if writing.take().is_some() {
                    lock(&core.outbox).link_down(&peer);
                }
                if core.config.mailbox {
                    core.deposit(peer, &state).await;
                }
                break;
            };
            let generation = link.connection().stable_id() as u64;
            if writing.as_ref().map(|w| w.generation) != Some(generation) {
                writing = None;
                match link.open_uni(Extension::MSG).await {
                    Ok(mut stream) => {
                        if stream.write_all(&[stream_kind::MESSAGES]).await.is_err() {
                            break;
                        }
                        let stopped = stream.stopped();
                        writing = Some(Writing {
                            generation,
                            stream,
                            stopped: Box::pin(async move {
                                let _ = stopped.await;
                            }),
                        });
                    }
                    Err(_) => break,
                }
            }
            let Some(current) = writing.as_mut() else {
                break;
            };
            for (epoch, id, after, sent_at_ms, offline) in
                lock(&core.outbox).next_large(&peer, generation, unix_ms())
            {
                let large = LargeSend {
                    epoch,
                    id,
                    after,
                    sent_at_ms,
                    offline,
                };
                core.spawn(send_large(core.clone(), peer, link.clone(), large));
            }
            let (buffer, more) = match gather(&core, &peer, &state, generation) {
                Ok(gathered) => gathered,
                Err(_) => break,
            };
            if buffer.is_empty() {
                break;
            }
            if current.stream.write_all(&buffer).await.is_err() {
                writing = None;
                lock(&core.outbox).link_down(&peer);
                break;
            }
            if !more {
                break;
            }
        }
    }
}

/// The receipts and batches to write now, framed, about [`WRITE_BYTES`] at most; whether more
/// waits.
fn gather(
    core: &Core,
    peer: &CarrierId,
    state: &PeerState,
    generation: u64,
) -> Result<(Vec<u8>, bool), MsgError> {
    let mut buffer = Vec::new();
    for receipt in std::mem::take(&mut *lock(&state.receipts)) {
        push_frame(&mut buffer, &Frame::Receipt(receipt));
    }
    while buffer.len() < WRITE_BYTES {
        let planned =
            lock(&core.outbox).next_batch(peer, generation, unix_ms(), BATCH_ITEMS, BATCH_BYTES);
        let Some((epoch, planned)) = planned else {
            return Ok((buffer, false));
        };
        let items = items(&core.store, planned)?;
        push_frame(&mut buffer, &Frame::Batch(Batch { epoch, items }));
    }
    Ok((buffer, true))
}

/// The items `planned` stands for, with the bodies the outbox no longer held read from disk.
/// A message whose body is gone was settled meanwhile (its receipt came) and is left out:
/// the sequence stays gap-free, as everything before it was delivered.
fn items(
    store: &Store,
    planned: Vec<Planned>,
) -> Result<carrier_friend::dht::bounded::BoundedVec<Item, { wire::MAX_BATCH_ITEMS }>, MsgError> {
    let missing: Vec<MessageId> = planned
        .iter()
        .filter_map(|p| match p {
            Planned::Message { id, body: None, .. } => Some(*id),
            _ => None,
        })
        .collect();
    let mut loaded = store::bodies(store, &missing)?.into_iter();
    let mut items = Vec::with_capacity(planned.len());
    for entry in planned {
        match entry {
            Planned::Skip(range) => items.push(Item::Skip(range)),
            Planned::Message {
                seq,
                id,
                sent_at_ms,
                offline,
                body,
            } => {
                let body = match body {
                    Some(body) => Some(body),
                    None => loaded.next().flatten(),
                };
                let Some(body) = body else { continue };
                let Ok(body) = carrier_friend::dht::bounded::BoundedBytes::new(body) else {
                    continue;
                };
                items.push(Item::Message(Small {
                    seq,
                    id,
                    sent_at_ms,
                    offline,
                    body,
                }));
            }
        }
    }
    Ok(carrier_friend::dht::bounded::BoundedVec::truncating(items))
}

fn push_frame(buffer: &mut Vec<u8>, frame: &Frame) {
    let bytes = wire::encode_frame(frame);
    buffer.extend_from_slice(&wire::length_prefix(bytes.len()));
    buffer.extend_from_slice(&bytes);
}

/// A large message to send.
struct LargeSend {
    epoch: u64,
    id: MessageId,
    after: u64,
    sent_at_ms: u64,
    offline: bool,
}

/// Sends one large message on a stream of its own.
async fn send_large(
    core: Arc<Core>,
    peer: CarrierId,
    link: carrier_friend::Link,
    large: LargeSend,
) {
    let body = match store::bodies(&core.store, &[large.id]) {
        Ok(mut bodies) => bodies.pop().flatten(),
        Err(_) => None,
    };
    // Settled meanwhile (its receipt came, or it expired).
    let Some(body) = body else { return };
    let Ok(body) = carrier_friend::dht::bounded::BoundedBytes::new(body) else {
        return;
    };
    let frame = wire::encode_large(&Large {
        epoch: large.epoch,
        id: large.id,
        after: large.after,
        sent_at_ms: large.sent_at_ms,
        offline: large.offline,
        body,
    });
    let sent = async {
        let mut stream = link.open_uni(Extension::MSG).await.ok()?;
        stream.write_all(&[stream_kind::LARGE_MESSAGE]).await.ok()?;
        stream.write_all(&frame).await.ok()?;
        stream.finish().ok()
    }
    .await;
    if sent.is_none() {
        lock(&core.outbox).large_unsent(&peer, &large.id);
    }
}

/// Receipts for one friend merged: per epoch, the widest ranges and every large ID.
fn merge_receipts(receipts: Vec<Receipt>) -> Vec<Receipt> {
    let mut by_epoch: Vec<Receipt> = Vec::new();
    for receipt in receipts {
        let Some(merged) = by_epoch.iter_mut().find(|r| r.epoch == receipt.epoch) else {
            by_epoch.push(receipt);
            continue;
        };
        let mut delivered = merged.delivered.to_vec();
        delivered.extend(receipt.delivered.iter().copied());
        // Receipts of a window are cumulative ranges from 1: the widest covers the others.
        delivered.sort_by_key(|r| std::cmp::Reverse(r.last));
        delivered.dedup_by_key(|r| r.first);
        let mut large = merged.large.to_vec();
        large.extend(receipt.large.iter().copied());
        merged.delivered = carrier_friend::dht::bounded::BoundedVec::truncating(delivered);
        merged.large = carrier_friend::dht::bounded::BoundedVec::truncating(large);
    }
    by_epoch
}

/// Reads the node's own mailbox at start and every `mailbox_poll`.
async fn poll_mailbox(core: Arc<Core>) {
    if !core.config.mailbox {
        return;
    }
    loop {
        core.drain().await;
        tokio::time::sleep(core.config.mailbox_poll).await;
    }
}

/// Follows the friend layer: a friend that connects gets what waits for it (and its
/// mailbox letters are read); a removed one fails it.
async fn follow(core: Arc<Core>, mut events: carrier_friend::FriendEvents) {
    while let Some(event) = events.recv().await {
        match event {
            FriendEvent::Connected(peer) => {
                // A friendship made again (accepted here, which no `Added` reports) shows
                // its new start date by its first link at the latest.
                core.refresh_since();
                core.peer(peer).wake.notify_one();
                if core.config.mailbox {
                    let drainer = core.clone();
                    core.spawn(async move { drainer.drain().await });
                }
            }
            FriendEvent::Removed(peer) => core.removed(peer).await,
            FriendEvent::Disconnected(peer) if !core.friends.is_friend(&peer) => {
                core.removed(peer).await;
            }
            FriendEvent::Added(_) => core.refresh_since(),
            _ => {}
        }
    }
}

/// Fails what waits for friends this node removed, expires messages, and wakes the writers
/// whose receipts are late, at the outbox's deadlines (at least every tick).
async fn timer(core: Arc<Core>) {
    loop {
        // A friend this node removed is reported by no event: its messages fail here.
        let peers = lock(&core.outbox).peers();
        for peer in peers {
            if !core.friends.is_friend(&peer) {
                core.removed(peer).await;
            }
        }
        let next = core.expire().await;
        let peers: Vec<Arc<PeerState>> = lock(&core.peers).values().cloned().collect();
        let now = unix_ms();
        if next.is_some_and(|at| at <= now) {
            for state in peers {
                state.wake.notify_one();
            }
        }
        let wait = next.map_or(core.config.tick, |at| {
            Duration::from_millis(at.saturating_sub(now))
                .clamp(Duration::from_millis(50), core.config.tick)
        });
        tokio::select! {
            () = core.timer.notified() => {}
            () = tokio::time::sleep(wait) => {
                for state in lock(&core.peers).values() {
                    state.wake.notify_one();
                }
            }
        }
    }
}
