//! The friend layer's rules: what taking a request, a control item, a profile or an
//! acknowledgement changes, each committed in one transaction before anything is reported.

use carrier_dht::id::CarrierId;
use carrier_dht::store::DatabaseError;

use super::error::FriendError;
use super::events::{FriendEvent, FriendRequest};
use super::state::{FriendRow, IncomingRow, Tables, OUTBOX};
use super::wire::{self, Body, Change, ControlBody, Presence, ProfileBody};
use super::{unix_ms, Core};
use crate::outbox::{OutboxEntry, OutboxId, Route};

/// The outbox kind of a friend request.
pub(super) const KIND_REQUEST: u8 = 1;
/// The outbox kind of a control item (accept, remove): a newer one to the same peer replaces
/// any older one still waiting.
pub(super) const KIND_CONTROL: u8 = 2;
/// The outbox kind of a profile (user info and presence): a newer one to the same peer
/// replaces any older one still waiting.
pub(super) const KIND_PROFILE: u8 = 3;

/// Queues a control item for `peer`, replacing any older one still waiting.
pub(super) fn queue_control(
    t: &Tables<'_>,
    peer: CarrierId,
    change: Change,
    now_ms: u64,
) -> Result<(), DatabaseError> {
    let seq = t.next_control_seq(now_ms)?;
    let id = OutboxId::random();
    OUTBOX.remove_kinds(t.txn(), &peer, |kind| kind == KIND_CONTROL)?;
    let payload = wire::encode(&Body::Control(ControlBody { id, seq, change }));
    put_item(t, peer, id, KIND_CONTROL, payload, now_ms)
}

/// Queues this node's current user info and presence for `peer`, replacing any older profile
/// still waiting.
pub(super) fn queue_profile(
    t: &Tables<'_>,
    peer: CarrierId,
    now_ms: u64,
) -> Result<(), DatabaseError> {
    let seq = t.next_control_seq(now_ms)?;
    let id = OutboxId::random();
    OUTBOX.remove_kinds(t.txn(), &peer, |kind| kind == KIND_PROFILE)?;
    let payload = wire::encode(&Body::Profile(ProfileBody {
        id,
        seq,
        info: t.info()?,
        presence: t.presence()?,
    }));
    put_item(t, peer, id, KIND_PROFILE, payload, now_ms)
}

pub(super) fn put_item(
    t: &Tables<'_>,
    peer: CarrierId,
    id: OutboxId,
    kind: u8,
    payload: Vec<u8>,
    now_ms: u64,
) -> Result<(), DatabaseError> {
    OUTBOX.put(
        t.txn(),
        &OutboxEntry {
            peer,
            id,
            kind,
            route: Route::Messages,
            payload,
            created_unix_ms: now_ms,
            attempts: 0,
            next_attempt_unix_ms: now_ms,
            deposited_unix_ms: None,
        },
    )
}

/// What taking a request did.
#[derive(Debug)]
pub(super) enum Taken {
    /// A new request: reported.
    New(Box<FriendRequest>),
    /// Taken before.
    Duplicate,
    /// Not taken: [`FriendsConfig::max_incoming_requests`] wait for an answer already. The
    /// requester tries again later (its outbox retries; a letter stays in the mailbox).
    Full,
    /// Dropped on purpose (blocked sender, old nospam, ourselves, malformed).
    Dropped,
    /// From a friend: answered with a fresh accept.
    ReAccepted,
}

impl Core {
    /// Takes one control-stream or letter `frame` from `from`: a control item, a profile or
    /// acknowledgements (a request has its own way in, [`take_request`](Self::take_request)).
    /// Returns whether it was taken (else its sender should send it again), and the ID to
    /// acknowledge through the sender's mailbox, if the item has one. A frame with nothing to
    /// take (malformed, or a request on the wrong way) counts as taken, so its sender stops.
    pub(super) async fn take_frame(
        &self,
        from: CarrierId,
        frame: &[u8],
    ) -> (bool, Option<OutboxId>) {
        match wire::decode(frame) {
            Ok(Body::Control(control)) => {
                let id = control.id;
                let taken = self.take_control(from, control).await.is_ok();
                (taken, taken.then_some(id))
            }
            Ok(Body::Profile(profile)) => {
                let id = profile.id;
                let taken = matches!(self.take_profile(from, profile).await, Ok(true));
                (taken, taken.then_some(id))
            }
            Ok(Body::Ack(ids)) => (self.take_acks(from, ids.into_vec()).await.is_ok(), None),
            Ok(Body::Request(_)) | Err(_) => (true, None),
        }
    }

    /// Takes a request `frame` from `from` (once per request ID).
    pub(super) async fn take_request(
        &self,
        from: CarrierId,
        frame: &[u8],
    ) -> Result<Taken, FriendError> {
        let Ok(Body::Request(body)) = wire::decode(frame) else {
            return Ok(Taken::Dropped);
        };
        if from == self.id {
            return Ok(Taken::Dropped);
        }
        let now_ms = unix_ms();
        let max_incoming = self.config.max_incoming_requests;
        let taken = self
            .change(move |t| {
                // Refusals come before anything is written: a stranger who knows only the
                // node's ID (the nospam is in its address alone) makes it store nothing.
                if t.is_blocked(&from)? || body.nospam != t.nospam()? {
                    return Ok(Taken::Dropped);
                }
                let friend = t.friend(&from)?.is_some();
                if !friend && t.incoming(&from)?.is_none() && t.incoming_count()? >= max_incoming {
                    return Ok(Taken::Full);
                }
                if t.seen(&from, &body.id, now_ms / 1000)? {
                    return Ok(Taken::Duplicate);
                }
                // Sent before a change already applied from the requester (a remove that
                // overtook it): the requester's later decision stands.
                if !t.advance_peer_seq(&from, body.seq)? {
                    return Ok(Taken::Dropped);
                }
                if friend {
                    queue_control(t, from, Change::Accept(t.info()?), now_ms)?;
                    return Ok(Taken::ReAccepted);
                }
                let row = IncomingRow {
                    request: body.id,
                    info: body.info.clone(),
                    hello: body.hello.to_vec(),
                    received_unix_secs: now_ms / 1000,
                };
                t.put_incoming(&from, &row)?;
                Ok(Taken::New(Box::new(FriendRequest {
                    from,
                    info: row.info,
                    hello: row.hello,
                    received_unix_secs: row.received_unix_secs,
                })))
            })
            .await?;
        match &taken {
            Taken::New(request) => self.emit(FriendEvent::Request((**request).clone())),
            Taken::ReAccepted => self.wake.notify_one(),
            Taken::Duplicate | Taken::Dropped | Taken::Full => {}
        }
        Ok(taken)
    }

    /// Takes a control item from `from` (once per item ID, and never one older than the
    /// newest applied from `from`).
    pub(super) async fn take_control(
        &self,
        from: CarrierId,
        body: ControlBody,
    ) -> Result<(), FriendError> {
        let now_ms = unix_ms();
        let event = self
            .change(move |t| {
                if t.seen(&from, &body.id, now_ms / 1000)?
                    || !t.advance_peer_seq(&from, body.seq)?
                {
                    return Ok(None);
                }
                match &body.change {
                    Change::Accept(info) => {
                        let asked = t.remove_outgoing(&from)?;
                        OUTBOX.remove_kinds(t.txn(), &from, |kind| kind == KIND_REQUEST)?;
                        if let Some(mut row) = t.friend(&from)? {
                            if body.seq > row.profile_seq {
                                row.info = info.clone();
                                row.profile_seq = body.seq;
                                t.put_friend(&from, &row)?;
                            }
                            return Ok(None);
                        }
                        if !asked || t.is_blocked(&from)? {
                            return Ok(None);
                        }
                        // Both asked: the peer's own request is answered by the friendship.
                        t.remove_incoming(&from)?;
                        t.put_friend(
                            &from,
                            &FriendRow {
                                label: String::new(),
                                info: info.clone(),
                                since_unix_secs: now_ms / 1000,
                                presence: Presence::None,
                                profile_seq: body.seq,
                            },
                        )?;
                        // The new friend knows this node's info from the request, which may
                        // be older, and not its presence.
                        queue_profile(t, from, now_ms)?;
                        Ok(Some(FriendEvent::Added(from)))
                    }
                    Change::Remove => {
                        if !t.remove_friend(&from)? {
                            return Ok(None);
                        }
                        // An accept still waiting for the remover (an answer to its request
                        // asking again) would make the friendship again: it goes, and so do
                        // profiles for it.
                        OUTBOX.remove_kinds(t.txn(), &from, |kind| {
                            kind == KIND_CONTROL || kind == KIND_PROFILE
                        })?;
                        Ok(Some(FriendEvent::Removed(from)))
                    }
                }
            })
            .await?;
        if let Some(event) = event {
            self.emit(event);
            self.wake.notify_one();
            self.refresh_online(from);
        }
        Ok(())
    }

    /// Takes a profile (user info and presence) from friend `from`: applied if it is newer
    /// than the newest profile or accept applied from `from`; each change is reported.
    /// Returns whether it was taken: a profile from a peer that is not a friend (yet) is not,
    /// so its sender tries again (its accept may still be on the way; a remove on the way
    /// drops the profile from the sender's outbox).
    pub(super) async fn take_profile(
        &self,
        from: CarrierId,
        body: ProfileBody,
    ) -> Result<bool, FriendError> {
        let now_ms = unix_ms();
        let (taken, events) = self
            .change(move |t| {
                let mut events = Vec::new();
                let Some(mut row) = t.friend(&from)? else {
                    return Ok((false, events));
                };
                if t.seen(&from, &body.id, now_ms / 1000)? {
                    return Ok((true, events));
                }
                if body.seq <= row.profile_seq {
                    return Ok((true, events));
                }
                if row.info != body.info {
                    events.push(FriendEvent::InfoChanged(from, body.info.clone()));
                }
                if row.presence != body.presence {
                    events.push(FriendEvent::PresenceChanged(from, body.presence));
                }
                row.info = body.info.clone();
                row.presence = body.presence;
                row.profile_seq = body.seq;
                t.put_friend(&from, &row)?;
                Ok((true, events))
            })
            .await?;
        for event in events {
            self.emit(event);
        }
        Ok(taken)
    }

    /// Drops the outbox items for `from` that `from` acknowledged.
    pub(super) async fn take_acks(
        &self,
        from: CarrierId,
        ids: Vec<OutboxId>,
    ) -> Result<(), FriendError> {
        self.store
            .write(move |txn| {
                for id in &ids {
                    OUTBOX.remove(txn, &from, id)?;
                }
                Ok(())
            })
            .await?;
        Ok(())
    }
}
