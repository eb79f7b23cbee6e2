//! The sender's rules, without I/O: which queued messages go on a friend's link and when,
//! what a receipt settles, what expires. Time comes in as `now` (Unix ms), so tests run it
//! in virtual time.
//!
//! Per friend, small messages sit in sequence order; a link's writer takes them in order,
//! from the first one not yet sent on the current link, and never past a sequence the
//! outbox has not seen committed yet (concurrent sends commit in any order; the friend takes
//! a gap-free sequence only). Everything still unacknowledged is sent again when the link
//! changes, or when nothing was acknowledged for `resend_after` since it was sent. A
//! message that expires turns into a skip of its sequence, which travels and is
//! acknowledged like a message, so the friend moves past it. Large messages are tracked by
//! ID, each sent on its own stream.
//!
//! Expiry is indexed by time ([`BTreeSet`] of `(expires_at, peer, slot)`), and each friend's
//! queue by sequence, so neither a burst nor a retry rescans the queue, and a retry writes
//! nothing to disk.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use carrier_friend::dht::id::CarrierId;
use carrier_friend::dht::mailbox::day_of;

use crate::wire::SeqRange;
use crate::MessageId;

/// A message waiting for its receipt, as the outbox tracks it (its body lives on disk; a
/// fresh one's body is kept here until its first send).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Queued {
    pub(crate) id: MessageId,
    pub(crate) sent_at_ms: u64,
    pub(crate) offline: bool,
    pub(crate) expires_at_ms: u64,
    /// Expired: only its sequence travels, as a skip.
    pub(crate) skip: bool,
    /// The body, until the first send takes it.
    pub(crate) body: Option<Vec<u8>>,
    /// The body's length.
    pub(crate) len: usize,
}

/// A large message waiting for its receipt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct QueuedLarge {
    pub(crate) after: u64,
    pub(crate) sent_at_ms: u64,
    pub(crate) offline: bool,
    pub(crate) expires_at_ms: u64,
    /// The link generation and time it was last sent on.
    sent: Option<(u64, u64)>,
}

/// A large message to queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NewLarge {
    pub(crate) id: MessageId,
    pub(crate) after: u64,
    pub(crate) sent_at_ms: u64,
    pub(crate) offline: bool,
    pub(crate) expires_at_ms: u64,
}

/// One entry of a batch to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Planned {
    /// The message with this sequence (its body, if the outbox still held it).
    Message {
        seq: u64,
        id: MessageId,
        sent_at_ms: u64,
        offline: bool,
        body: Option<Vec<u8>>,
    },
    /// Sequences to skip.
    Skip(SeqRange),
}

/// Where a message sits in its friend's queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Slot {
    Small(u64),
    Large(MessageId),
}

/// What to deposit in a friend's mailbox now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Deposit {
    /// A letter of these entries of `epoch` (bodies that are not in memory are `None`);
    /// those from sequence `new_from` on are deposited for the first time.
    Letter {
        epoch: u64,
        planned: Vec<Planned>,
        new_from: u64,
    },
    /// The next message does not fit a letter: it waits for the friend's link (reported
    /// once, when `first` is true).
    TooLarge { id: MessageId, first: bool },
}

/// The mailbox's terms: how much a letter holds, when a deposit is made again, how long to
/// wait after a refused one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MailboxTerms {
    pub(crate) letter_bytes: usize,
    pub(crate) republish_ms: u64,
    pub(crate) retry_ms: u64,
    pub(crate) max_retry_ms: u64,
}

/// What each message costs in a letter beside its body, at most (sequence, ID, time, flag,
/// length prefix and tag: varints and a fixed ID).
pub(crate) const ITEM_OVERHEAD_BYTES: usize = 10 + 16 + 10 + 1 + 5 + 1;
/// What a letter costs beside its items, at most (tag, version, frame tag, epoch, count).
pub(crate) const LETTER_OVERHEAD_BYTES: usize = 1 + 1 + 1 + 10 + 5;

/// A message the outbox let go of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Settled {
    pub(crate) peer: CarrierId,
    pub(crate) id: MessageId,
    /// It was a skip (expired before): its `Failed` was reported already.
    pub(crate) skip: bool,
}

#[derive(Default)]
struct Peer {
    epoch: u64,
    small: BTreeMap<u64, Queued>,
    large: HashMap<MessageId, QueuedLarge>,
    /// The link generation being written to, and the last sequence written to it.
    link: Option<u64>,
    cursor: u64,
    /// When a send or a receipt last happened (Unix ms): no receipt for `resend_after` after
    /// it sends everything again.
    progress_ms: u64,
    /// The last sequence deposited in the friend's mailbox, and when.
    deposited_through: u64,
    deposited_at_ms: u64,
    /// No deposit before this (Unix ms), after a refused one; and how many failed in a row.
    deposit_retry_at_ms: u64,
    deposit_failures: u32,
    /// The last sequence a refused deposit was reported for (`Waiting`), so each is reported
    /// once.
    refusal_reported_through: u64,
}

impl Peer {
    /// The last sequence that may be sent: the end of the run of consecutive sequences from
    /// the first queued one.
    fn contiguous_end(&self, from: u64) -> u64 {
        let mut end = from;
        for (&seq, _) in self.small.range(from..) {
            if seq != end && seq != end + 1 {
                break;
            }
            end = seq;
        }
        end
    }
}

/// The outbox's rules for every friend.
pub(crate) struct Outbox {
    peers: HashMap<CarrierId, Peer>,
    /// Per friend, the epoch and the sequence through which every message has left the
    /// outbox (acknowledged, or below what a restart loaded). Kept when a friend's queue
    /// empties: a send commits its sequence before it queues it here, so concurrent sends
    /// queue out of order, and a sequence above `through + 1` with nothing queued below it
    /// waits until that lower one is queued (sending it first would open a gap the friend
    /// does not take).
    floors: HashMap<CarrierId, (u64, u64)>,
    expiries: BTreeSet<(u64, CarrierId, Slot)>,
    resend_after_ms: u64,
}

impl Outbox {
    pub(crate) fn new(resend_after_ms: u64) -> Self {
        Self {
            peers: HashMap::new(),
            floors: HashMap::new(),
            expiries: BTreeSet::new(),
            resend_after_ms,
        }
    }

    /// Friends with messages queued.
    pub(crate) fn peers(&self) -> Vec<CarrierId> {
        self.peers.keys().copied().collect()
    }

    /// Messages queued for `peer` (small and large).
    pub(crate) fn len(&self, peer: &CarrierId) -> usize {
        self.peers
            .get(peer)
            .map_or(0, |p| p.small.len() + p.large.len())
    }

    fn peer(&mut self, peer: CarrierId, epoch: u64) -> &mut Peer {
        let entry = self.peers.entry(peer).or_default();
        if entry.epoch != epoch {
            // A new epoch (the friendship was made again): nothing of the old one is left.
            *entry = Peer {
                epoch,
                ..Peer::default()
            };
        }
        entry
    }

    /// Adds a small message whose commit gave it `seq` in `epoch`.
    pub(crate) fn queue(&mut self, peer: CarrierId, epoch: u64, seq: u64, queued: Queued) {
        if !queued.skip {
            self.expiries
                .insert((queued.expires_at_ms, peer, Slot::Small(seq)));
        }
        self.peer(peer, epoch).small.insert(seq, queued);
    }

    /// Adds a large message.
    pub(crate) fn queue_large(&mut self, peer: CarrierId, epoch: u64, large: NewLarge) {
        self.expiries
            .insert((large.expires_at_ms, peer, Slot::Large(large.id)));
        self.peer(peer, epoch).large.insert(
            large.id,
            QueuedLarge {
                after: large.after,
                sent_at_ms: large.sent_at_ms,
                offline: large.offline,
                expires_at_ms: large.expires_at_ms,
                sent: None,
            },
        );
    }

    /// The sequence of `peer` in `epoch` through which every message has left the outbox.
    fn floor(&self, peer: &CarrierId, epoch: u64) -> u64 {
        match self.floors.get(peer) {
            Some(&(floor_epoch, through)) if floor_epoch == epoch => through,
            _ => 0,
        }
    }

    /// After a restart has queued what it loaded: every sequence below the first loaded one
    /// has left the outbox, and with nothing loaded for a friend, every sequence it committed
    /// (`committed` lists each friend's epoch and next sequence from its row; nothing is
    /// being committed yet). Without this a friend whose queue was empty at the restart
    /// would wait forever for a sequence below the next send's, which no receipt raises.
    pub(crate) fn loaded(&mut self, committed: impl IntoIterator<Item = (CarrierId, u64, u64)>) {
        for (peer, epoch, next_seq) in committed {
            let first = self
                .peers
                .get(&peer)
                .filter(|state| state.epoch == epoch)
                .and_then(|state| state.small.keys().next().copied());
            let through = first.unwrap_or(next_seq).saturating_sub(1);
            let floor = self.floors.entry(peer).or_insert((epoch, 0));
            if floor.0 != epoch || floor.1 < through {
                *floor = (epoch, through);
            }
        }
    }

    /// The epoch of `peer`'s queue, if anything is queued.
    #[cfg(test)]
    pub(crate) fn epoch(&self, peer: &CarrierId) -> Option<u64> {
        self.peers.get(peer).map(|p| p.epoch)
    }

    /// Up to `max_items` entries (bodies of about `max_bytes` at most, but at least one) to
    /// write on link `generation` of `peer` now: in sequence order, from the first not yet
    /// written on this link. Starts over on a new link, or when nothing was acknowledged for
    /// `resend_after` since the last send.
    pub(crate) fn next_batch(
        &mut self,
        peer: &CarrierId,
        generation: u64,
        now_ms: u64,
        max_items: usize,
        max_bytes: usize,
    ) -> Option<(u64, Vec<Planned>)> {
        let resend_after = self.resend_after_ms;
        let epoch = self.peers.get(peer)?.epoch;
        let floor = self.floor(peer, epoch);
        let state = self.peers.get_mut(peer)?;
        let first = *state.small.keys().next()?;
        if first > floor + 1 {
            // A lower sequence is committed but not queued yet: it goes first.
            return None;
        }
        let stale = now_ms >= state.progress_ms.saturating_add(resend_after);
        if state.link != Some(generation) || (stale && state.cursor >= first) {
            state.link = Some(generation);
            state.cursor = first - 1;
        }
        let from = (state.cursor + 1).max(first);
        let end = state.contiguous_end(from);
        if from > end || !state.small.contains_key(&from) {
            return None;
        }
        if state.cursor < first {
            // Nothing was in flight: the wait for a receipt starts now.
            state.progress_ms = now_ms;
        }
        let mut planned: Vec<Planned> = Vec::new();
        let mut bytes = 0usize;
        for (&seq, queued) in state.small.range_mut(from..=end) {
            if planned.len() >= max_items || (bytes >= max_bytes && !planned.is_empty()) {
                break;
            }
            if queued.skip {
                match planned.last_mut() {
                    Some(Planned::Skip(range)) if range.last + 1 == seq => range.last = seq,
                    _ => planned.push(Planned::Skip(SeqRange {
                        first: seq,
                        last: seq,
                    })),
                }
            } else {
                let body = queued.body.take();
                bytes += body.as_ref().map_or(0, Vec::len);
                planned.push(Planned::Message {
                    seq,
                    id: queued.id,
                    sent_at_ms: queued.sent_at_ms,
                    offline: queued.offline,
                    body,
                });
            }
            state.cursor = seq;
        }
        Some((state.epoch, planned))
    }

    /// Large messages of `peer` to send on link `generation` now: never sent on it, or sent
    /// `resend_after` ago without a receipt. Returns (epoch, id, after, sent_at, offline).
    pub(crate) fn next_large(
        &mut self,
        peer: &CarrierId,
        generation: u64,
        now_ms: u64,
    ) -> Vec<(u64, MessageId, u64, u64, bool)> {
        let resend_after = self.resend_after_ms;
        let Some(state) = self.peers.get_mut(peer) else {
            return Vec::new();
        };
        let epoch = state.epoch;
        let mut out = Vec::new();
        for (id, large) in &mut state.large {
            let due = match large.sent {
                None => true,
                Some((link, at)) => link != generation || now_ms >= at.saturating_add(resend_after),
            };
            if due {
                large.sent = Some((generation, now_ms));
                out.push((epoch, *id, large.after, large.sent_at_ms, large.offline));
            }
        }
        out
    }

    /// A large message's send failed: it is due again at once.
    pub(crate) fn large_unsent(&mut self, peer: &CarrierId, id: &MessageId) {
        if let Some(large) = self.peers.get_mut(peer).and_then(|p| p.large.get_mut(id)) {
            large.sent = None;
        }
    }

    /// What to deposit in `peer`'s mailbox now, by `terms`: the queued messages from the
    /// first not deposited yet (from the first queued, when the last deposit is of an earlier
    /// day or older than `republish`), in sequence order, as many as fit one letter.
    pub(crate) fn next_deposit(
        &mut self,
        peer: &CarrierId,
        now_ms: u64,
        terms: &MailboxTerms,
    ) -> Option<Deposit> {
        let epoch = self.peers.get(peer)?.epoch;
        let floor = self.floor(peer, epoch);
        let state = self.peers.get_mut(peer)?;
        let first = *state.small.keys().next()?;
        if first > floor + 1 || now_ms < state.deposit_retry_at_ms {
            return None;
        }
        let stale = day_of(state.deposited_at_ms / 1000) < day_of(now_ms / 1000)
            || now_ms >= state.deposited_at_ms.saturating_add(terms.republish_ms);
        let from = if stale {
            first
        } else {
            (state.deposited_through + 1).max(first)
        };
        let end = state.contiguous_end(from);
        if from > end || !state.small.contains_key(&from) {
            return None;
        }
        let mut planned: Vec<Planned> = Vec::new();
        let mut bytes = LETTER_OVERHEAD_BYTES;
        for (&seq, queued) in state.small.range(from..=end) {
            let cost = ITEM_OVERHEAD_BYTES + if queued.skip { 0 } else { queued.len };
            if bytes + cost > terms.letter_bytes {
                if planned.is_empty() {
                    let first = state.refusal_reported_through < seq;
                    state.refusal_reported_through = state.refusal_reported_through.max(seq);
                    return Some(Deposit::TooLarge {
                        id: queued.id,
                        first,
                    });
                }
                break;
            }
            bytes += cost;
            if queued.skip {
                match planned.last_mut() {
                    Some(Planned::Skip(range)) if range.last + 1 == seq => range.last = seq,
                    _ => planned.push(Planned::Skip(SeqRange {
                        first: seq,
                        last: seq,
                    })),
                }
            } else {
                planned.push(Planned::Message {
                    seq,
                    id: queued.id,
                    sent_at_ms: queued.sent_at_ms,
                    offline: queued.offline,
                    body: queued.body.clone(),
                });
            }
        }
        Some(Deposit::Letter {
            epoch: state.epoch,
            planned,
            new_from: state.deposited_through + 1,
        })
    }

    /// What was deposited for `peer` before a restart (kept in its `msg/peers` row).
    pub(crate) fn restore_deposit(&mut self, peer: &CarrierId, through: u64, at_ms: u64) {
        if let Some(state) = self.peers.get_mut(peer) {
            state.deposited_through = through;
            state.deposited_at_ms = at_ms;
        }
    }

    /// A letter of `peer`'s messages through `through` was stored at `now_ms`.
    pub(crate) fn deposited(&mut self, peer: &CarrierId, through: u64, now_ms: u64) {
        if let Some(state) = self.peers.get_mut(peer) {
            state.deposited_through = state.deposited_through.max(through);
            state.deposited_at_ms = now_ms;
            state.deposit_failures = 0;
        }
    }

    /// A deposit for `peer` was refused at `now_ms`: the next waits, longer each time in a
    /// row. Returns the sequences from which the refusal is news (`Waiting` to report) if
    /// the letter ended at `through`.
    pub(crate) fn deposit_refused(
        &mut self,
        peer: &CarrierId,
        through: u64,
        now_ms: u64,
        terms: &MailboxTerms,
    ) -> u64 {
        let Some(state) = self.peers.get_mut(peer) else {
            return u64::MAX;
        };
        state.deposit_failures = state.deposit_failures.saturating_add(1);
        let doublings = state.deposit_failures.saturating_sub(1).min(20);
        let wait = terms
            .retry_ms
            .saturating_mul(1u64 << doublings)
            .min(terms.max_retry_ms);
        state.deposit_retry_at_ms = now_ms.saturating_add(wait);
        let news_from = state.refusal_reported_through + 1;
        state.refusal_reported_through = state.refusal_reported_through.max(through);
        news_from
    }

    /// The link to `peer` went away: what was written on it goes again on the next.
    pub(crate) fn link_down(&mut self, peer: &CarrierId) {
        if let Some(state) = self.peers.get_mut(peer) {
            state.link = None;
            for large in state.large.values_mut() {
                large.sent = None;
            }
        }
    }

    /// `peer` acknowledged `delivered` sequences and `large` IDs of `epoch`: what left the
    /// outbox.
    pub(crate) fn receipt(
        &mut self,
        peer: &CarrierId,
        epoch: u64,
        delivered: &[SeqRange],
        large: &[MessageId],
        now_ms: u64,
    ) -> Vec<Settled> {
        let Some(state) = self.peers.get_mut(peer) else {
            return Vec::new();
        };
        if state.epoch != epoch {
            return Vec::new();
        }
        let mut settled = Vec::new();
        let floor = self.floors.entry(*peer).or_insert((epoch, 0));
        if floor.0 != epoch {
            *floor = (epoch, 0);
        }
        for range in delivered {
            if range.first > range.last {
                continue;
            }
            // Receipts are cumulative: what they cover has left the outbox for good.
            if range.first <= floor.1 + 1 {
                floor.1 = floor.1.max(range.last);
            }
            let seqs: Vec<u64> = state
                .small
                .range(range.first..=range.last)
                .map(|(&seq, _)| seq)
                .collect();
            for seq in seqs {
                if let Some(queued) = state.small.remove(&seq) {
                    self.expiries
                        .remove(&(queued.expires_at_ms, *peer, Slot::Small(seq)));
                    settled.push(Settled {
                        peer: *peer,
                        id: queued.id,
                        skip: queued.skip,
                    });
                }
            }
        }
        for id in large {
            if let Some(queued) = state.large.remove(id) {
                self.expiries
                    .remove(&(queued.expires_at_ms, *peer, Slot::Large(*id)));
                settled.push(Settled {
                    peer: *peer,
                    id: *id,
                    skip: false,
                });
            }
        }
        if !settled.is_empty() {
            state.progress_ms = now_ms;
        }
        self.forget_if_empty(peer);
        settled
    }

    /// Messages that expired by `now`: small ones become skips (still queued), large ones
    /// leave. Each is reported once.
    pub(crate) fn expire(&mut self, now_ms: u64) -> Vec<Settled> {
        let mut out = Vec::new();
        while let Some(&(at, peer, slot)) = self.expiries.first() {
            if at > now_ms {
                break;
            }
            self.expiries.pop_first();
            let Some(state) = self.peers.get_mut(&peer) else {
                continue;
            };
            match slot {
                Slot::Large(id) => {
                    if state.large.remove(&id).is_some() {
                        out.push(Settled {
                            peer,
                            id,
                            skip: false,
                        });
                    }
                }
                Slot::Small(seq) => {
                    if let Some(queued) = state.small.get_mut(&seq) {
                        queued.skip = true;
                        queued.body = None;
                        out.push(Settled {
                            peer,
                            id: queued.id,
                            skip: true,
                        });
                    }
                }
            }
            self.forget_if_empty(&peer);
        }
        out
    }

    /// Everything queued for `peer` (a removed friend): gone from the outbox.
    pub(crate) fn remove_peer(&mut self, peer: &CarrierId) -> Vec<Settled> {
        self.floors.remove(peer);
        let Some(state) = self.peers.remove(peer) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (seq, queued) in state.small {
            self.expiries
                .remove(&(queued.expires_at_ms, *peer, Slot::Small(seq)));
            out.push(Settled {
                peer: *peer,
                id: queued.id,
                skip: queued.skip,
            });
        }
        for (id, large) in state.large {
            self.expiries
                .remove(&(large.expires_at_ms, *peer, Slot::Large(id)));
            out.push(Settled {
                peer: *peer,
                id,
                skip: false,
            });
        }
        out
    }

    /// When the outbox next needs a look without any input: the first expiry, or a resend for
    /// a friend with messages written and not acknowledged.
    pub(crate) fn poll_timeout(&self) -> Option<u64> {
        let expiry = self.expiries.first().map(|&(at, ..)| at);
        let resend = self
            .peers
            .values()
            .filter_map(|p| {
                let first = p.small.keys().next().copied();
                let small = (p.link.is_some() && first.is_some_and(|f| p.cursor >= f))
                    .then_some(p.progress_ms);
                let large = p
                    .large
                    .values()
                    .filter_map(|l| l.sent.map(|(_, at)| at))
                    .min();
                match (small, large) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            })
            .map(|at| at.saturating_add(self.resend_after_ms))
            .min();
        match (expiry, resend) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn forget_if_empty(&mut self, peer: &CarrierId) {
        // The epoch is kept on disk; an empty queue in memory holds nothing worth keeping.
        if self
            .peers
            .get(peer)
            .is_some_and(|p| p.small.is_empty() && p.large.is_empty())
        {
            self.peers.remove(peer);
        }
    }
}

#[cfg(test)]
mod tests;
