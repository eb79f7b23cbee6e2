//! One live link per online friend: adopting dialled and accepted links, the tie-break,
//! dialling friends without a link (with backoff), and closing silent links.

use std::sync::Arc;
use std::time::Instant;

use carrier_dht::id::CarrierId;
use carrier_dht::Path;

use super::config::FriendsConfig;
use super::events::FriendEvent;
use super::machine::{Action, Closed, LinkMachine, Settings};
use super::rules::Taken;
use super::state::OUTBOX;
use super::tiebreak::draw;
use super::{lock, unix_ms, Core};
use crate::link::close;
use crate::link::{Accepted, DialsInProgress, Link};
use crate::outbox::RetryPolicy;

/// The friend layer's links: the state machine, and the handles it holds.
pub(super) type Machine = LinkMachine<Link>;

/// What the machine needs from the settings.
pub(super) fn machine_settings(config: &FriendsConfig) -> Settings {
    Settings {
        silence_limit: config.liveness.silence_limit,
        backoff: RetryPolicy {
            initial: config.link_retry_initial,
            max: config.link_retry_max,
            republish: config.retry.republish,
        },
        max_concurrent_dials: config.max_concurrent_dials,
        // Hole punching moves a relayed link on its own connection; without it, direct
        // dials are tried instead (decision 107).
        direct_retry: config.punch.is_none().then_some(RetryPolicy {
            initial: config.link_retry_initial,
            max: config
                .link_retry_max
                .saturating_mul(DIRECT_RETRY_CAP_FACTOR),
            republish: config.retry.republish,
        }),
    }
}

/// How much longer than a friend's redial the wait between tries of a direct link to a friend
/// linked through a relay grows (10 minutes by default): each try costs a lookup.
const DIRECT_RETRY_CAP_FACTOR: u32 = 10;

/// Datagrams `link` has received so far: what the machine watches for silence.
fn heard(link: &Link) -> u64 {
    link.connection().stats().udp_rx.datagrams
}

/// Peers whose last path is remembered, at most.
const MAX_LAST_PATHS: usize = 4096;

impl Core {
    /// Feeds the machine one input (given `now`), then carries out what it decided, all under
    /// its lock, so events go out in the order they were decided; wakes the driver.
    pub(super) fn with_machine<T>(&self, input: impl FnOnce(&mut Machine, Instant) -> T) -> T {
        let out = {
            let mut machine = lock(&self.machine);
            let out = input(&mut machine, Instant::now());
            let dials = self.perform(&mut machine);
            debug_assert!(dials.is_empty(), "only a poll starts dials");
            out
        };
        self.machine_wake.notify_one();
        out
    }

    /// Carries out the machine's actions but its dials, which it returns for the driver: each
    /// peer with whether only its direct paths are to be dialled.
    fn perform(&self, machine: &mut Machine) -> Vec<(CarrierId, bool)> {
        let mut dials = Vec::new();
        while let Some(action) = machine.pop_action() {
            match action {
                Action::Close { link, code } => {
                    tracing::debug!(
                        peer = %link.peer(),
                        link = link.connection().stable_id(),
                        code = %code,
                        "closing link"
                    );
                    let reason: &[u8] = if code == close::SILENT {
                        b"nothing heard"
                    } else {
                        b"duplicate link"
                    };
                    link.close(code, reason);
                }
                Action::Dial(peer) => dials.push((peer, false)),
                Action::DialDirect(peer) => dials.push((peer, true)),
                Action::Connected(peer) => {
                    tracing::debug!(%peer, "friend connected");
                    self.emit(FriendEvent::Connected(peer));
                    // A friend that comes online gets its waiting outbox items at once.
                    let now = unix_ms();
                    let store = self.store.clone();
                    let wake = self.wake.clone();
                    self.spawn(async move {
                        // A failed write leaves the items on their schedule.
                        let _ = store
                            .write(move |txn| OUTBOX.make_due(txn, &peer, now).map(drop))
                            .await;
                        wake.notify_one();
                    });
                }
                Action::Disconnected(peer) => {
                    tracing::debug!(%peer, "friend disconnected");
                    self.emit(FriendEvent::Disconnected(peer));
                }
            }
        }
        dials
    }

    /// Holds `link` (dialled by this node, or accepted), routes its streams and datagrams, and
    /// watches it until it closes. If a link to the same peer is held already, the tie-break
    /// keeps one and closes the other with [`close::DUPLICATE`].
    pub(super) fn adopt(self: &Arc<Self>, link: Link, dialled: bool) {
        let (peer, key) = (link.peer(), link.connection().stable_id());
        let (draw, count) = (draw(&link), heard(&link));
        let relayed = self.is_relayed(&link);
        tracing::debug!(%peer, link = key, dialled, relayed, draw, "link up");
        let held = link.clone();
        self.with_machine(|m, now| m.link_up(peer, held, key, dialled, draw, relayed, count, now));
        self.adopted
            .send_modify(|count| *count = count.wrapping_add(1));
        let path = self
            .endpoint
            .paths()
            .path(link.connection().remote_address());
        if let Some(path) = path {
            let mut last = lock(&self.last_paths);
            if last.len() >= MAX_LAST_PATHS && !last.contains_key(&peer) {
                // Peers come and go as links do; a full map starts over.
                last.clear();
            }
            last.insert(peer, path);
        }
        if let Some(relay) = path.filter(|path| path.is_relayed()) {
            let (dht, endpoint, relayed) = (self.dht.clone(), self.endpoint.clone(), link.clone());
            self.spawn(super::failover::keep_relayed_link(dht, endpoint, relayed));
            self.start_punching(&link, relay);
        }
        // Routed only now: the peer's first punch candidates find the link's puncher.
        let router = self.router.clone();
        let routed = link.clone();
        self.spawn(async move { router.route(routed).await });
        self.send_lan_key(&link);
        let watcher = self.clone();
        self.spawn(async move { watcher.watch(link).await });
    }

    /// Waits until `link` closes and tells the machine why.
    async fn watch(self: Arc<Self>, link: Link) {
        let reason = link.connection().closed().await;
        let why = match &reason {
            quinn::ConnectionError::ApplicationClosed(c) if c.error_code == close::DUPLICATE => {
                Closed::Duplicate
            }
            quinn::ConnectionError::ApplicationClosed(c) if c.error_code == close::NOT_A_FRIEND => {
                Closed::NotAFriend
            }
            _ => Closed::Other,
        };
        let (peer, key) = (link.peer(), link.connection().stable_id());
        tracing::debug!(%peer, link = key, %reason, "link closed");
        self.with_machine(|m, now| m.link_closed(peer, key, why, now));
    }

    /// Reports `peer` connected or disconnected if that changed.
    pub(super) fn refresh_online(&self, peer: CarrierId) {
        self.with_machine(|m, now| m.refresh(peer, now));
    }

    /// Finds `peer`'s record and dials its first addresses and its relays at once, as one
    /// connection (the path table keeps the path that answers). With `unless_held`, gives up
    /// as soon as a direct link to `peer` is held (the peer dialled us meanwhile), also
    /// half-way through the handshake ([`unless_held`](Self::unless_held)). Without that, a
    /// dial whose first packets were lost (the peer was not listening yet) completed a second
    /// later, at quinn's first retransmission, and when the dialler had the lower ID it won
    /// the race on both sides and closed the link both had been using since.
    ///
    /// A relayed link held does not stop a dial that can still go direct: the dial goes on
    /// on its direct paths only ([`LinkEndpoint::keep_dials_direct`]), since a direct link
    /// beats a relayed one in the tie-break ([`super::tiebreak`]). A friend behind a NAT that
    /// a moved friend reached through a relay first still gets the direct link its own dial
    /// finds (decision 107).
    ///
    /// [`LinkEndpoint::keep_dials_direct`]: crate::LinkEndpoint::keep_dials_direct
    pub(super) async fn find_and_dial(&self, peer: CarrierId, unless_held: bool) -> Option<Link> {
        if unless_held {
            self.unless_held(peer, self.find_and_dial_now(peer))
                .await
                .unwrap_or(None)
        } else {
            self.find_and_dial_now(peer).await
        }
    }

    /// Runs `dial` (of `peer`) unless a link to `peer` is held, or until one is: then gives
    /// it up and returns the link held. A relayed link held stops the dial only once the dial
    /// can complete nowhere but on a relay (see [`find_and_dial`](Self::find_and_dial)). A
    /// dial that completed is returned whatever else happened; its link is to be adopted, and
    /// the tie-break then keeps one of the two on both sides alike.
    ///
    /// A dial given up half-way has not completed at the peer either (the client finishes
    /// its handshake before the server does), so the peer has nothing to race the link it
    /// gave us with. One that quinn had just completed when it was given up (its driver
    /// sends the client's last flight a moment before this task sees it) comes back through
    /// the endpoint's abandoned-dial sink and is adopted like any other ([`abandoned_loop`],
    /// decision 125).
    pub(super) async fn unless_held<T>(
        &self,
        peer: CarrierId,
        dial: impl std::future::Future<Output = T>,
    ) -> Result<T, Link> {
        // Subscribed before the first look, so no adoption between the two is missed.
        let mut adopted = self.adopted.subscribe();
        let held = async {
            loop {
                if let Some(link) = self.gives_way_to(peer) {
                    return link;
                }
                if adopted.changed().await.is_err() {
                    // The core holds the sender as long as this runs.
                    std::future::pending::<()>().await;
                }
            }
        };
        if let Some(link) = lock(&self.machine).link(&peer) {
            if !self.is_relayed(&link) || self.config.punch.is_some() {
                // Not started: a future does nothing until polled.
                return Err(link);
            }
        }
        tokio::select! {
            biased;
            done = dial => Ok(done),
            link = held => {
                let held = link.connection().stable_id();
                tracing::debug!(%peer, held, "dial gave way to the link held");
                Err(link)
            }
        }
    }

    /// The link to `peer` a dial of it gives way to: the link held, if it is direct or hole
    /// punching will move it (decision 123: a second connection completing direct once the
    /// punch opened the NATs would replace it, and end its streams), or if it is relayed and
    /// the dials of `peer` in their handshake can only complete through a relay too. Without
    /// punching, dials that can still go direct are kept to their direct paths.
    fn gives_way_to(&self, peer: CarrierId) -> Option<Link> {
        let link = lock(&self.machine).link(&peer)?;
        if !self.is_relayed(&link) || self.config.punch.is_some() {
            return Some(link);
        }
        match self.endpoint.keep_dials_direct(peer) {
            DialsInProgress::OnlyRelayed => Some(link),
            // Still looking the peer up: its relayed paths are left out when it returns.
            DialsInProgress::Direct | DialsInProgress::None => None,
        }
    }

    /// Whether `link` runs through a relay now.
    fn is_relayed(&self, link: &Link) -> bool {
        self.endpoint
            .paths()
            .path(link.connection().remote_address())
            .is_some_and(|path| path.is_relayed())
    }

    /// Whether the link held to `peer` is relayed: a dial of `peer` then tries only direct
    /// paths.
    fn holds_relayed(&self, peer: CarrierId) -> bool {
        let held = lock(&self.machine).link(&peer);
        held.is_some_and(|link| self.is_relayed(&link))
    }

    /// [`find_and_dial`](Self::find_and_dial), whatever is held. The path of the peer's last
    /// link and where it was seen on the LAN are dialled at once, before the lookup returns
    /// (or if it never does: the uplink is down); what the lookup finds joins that dial as
    /// candidates.
    async fn find_and_dial_now(&self, peer: CarrierId) -> Option<Link> {
        let last = lock(&self.last_paths).get(&peer).copied();
        let last = last.filter(|path| self.dht.socket().addr_of(*path).is_some());
        let mut known: Vec<Path> = last.into_iter().collect();
        for path in self.lan_paths(&peer) {
            if !known.contains(&path) {
                known.push(path);
            }
        }
        if !known.is_empty() {
            // One attempt: the record's paths join this dial.
            return self.dial_known(peer, &known).await;
        }
        let mut paths = self.find_paths(peer).await;
        if self.holds_relayed(peer) {
            paths.retain(|path| !path.is_relayed());
        }
        if paths.is_empty() {
            return None;
        }
        let dialling = self.endpoint.dial_any(peer, &paths);
        match tokio::time::timeout(self.config.dial_timeout, dialling).await {
            Ok(Ok(link)) => Some(link),
            _ => None,
        }
    }

    /// Dials `peer` on `known` paths at once while its record is looked up; the record's
    /// paths join the dial as candidates as soon as they are known. `None` if no path
    /// answered within `dial_timeout`.
    async fn dial_known(&self, peer: CarrierId, known: &[Path]) -> Option<Link> {
        let paths = self.endpoint.paths().clone();
        // Held while the lookup may add candidates to it.
        let mapped = paths.mapped_for_candidates(known).ok()?;
        let dialling = tokio::time::timeout(
            self.config.dial_timeout,
            self.endpoint.dial_any(peer, known),
        );
        let looking = async {
            for found in self.find_paths(peer).await {
                let _ = paths.add_candidate(mapped, found);
            }
            std::future::pending::<()>().await
        };
        let dialled = tokio::select! {
            dialled = dialling => dialled,
            () = looking => return None,
        };
        paths.release(mapped);
        match dialled {
            Ok(Ok(link)) => Some(link),
            _ => None,
        }
    }

    /// Looks friend `peer` up and dials it (a dial the machine started); on success the link
    /// is held.
    async fn dial_friend(self: Arc<Self>, peer: CarrierId) {
        tracing::debug!(%peer, "dialling");
        let link = self.find_and_dial(peer, true).await;
        tracing::debug!(%peer, up = link.is_some(), "dial ended");
        // A dial that gave way counts as failed, as before decision 107: the machine dials
        // nobody it holds a link to, and counting it as up changed the backoff after a race
        // of dials enough to flap sessions (`carrier-stream`'s `link_loss.rs`, 4 runs in 31).
        let up = link.is_some();
        if let Some(link) = link {
            self.adopt(link, true);
        }
        self.with_machine(|m, now| m.dial_ended(peer, up, now));
    }

    /// Looks friend `peer`, linked through a relay, up and dials only its direct paths (a
    /// dial the machine started). A link that comes up is adopted: the tie-break keeps it
    /// over the relayed one on both sides. Streams open on the relayed link end with it; the
    /// tries come early in a relayed link's life, and back off.
    async fn dial_direct(self: Arc<Self>, peer: CarrierId) {
        let mut paths = self.find_paths(peer).await;
        paths.retain(|path| !path.is_relayed());
        let link = if paths.is_empty() {
            None
        } else {
            let dialling = self.endpoint.dial_any(peer, &paths);
            match tokio::time::timeout(self.config.dial_timeout, dialling).await {
                Ok(Ok(link)) => Some(link),
                _ => None,
            }
        };
        let up = link.is_some();
        if let Some(link) = link {
            self.adopt(link, true);
        }
        self.with_machine(|m, now| m.direct_dial_ended(peer, up, now));
    }
}

pub(super) async fn accept_loop(core: Arc<Core>) {
    while let Some(accepted) = core.endpoint.accept().await {
        match accepted {
            Accepted::Request(mut request) => {
                let taker = core.clone();
                core.spawn(async move {
                    let core = taker;
                    let frame = std::mem::take(&mut request.frame);
                    let code = match core.take_request(request.from, &frame).await {
                        Ok(Taken::Full) | Err(_) => close::REQUEST_NOT_TAKEN,
                        Ok(_) => close::REQUEST_RECEIVED,
                    };
                    request.answer(code);
                });
            }
            Accepted::Link(link) => core.adopt(link, false),
        }
    }
}

/// Adopts the friend dials given up in their handshake whose handshake had in fact completed
/// (the endpoint's abandoned-dial sink, set in `Friends::start`): the peer holds them, and
/// the tie-break keeps one link on both sides alike. Dropped instead, such a link closed
/// with code 0 and the peer saw its friend gone and back within a millisecond (`links.rs`
/// failed so in CI twice, and in 2 runs of 12 here under load; decision 125).
pub(super) async fn abandoned_loop(
    core: Arc<Core>,
    mut late: tokio::sync::mpsc::UnboundedReceiver<Link>,
) {
    while let Some(link) = late.recv().await {
        let (peer, key) = (link.peer(), link.connection().stable_id());
        tracing::debug!(%peer, link = key, "a dial given up had completed");
        core.adopt(link, true);
    }
}

/// Drives the machine: samples what every held link has heard, polls, closes what it says,
/// starts the dials it says, and sleeps until it wants to look again (at the latest after the
/// silence check interval, to sample the links) or an input arrives.
pub(super) async fn machine_loop(core: Arc<Core>) {
    loop {
        let next = {
            let mut machine = lock(&core.machine);
            let next = machine.poll(Instant::now(), heard);
            let dials = core.perform(&mut machine);
            drop(machine);
            for (peer, direct) in dials {
                if direct {
                    core.spawn(core.clone().dial_direct(peer));
                } else {
                    core.spawn(core.clone().dial_friend(peer));
                }
            }
            next
        };
        let sample = Instant::now() + core.config.liveness.silence_check_interval();
        tokio::select! {
            () = core.machine_wake.notified() => {}
            () = tokio::time::sleep_until(next.min(sample).into()) => {}
        }
    }
}
