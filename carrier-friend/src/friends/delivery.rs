//! Delivering the outbox: directly over a link or `carrier-request/1`, else into the peer's
//! mailbox; and serving the friend layer's own streams on every link.

use std::sync::Arc;
use std::time::Duration;

use carrier_dht::id::CarrierId;
use carrier_dht::Path;

use super::rules::KIND_REQUEST;
use super::signal::{Signal, MAX_SIGNAL_FRAME_BYTES};
use super::state::{self, OUTBOX};
use super::wire::{ANSWER_TAKEN, MAX_CONTROL_FRAME_BYTES};
use super::{lock, millis, read, unix_ms, Core};
use crate::link::close;
use crate::link::extension::{Extension, ExtensionInbox, Inbound};
use crate::link::{encode_request, send_request_frame, Alpn, Link, REQUEST_TIMEOUT};
use crate::outbox::OutboxEntry;

/// Addresses of a peer record tried per attempt.
pub(super) const ADDRESSES_PER_ATTEMPT: usize = 3;

/// How long opening a session at one of a peer's relays may take.
pub(super) const RELAY_OPEN_TIMEOUT: Duration = Duration::from_secs(2);

impl Core {
    /// The paths to try for `peer`, found within `dial_timeout`: the first direct addresses
    /// of its peer record, then a session opened at each relay the record lists (all at
    /// once, each within [`RELAY_OPEN_TIMEOUT`]; a relay that refuses or is silent is left
    /// out). None if there is no record, or it is not `peer`'s, or it expired. Where every
    /// direct attempt (a dial, a delivery) starts.
    pub(super) async fn find_paths(&self, peer: CarrierId) -> Vec<Path> {
        let found = tokio::time::timeout(self.config.dial_timeout, self.dht.find_peer(&peer));
        let Ok(Ok(Some(record))) = found.await else {
            return Vec::new();
        };
        if record.id != peer || record.expires_unix_secs < unix_ms() / 1000 {
            return Vec::new();
        }
        let mut paths: Vec<Path> = record
            .addrs
            .iter()
            .take(ADDRESSES_PER_ATTEMPT)
            .map(|addr| Path::Direct(*addr))
            .collect();
        let mut opening = tokio::task::JoinSet::new();
        for hint in record.relays.iter() {
            let dht = self.dht.clone();
            let relay = hint.addr;
            opening.spawn(async move {
                let open = dht.open_relay_session(relay, &peer);
                tokio::time::timeout(RELAY_OPEN_TIMEOUT, open).await
            });
        }
        while let Some(opened) = opening.join_next().await {
            if let Ok(Ok(Ok(path))) = opened {
                paths.push(path);
            }
        }
        paths
    }

    /// Tries to hand `entry` to its peer directly; whether the peer took it.
    pub(super) async fn deliver_direct(self: &Arc<Self>, entry: &OutboxEntry) -> bool {
        if entry.kind != KIND_REQUEST {
            let held = lock(&self.machine).link(&entry.peer);
            if let Some(link) = held {
                if self.send_on_link(&link, &entry.payload).await {
                    if !read(&self.state).friends.contains_key(&entry.peer) {
                        // The remove is delivered: the link has no more use.
                        link.close(close::DONE, b"");
                    }
                    return true;
                }
            }
        }
        for path in self.find_paths(entry.peer).await {
            let taken = match entry.kind {
                KIND_REQUEST => self.send_request(entry.peer, path, &entry.payload).await,
                _ => self.send_control(entry.peer, path, &entry.payload).await,
            };
            if taken {
                return true;
            }
        }
        false
    }

    /// Sends one request frame on `carrier-request/1`; whether the peer took it. The dial
    /// has `dial_timeout`, the answer [`REQUEST_TIMEOUT`] and a second more.
    pub(super) async fn send_request(&self, peer: CarrierId, path: Path, frame: &[u8]) -> bool {
        let Some(bytes) = encode_request(frame) else {
            return false;
        };
        let dialling = self.endpoint.connect(peer, path, Alpn::Request);
        let Ok(Ok(connection)) = tokio::time::timeout(self.config.dial_timeout, dialling).await
        else {
            return false;
        };
        let answer = REQUEST_TIMEOUT + Duration::from_secs(1);
        let sent = tokio::time::timeout(answer, send_request_frame(&connection, &bytes)).await;
        matches!(sent, Ok(Ok(())))
    }

    /// Dials `peer` at `path` and sends one control frame on the new link (which is then held
    /// like any link, and closed at once if `peer` is not a friend); whether the peer took it.
    /// The dial has `dial_timeout`, the answer [`REQUEST_TIMEOUT`] and a second more.
    pub(super) async fn send_control(
        self: &Arc<Self>,
        peer: CarrierId,
        path: Path,
        frame: &[u8],
    ) -> bool {
        let dialling = self.endpoint.dial(peer, path);
        let dialled = tokio::time::timeout(self.config.dial_timeout, dialling);
        // A link that comes up meanwhile (the peer dialled us) carries the frame instead: a
        // second link would only race it (see `find_and_dial`). A relayed one carries it if
        // the dial, kept to direct paths, fails.
        let link = match self.unless_held(peer, dialled).await {
            Ok(Ok(Ok(link))) => {
                self.adopt(link.clone(), true);
                link
            }
            Ok(_) => match lock(&self.machine).link(&peer) {
                Some(held) => held,
                None => return false,
            },
            Err(held) => held,
        };
        let taken = self.send_on_link(&link, frame).await;
        if !read(&self.state).friends.contains_key(&peer) {
            link.close(close::DONE, b"");
        }
        taken
    }

    /// Sends one control frame on a friend-layer stream of `link` (`Extension::FRIEND ‖ u16 length
    /// ‖ frame`, then the end of the stream); whether the peer answered that it took it, within
    /// [`REQUEST_TIMEOUT`] and a second more.
    pub(super) async fn send_on_link(&self, link: &Link, frame: &[u8]) -> bool {
        let Ok(length) = u16::try_from(frame.len()) else {
            return false;
        };
        let sending = async {
            let (mut send, mut recv) = link.open_bi(Extension::FRIEND).await.ok()?;
            let mut bytes = Vec::with_capacity(2 + frame.len());
            bytes.extend_from_slice(&length.to_be_bytes());
            bytes.extend_from_slice(frame);
            send.write_all(&bytes).await.ok()?;
            send.finish().ok()?;
            let answer = recv.read_to_end(8).await.ok()?;
            Some(answer == [ANSWER_TAKEN])
        };
        let answer = REQUEST_TIMEOUT + Duration::from_secs(1);
        matches!(tokio::time::timeout(answer, sending).await, Ok(Some(true)))
    }

    /// One delivery attempt of `entry`: directly, else (when due) into the mailbox; the
    /// outcome is committed before the next attempt is scheduled.
    pub(super) async fn attempt(self: &Arc<Self>, entry: OutboxEntry) {
        let (peer, id) = (entry.peer, entry.id);
        let written = if self.deliver_direct(&entry).await {
            self.store
                .write(move |txn| OUTBOX.remove(txn, &peer, &id).map(drop))
                .await
        } else {
            let now = unix_ms();
            let deposited =
                self.config.retry.needs_deposit(&entry, now) && self.deposit(&entry).await;
            let policy = self.config.retry;
            self.store
                .write(move |txn| OUTBOX.record_attempt(txn, &peer, &id, now, deposited, &policy))
                .await
        };
        // A failed write leaves the entry as it was: it is tried again.
        let _ = written;
        lock(&self.scheduler).finished(&peer, &id);
        self.wake.notify_one();
    }

    /// Serves one friend-layer stream from `peer`: one control frame in, a one-byte answer
    /// out (whether it was taken).
    pub(super) async fn serve_stream(
        self: Arc<Self>,
        peer: CarrierId,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
    ) {
        let reading = async {
            let mut head = [0u8; 2];
            recv.read_exact(&mut head).await.ok()?;
            let length = usize::from(u16::from_be_bytes(head));
            if length > MAX_CONTROL_FRAME_BYTES {
                return None;
            }
            let mut frame = vec![0u8; length];
            recv.read_exact(&mut frame).await.ok()?;
            // One frame, then the end of the stream.
            let mut after = [0u8; 1];
            match recv.read(&mut after).await {
                Ok(None) => Some(frame),
                _ => None,
            }
        };
        let Ok(Some(frame)) = tokio::time::timeout(REQUEST_TIMEOUT, reading).await else {
            let _ = send.reset(close::REQUEST_MALFORMED);
            return;
        };
        let (taken, _) = self.take_frame(peer, &frame).await;
        let answer = if taken { ANSWER_TAKEN } else { 0 };
        if send.write_all(&[answer]).await.is_ok() {
            let _ = send.finish();
            // Wait until the peer has the answer (or is gone), so dropping the stream does not
            // cut it off.
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, send.stopped()).await;
        }
    }
}

pub(super) async fn outbox_loop(core: Arc<Core>) {
    loop {
        let now = unix_ms();
        let latest = now.saturating_add(millis(core.config.retry.max));
        let mut next = latest;
        if let Ok(entries) = state::OUTBOX.load(&core.store) {
            let (due, next_due) = lock(&core.scheduler).pick(entries, now, latest);
            next = next_due;
            for entry in due {
                let attempting = core.clone();
                core.spawn(async move { attempting.attempt(entry).await });
            }
        }
        let wait = Duration::from_millis(next.saturating_sub(now)).max(Duration::from_millis(10));
        tokio::select! {
            () = core.wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Takes the friend layer's own streams of every link: control items, profiles,
/// acknowledgements on bidirectional streams, signalling frames (hole punching's candidates,
/// LAN keys) on unidirectional ones. Datagrams are not the friend layer's: dropped.
pub(super) async fn friend_inbox_loop(core: Arc<Core>, mut inbox: ExtensionInbox) {
    while let Some(inbound) = inbox.recv().await {
        match inbound {
            Inbound::Bi { peer, send, recv } => {
                core.spawn(core.clone().serve_stream(peer, send, recv));
            }
            Inbound::Uni { peer, mut recv } => {
                // The friend layer's unidirectional streams: one bounded signalling frame
                // each (`signal::Signal`): hole punching's candidates, a friend's LAN key.
                let taking = core.clone();
                core.spawn(async move {
                    let reading = recv.read_to_end(MAX_SIGNAL_FRAME_BYTES);
                    let Ok(Ok(frame)) = tokio::time::timeout(REQUEST_TIMEOUT, reading).await else {
                        return;
                    };
                    match Signal::decode(&frame) {
                        Some(Signal::Candidates(candidates)) => {
                            taking.take_candidates(peer, candidates);
                        }
                        Some(Signal::LanKey(key)) => {
                            let held = lock(&taking.machine).link(&peer);
                            taking.take_lan_key(peer, key, held).await;
                        }
                        None => {}
                    }
                });
            }
            Inbound::Datagram { .. } => {}
        }
    }
}
