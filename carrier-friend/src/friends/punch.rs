//! Hole punching of relayed links: one [`Puncher`] (carrier-dht's rules) per link that came
//! up through a relay, driven here.
//!
//! - The punch key comes from the link's TLS exporter, so both ends hold it and nobody else.
//! - Candidates cross the link on a friend-layer unidirectional stream ([`Signal::Candidates`]):
//!   this node's public address where its NAT keeps one port for every peer, and the
//!   addresses of its interfaces (for a friend behind the same router).
//! - Probes and answers go from the node's one socket, so they open the very NAT mapping
//!   QUIC uses; the socket queues them for [`punch_loop`] ([`NodeSocket::recv_punch`]).
//! - Going direct re-points the friend's mapped address in the [`PathTable`]: the same QUIC
//!   connection carries on, and every stream above it. Falling back re-points it to the
//!   relay, whose session the puncher keeps open meanwhile.
//!
//! [`NodeSocket::recv_punch`]: carrier_dht::socket::NodeSocket::recv_punch
//! [`PathTable`]: crate::PathTable

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use carrier_dht::id::CarrierId;
use carrier_dht::punch::{PunchFrame, PunchKey, PunchOutput, Puncher, Role, MAX_CANDIDATES};
use carrier_dht::{DhtEvent, Path};
use serde::{Deserialize, Serialize};

use super::events::FriendEvent;
use super::signal::Signal;
use super::{lock, Core};
use crate::link::extension::Extension;
use crate::link::{Link, LinkPath};

/// How often the links' traffic is sampled while any link is punched.
const TICK: Duration = Duration::from_millis(100);

/// The largest candidates frame: eight IPv6 addresses and the flag.
pub(super) const MAX_CANDIDATES_FRAME_BYTES: usize = 1 + 1 + MAX_CANDIDATES * 20;

/// A side's candidate addresses, sent through the link (a friend-layer unidirectional
/// stream holding exactly one [`Signal::Candidates`] frame).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Candidates {
    /// Whether the other side is asked to answer with its own.
    pub(super) request: bool,
    /// At most [`MAX_CANDIDATES`].
    pub(super) addrs: Vec<SocketAddr>,
}

impl Candidates {
    /// Whether it holds at most [`MAX_CANDIDATES`] addresses.
    pub(super) fn is_within_limits(&self) -> bool {
        self.addrs.len() <= MAX_CANDIDATES
    }
}

/// One punched link.
struct Punched {
    link: Link,
    peer: CarrierId,
    /// The relayed path it came up on: where it falls back to.
    relay: Path,
    puncher: Puncher,
}

/// Every link being punched, by tag.
#[derive(Default)]
pub(super) struct Punching {
    links: HashMap<[u8; 8], Punched>,
}

impl Core {
    /// Starts punching `link`, which came up on the relayed path `relay`: the dialler asks
    /// for candidates at once. Nothing if punching is off, or the TLS session exports no key.
    pub(super) fn start_punching(&self, link: &Link, relay: Path) {
        let Some(timings) = self.config.punch else {
            return;
        };
        let mut exported = [0u8; 32];
        let connection = link.connection();
        if connection
            .export_keying_material(&mut exported, carrier_dht::punch::key::EXPORTER_LABEL, b"")
            .is_err()
        {
            return;
        }
        let key = PunchKey::from_exported(exported);
        let role = if connection.side().is_client() {
            Role::Dialler
        } else {
            Role::Accepter
        };
        let seed = u64::from_le_bytes(exported[..8].try_into().unwrap_or_default())
            ^ (connection.stable_id() as u64);
        let puncher = Puncher::new(key, role, timings, seed, Instant::now());
        let tag = puncher.tag();
        lock(&self.punching).links.insert(
            tag,
            Punched {
                link: link.clone(),
                peer: link.peer(),
                relay,
                puncher,
            },
        );
        self.punch_wake.notify_one();
    }

    /// Takes the candidates `peer` sent on its link.
    pub(super) fn take_candidates(&self, peer: CarrierId, candidates: Candidates) {
        let now = Instant::now();
        // Only the link held for the friend (an older one is about to close).
        let held = lock(&self.machine).link(&peer);
        let Some(held) = held else {
            return;
        };
        let key = held.connection().stable_id();
        let mut punching = lock(&self.punching);
        for punched in punching.links.values_mut() {
            if punched.peer == peer && punched.link.connection().stable_id() == key {
                let rtt = punched.link.connection().rtt();
                punched
                    .puncher
                    .on_candidates(candidates.request, &candidates.addrs, rtt, now);
            }
        }
        drop(punching);
        self.punch_wake.notify_one();
    }

    /// The path `link` runs on now, if the link has one.
    pub(super) fn link_path_of(&self, link: &Link) -> Option<LinkPath> {
        let path = self
            .endpoint
            .paths()
            .path(link.connection().remote_address())?;
        Some(LinkPath::new(self.dht.local_addr(), path))
    }

    /// This node's candidate addresses: its public address where its NAT keeps one port for
    /// every peer, and its own addresses (its interfaces' when bound to all of them).
    fn local_candidates(&self) -> Vec<SocketAddr> {
        let mut out = Vec::new();
        if let Some(public) = self.dht.observed_addr() {
            out.push(public);
        }
        let bound = self.dht.local_addr();
        if bound.ip().is_unspecified() {
            let interfaces = if_addrs::get_if_addrs().unwrap_or_default();
            for interface in interfaces {
                let ip = interface.ip();
                let usable = match ip {
                    IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local(),
                    // Link-local IPv6 needs a scope the frame does not carry.
                    IpAddr::V6(v6) => {
                        bound.is_ipv6()
                            && !v6.is_loopback()
                            && (v6.segments()[0] & 0xffc0) != 0xfe80
                    }
                };
                if usable {
                    out.push(SocketAddr::new(ip, bound.port()));
                }
            }
        } else {
            out.push(bound);
        }
        let mut seen = Vec::new();
        out.retain(|addr| {
            let new = !seen.contains(addr);
            seen.push(*addr);
            new
        });
        out.truncate(MAX_CANDIDATES);
        out
    }

    /// Carries out what the punchers decided; returns the earliest next poll.
    fn punch_round(self: &Arc<Self>, now: Instant) -> Instant {
        let mut next = now + Duration::from_secs(60);
        let mut work = Vec::new();
        {
            let mut punching = lock(&self.punching);
            punching
                .links
                .retain(|_, p| p.link.connection().close_reason().is_none());
            let paths = self.endpoint.paths();
            for punched in punching.links.values_mut() {
                let connection = punched.link.connection();
                // Where quinn sends now: the mapped address the link came up on, unless a
                // relay failover moved the accepting side's quinn to a new one.
                let mapped = connection.remote_address();
                let sent = connection.stats().udp_tx.datagrams;
                // What came on direct paths only: the peer's datagrams through the relay
                // once it fell back do not show that this side's direct ones arrive.
                let received = paths.received_direct(mapped).unwrap_or(0);
                punched.puncher.on_traffic(sent, received, now);
                next = next.min(punched.puncher.poll(now));
                while let Some(output) = punched.puncher.pop_output() {
                    work.push((punched.link.clone(), mapped, punched.relay, output));
                }
            }
            if !punching.links.is_empty() {
                next = next.min(now + TICK);
            }
        }
        for (link, mapped, relay, output) in work {
            self.carry_out(&link, mapped, relay, output);
        }
        next
    }

    fn carry_out(
        self: &Arc<Self>,
        link: &Link,
        mapped: SocketAddr,
        relay: Path,
        output: PunchOutput,
    ) {
        let paths = self.endpoint.paths();
        match output {
            PunchOutput::Candidates { request } => {
                let frame = Signal::Candidates(Candidates {
                    request,
                    addrs: self.local_candidates(),
                })
                .encode();
                let link = link.clone();
                self.spawn(async move {
                    let sending = async {
                        let mut send = link.open_uni(Extension::FRIEND).await.ok()?;
                        send.write_all(&frame).await.ok()?;
                        send.finish().ok()
                    };
                    let _ = tokio::time::timeout(Duration::from_secs(5), sending).await;
                });
            }
            PunchOutput::Send { to, datagram } => {
                // A full socket buffer loses a probe; the next one follows.
                let _ = self.dht.socket().try_send(to, &datagram);
            }
            PunchOutput::Alias(addr) => {
                tracing::debug!(peer = %link.peer(), %addr, "punch: a probe came from here");
                let _ = paths.add_alias(mapped, Path::Direct(addr));
            }
            PunchOutput::Direct(addr) => {
                tracing::debug!(peer = %link.peer(), %addr, "punch: direct");
                if paths.set_path(mapped, Path::Direct(addr)).is_ok() {
                    self.path_moved(link, false);
                }
            }
            PunchOutput::Relay => {
                tracing::debug!(peer = %link.peer(), "punch: back to the relay");
                if paths.set_path(mapped, relay).is_ok() {
                    self.path_moved(link, true);
                }
            }
            PunchOutput::KeepRelay => {
                let _ = self.dht.socket().keep_relayed_path(relay);
            }
        }
    }

    fn path_moved(&self, link: &Link, relayed: bool) {
        let (peer, key) = (link.peer(), link.connection().stable_id());
        lock(&self.machine).path_moved(peer, key, relayed);
        if let Some(path) = self.link_path_of(link) {
            let mut last = lock(&self.last_paths);
            last.insert(peer, path.path);
            drop(last);
            self.emit(FriendEvent::PathChanged(peer, path));
        }
    }

    /// Tells every punched link that this node's addresses changed.
    fn addresses_changed(&self, now: Instant) {
        let mut punching = lock(&self.punching);
        for punched in punching.links.values_mut() {
            punched.puncher.addresses_changed(now);
        }
    }
}

/// Drives the punchers: probes and answers from the socket, their timers, the links'
/// traffic, and changes of this node's addresses.
pub(super) async fn punch_loop(core: Arc<Core>) {
    let socket = core.dht.socket().clone();
    let mut events = core.dht.events();
    let mut candidates = core.local_candidates();
    let mut next = Instant::now() + Duration::from_secs(60);
    loop {
        tokio::select! {
            datagram = socket.recv_punch() => {
                let Ok(frame) = PunchFrame::decode(&datagram.data) else {
                    continue;
                };
                let now = Instant::now();
                let mut punching = lock(&core.punching);
                if let Some(punched) = punching.links.get_mut(&frame.tag()) {
                    punched.puncher.on_frame(datagram.from, &frame, now);
                }
            }
            event = events.recv() => {
                match event {
                    Ok(DhtEvent::ObservedAddr(_)) | Ok(DhtEvent::Standing(_)) => {
                        let now_candidates = core.local_candidates();
                        if now_candidates != candidates {
                            candidates = now_candidates;
                            core.addresses_changed(Instant::now());
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    _ => {}
                }
            }
            () = core.punch_wake.notified() => {}
            () = tokio::time::sleep_until(next.into()) => {}
        }
        next = core.punch_round(Instant::now());
    }
}
