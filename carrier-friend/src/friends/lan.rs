//! LAN discovery: friends behind one router find each other without the DHT (its uplink
//! may be down).
//!
//! - Each node has a secret **LAN key** (32 random bytes, kept in `friend/settings`), which
//!   it sends each friend over their link when one comes up ([`Signal::LanKey`]); each
//!   friend's key is kept in `friend/lan-keys`, so it survives restarts. Removing a friend
//!   (on either side) replaces the node's key in the same transaction, and the friends
//!   linked then get the new one at once: the removed friend cannot recognise the node's
//!   tokens any more. Friends offline then get it at their next link.
//! - The node advertises an mDNS service [`SERVICE_TYPE`] whose instance name (and host
//!   name) is a **token**: `keyed_blake3(LAN key, "carrier-lan-token-v1" ‖ epoch)`, its first
//!   [`TOKEN_BYTES`] bytes in hex, the epoch being [`EPOCH_SECS`] of Unix time. The service
//!   carries the socket's port and the interfaces' addresses; never the Carrier ID, and no
//!   TXT record.
//! - Browsing, the node compares each instance name with the tokens of the epochs around now
//!   for every friend's key it holds; a match is that friend, at those addresses and port: a
//!   dial of that friend tries them at once ([`Core::lan_paths`]), whether or not the DHT
//!   answers.
//!
//! A LAN observer learns that some Carrier node is at an address and port, and can link two
//! sightings of it only within one epoch (or by its address). Keys are exchanged with
//! [`FriendsConfig::lan`](super::FriendsConfig::lan); the mDNS service runs besides only on
//! a node whose socket is not bound to loopback.
//!
//! [`Signal::LanKey`]: super::signal::Signal::LanKey

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use carrier_dht::id::CarrierId;
use carrier_dht::Path;

use super::signal::Signal;
use super::{lock, read, Core};
use crate::link::extension::Extension;
use crate::link::Link;

/// The mDNS service every Carrier node advertises.
pub(crate) const SERVICE_TYPE: &str = "_carrier._udp.local.";

/// How long one token is advertised: an observer links sightings within one epoch.
pub(crate) const EPOCH_SECS: u64 = 600;

/// Bytes of the token in the instance name (hex: twice as many characters).
pub(crate) const TOKEN_BYTES: usize = 12;

/// A sighting is kept this long after its last announcement (tokens change every epoch, so a
/// node still there has been seen again by then).
const SIGHTING_TTL: Duration = Duration::from_secs(2 * EPOCH_SECS);

/// Addresses of one sighting kept, at most.
const MAX_SIGHTING_ADDRS: usize = 4;

/// Friends sighted at once, at most (sightings beyond are dropped until others expire).
const MAX_SIGHTINGS: usize = 4096;

/// A node's LAN key: what its friends compute its tokens with.
pub(crate) type LanKey = [u8; 32];

/// A fresh random LAN key.
pub(super) fn random_key() -> LanKey {
    let mut key = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut key);
    key
}

/// The epoch of `unix_secs`.
pub(crate) fn epoch_of(unix_secs: u64) -> u64 {
    unix_secs / EPOCH_SECS
}

/// The token of `key` in `epoch`.
pub(crate) fn token(key: &LanKey, epoch: u64) -> [u8; TOKEN_BYTES] {
    let mut hasher = blake3::Hasher::new_keyed(key);
    hasher.update(b"carrier-lan-token-v1");
    hasher.update(&epoch.to_be_bytes());
    let hash = hasher.finalize();
    let mut out = [0u8; TOKEN_BYTES];
    out.copy_from_slice(&hash.as_bytes()[..TOKEN_BYTES]);
    out
}

/// The mDNS instance name of `key` in `epoch`: its token in lower-case hex.
pub(crate) fn instance_name(key: &LanKey, epoch: u64) -> String {
    token(key, epoch)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Which of `keys`' holders advertises `name` around `epoch` (the epoch before, that one or
/// the one after: clocks differ and an advertisement lives across a boundary).
pub(crate) fn holder_of<'a>(
    name: &str,
    keys: impl IntoIterator<Item = (&'a CarrierId, &'a LanKey)>,
    epoch: u64,
) -> Option<CarrierId> {
    if name.len() != 2 * TOKEN_BYTES {
        return None;
    }
    let epochs = [epoch.saturating_sub(1), epoch, epoch.saturating_add(1)];
    keys.into_iter().find_map(|(id, key)| {
        epochs
            .iter()
            .any(|e| instance_name(key, *e) == name)
            .then_some(*id)
    })
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Where a friend was last seen on the LAN.
#[derive(Clone, Debug)]
pub(super) struct Sighting {
    addrs: Vec<SocketAddr>,
    at: Instant,
}

/// The friends seen on the LAN.
#[derive(Default)]
pub(super) struct Sightings {
    by_peer: HashMap<CarrierId, Sighting>,
    /// The instance full name each sighting came from, so a goodbye removes it.
    by_name: HashMap<String, CarrierId>,
}

impl Sightings {
    /// Records `peer` at `addrs` (from the instance `name`); whether that is news (the peer
    /// was not seen, or somewhere else).
    fn seen(
        &mut self,
        peer: CarrierId,
        name: String,
        addrs: Vec<SocketAddr>,
        now: Instant,
    ) -> bool {
        self.by_peer
            .retain(|_, s| now.saturating_duration_since(s.at) < SIGHTING_TTL);
        let known: Vec<CarrierId> = self.by_peer.keys().copied().collect();
        self.by_name.retain(|_, p| known.contains(p));
        if self.by_peer.len() >= MAX_SIGHTINGS && !self.by_peer.contains_key(&peer) {
            return false;
        }
        self.by_name.insert(name, peer);
        let previous = self.by_peer.insert(
            peer,
            Sighting {
                addrs: addrs.clone(),
                at: now,
            },
        );
        previous.is_none_or(|p| p.addrs != addrs)
    }

    fn removed(&mut self, name: &str) {
        if let Some(peer) = self.by_name.remove(name) {
            if !self.by_name.values().any(|p| *p == peer) {
                self.by_peer.remove(&peer);
            }
        }
    }

    fn addrs(&self, peer: &CarrierId, now: Instant) -> Vec<SocketAddr> {
        self.by_peer
            .get(peer)
            .filter(|s| now.saturating_duration_since(s.at) < SIGHTING_TTL)
            .map(|s| s.addrs.clone())
            .unwrap_or_default()
    }
}

impl super::Friends {
    /// The token this node advertises on its LAN now (the mDNS instance name; it changes
    /// every epoch and whenever the LAN key does). Advertised only where LAN discovery
    /// runs; computed all the same.
    pub fn lan_token(&self) -> String {
        let key = read(&self.core.state).lan_key;
        instance_name(&key, epoch_of(unix_secs()))
    }

    /// The friend whose LAN token `token` is now (or in the epoch before or after): what
    /// this node makes of an mDNS instance name. `None` for a stranger's, an old key's or
    /// garbage.
    pub fn lan_friend(&self, token: &str) -> Option<CarrierId> {
        let state = read(&self.core.state);
        holder_of(token, &state.lan_keys, epoch_of(unix_secs()))
    }
}

impl Core {
    /// This node's LAN key was replaced (a friend was removed, who knows the old one): the
    /// mDNS service advertises the new token at once, and every friend linked now gets the
    /// new key (the others get it when their next link comes up, and until then do not
    /// recognise this node on the LAN).
    pub(super) fn lan_key_rotated(&self) {
        self.lan_wake.notify_one();
        let linked: Vec<Link> = {
            let state = read(&self.state);
            let machine = lock(&self.machine);
            state
                .friends
                .keys()
                .filter_map(|peer| machine.link(peer))
                .collect()
        };
        for link in linked {
            self.send_lan_key(&link);
        }
    }

    /// Where `peer` was seen on the LAN, as paths to dial.
    pub(super) fn lan_paths(&self, peer: &CarrierId) -> Vec<Path> {
        lock(&self.lan_seen)
            .addrs(peer, Instant::now())
            .into_iter()
            .map(Path::Direct)
            .collect()
    }

    /// Sends this node's LAN key to `link`'s peer if LAN discovery runs and the peer is a
    /// friend (a peer only asked gets nothing).
    pub(super) fn send_lan_key(&self, link: &Link) {
        if !self.config.lan {
            return;
        }
        let frame = {
            let state = read(&self.state);
            if !state.friends.contains_key(&link.peer()) {
                return;
            }
            Signal::LanKey(state.lan_key).encode()
        };
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

    /// Keeps the LAN key friend `peer` sent on `link` (nothing for a peer that is not a
    /// friend, or a key already kept). A key that is news is answered with this node's own:
    /// the first link of a friendship comes up before both sides count each other as
    /// friends (it carries the accept), so one side's first key may have come too early;
    /// the answer to the key sent once the friendship stands fixes that, and an answer that
    /// is no news ends the exchange.
    pub(super) async fn take_lan_key(&self, peer: CarrierId, key: LanKey, link: Option<Link>) {
        {
            let state = read(&self.state);
            if !state.friends.contains_key(&peer) || state.lan_keys.get(&peer) == Some(&key) {
                return;
            }
        }
        // A failed write is mended at the next link.
        let kept = self
            .change(move |tables| {
                // Written only for a friend, in the same transaction that checks it.
                if tables.friend(&peer)?.is_some() {
                    tables.put_lan_key(&peer, &key)?;
                    return Ok(true);
                }
                Ok(false)
            })
            .await;
        if let (Ok(true), Some(link)) = (kept, link) {
            self.send_lan_key(&link);
        }
    }

    /// Takes one mDNS event: a friend's token seen (its addresses become dial paths, and
    /// the machine dials it at once if it holds no link), or an instance gone.
    fn take_lan_event(&self, event: mdns_sd::ServiceEvent, v4_only: bool) {
        match event {
            mdns_sd::ServiceEvent::ServiceResolved(resolved) => {
                let Some(name) = resolved.fullname.strip_suffix(&format!(".{SERVICE_TYPE}")) else {
                    return;
                };
                let peer = {
                    let state = read(&self.state);
                    holder_of(name, &state.lan_keys, epoch_of(unix_secs()))
                };
                let Some(peer) = peer else {
                    return;
                };
                let mut addrs: Vec<SocketAddr> = resolved
                    .addresses
                    .iter()
                    .map(|ip| ip.to_ip_addr())
                    .filter(|ip| usable(*ip, v4_only))
                    .map(|ip| SocketAddr::new(ip, resolved.port))
                    .collect();
                addrs.sort_unstable();
                addrs.truncate(MAX_SIGHTING_ADDRS);
                if addrs.is_empty() || resolved.port == 0 {
                    return;
                }
                let news = lock(&self.lan_seen).seen(
                    peer,
                    resolved.fullname.clone(),
                    addrs,
                    Instant::now(),
                );
                if news {
                    self.with_machine(|m, _| m.found(peer));
                }
            }
            mdns_sd::ServiceEvent::ServiceRemoved(_, fullname) => {
                lock(&self.lan_seen).removed(&fullname);
            }
            _ => {}
        }
    }
}

/// Whether a sighted address can be dialled from this node's socket (`v4_only`: an IPv4
/// socket; an IPv6 one is dual-stack): not loopback, not unspecified, no IPv6 link-local
/// (its scope is not carried).
fn usable(ip: IpAddr, v4_only: bool) -> bool {
    match ip {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_unspecified(),
        IpAddr::V6(v6) => {
            !v4_only
                && !v6.is_loopback()
                && !v6.is_unspecified()
                && (v6.segments()[0] & 0xffc0) != 0xfe80
        }
    }
}

/// The mDNS daemon, shut down when dropped (its thread lives until told).
struct Daemon(mdns_sd::ServiceDaemon);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.shutdown();
    }
}

/// Advertises this node's token and browses for friends' while the layer runs. Returns at
/// once if the mDNS daemon cannot start (no multicast here).
pub(super) async fn lan_loop(core: Arc<Core>) {
    let bound = core.dht.local_addr();
    let Ok(daemon) = mdns_sd::ServiceDaemon::new() else {
        return;
    };
    let daemon = Daemon(daemon);
    // Real interfaces only: never loopback; the socket's own interface when it is bound to
    // one address, and only its address family.
    let _ = daemon.0.disable_interface(vec![
        mdns_sd::IfKind::LoopbackV4,
        mdns_sd::IfKind::LoopbackV6,
    ]);
    if !bound.ip().is_unspecified() {
        let _ = daemon.0.disable_interface(mdns_sd::IfKind::All);
        let _ = daemon.0.enable_interface(mdns_sd::IfKind::Addr(bound.ip()));
    } else if bound.is_ipv4() {
        let _ = daemon.0.disable_interface(mdns_sd::IfKind::IPv6);
    }
    let Ok(browsing) = daemon.0.browse(SERVICE_TYPE) else {
        return;
    };
    // The daemon's channel blocks; a thread hands its events over (it ends when the daemon
    // shuts down and drops its sender).
    let (events, mut received) = tokio::sync::mpsc::channel(64);
    let _ = std::thread::Builder::new()
        .name("carrier-lan".into())
        .spawn(move || {
            while let Ok(event) = browsing.recv() {
                if events.blocking_send(event).is_err() {
                    return;
                }
            }
        });
    // The name advertised, and its full name.
    let mut advertised: Option<(String, String)> = None;
    loop {
        let now = unix_secs();
        let epoch = epoch_of(now);
        let key = read(&core.state).lan_key;
        let name = instance_name(&key, epoch);
        if advertised.as_ref().is_none_or(|(n, _)| *n != name) {
            if let Some((_, fullname)) = advertised.take() {
                let _ = daemon.0.unregister(&fullname);
            }
            let host = format!("{name}.local.");
            let info = mdns_sd::ServiceInfo::new(
                SERVICE_TYPE,
                &name,
                &host,
                "",
                bound.port(),
                None::<HashMap<String, String>>,
            );
            if let Ok(info) = info {
                let info = info.enable_addr_auto();
                let fullname = info.get_fullname().to_string();
                if daemon.0.register(info).is_ok() {
                    advertised = Some((name, fullname));
                }
            }
        }
        let next_epoch = Duration::from_secs((epoch + 1) * EPOCH_SECS - now);
        tokio::select! {
            event = received.recv() => match event {
                Some(event) => core.take_lan_event(event, bound.is_ipv4()),
                None => return,
            },
            () = tokio::time::sleep(next_epoch) => {}
            () = core.lan_wake.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn id(seed: u8) -> CarrierId {
        carrier_dht::id::Keypair::from_seed(&[seed; 32]).id()
    }

    #[test]
    fn a_token_rotates_every_epoch_and_names_only_its_keys_holder() {
        let (alice, bob) = (id(1), id(2));
        let (alice_key, bob_key) = ([7u8; 32], [9u8; 32]);
        let epoch = epoch_of(1_800_000_000);
        let name = instance_name(&alice_key, epoch);
        assert_eq!(name.len(), 2 * TOKEN_BYTES);
        assert!(name.bytes().all(|b| b.is_ascii_hexdigit()));
        // It rotates: the next epoch's token is another, and tokens far apart are unrelated.
        assert_ne!(name, instance_name(&alice_key, epoch + 1));
        assert_ne!(token(&alice_key, epoch), token(&bob_key, epoch));
        // It names nothing of the ID.
        assert!(!name.contains(&alice.to_string()[..8].to_lowercase()));
        let keys: HashMap<CarrierId, LanKey> = [(alice, alice_key), (bob, bob_key)].into();
        // A friend holding the key finds its holder in that epoch and the ones beside it.
        assert_eq!(holder_of(&name, &keys, epoch), Some(alice));
        assert_eq!(holder_of(&name, &keys, epoch + 1), Some(alice));
        assert_eq!(holder_of(&name, &keys, epoch - 1), Some(alice));
        // Not two epochs later: the old token is dead.
        assert_eq!(holder_of(&name, &keys, epoch + 2), None);
        // Someone without the key finds nobody.
        let others: HashMap<CarrierId, LanKey> = [(bob, bob_key)].into();
        assert_eq!(holder_of(&name, &others, epoch), None);
        assert_eq!(holder_of("not-a-token", &keys, epoch), None);
        assert_eq!(holder_of(&name.to_uppercase(), &keys, epoch), None);
    }

    #[test]
    fn random_keys_differ() {
        assert_ne!(random_key(), random_key());
    }

    #[test]
    fn sightings_expire_and_a_goodbye_removes_them() {
        let (alice, start) = (id(1), Instant::now());
        let addr: SocketAddr = "10.0.0.5:4000".parse().unwrap();
        let mut seen = Sightings::default();
        assert!(seen.seen(alice, "a._carrier._udp.local.".into(), vec![addr], start));
        // The same again is no news; a move is.
        assert!(!seen.seen(alice, "a._carrier._udp.local.".into(), vec![addr], start));
        let moved: SocketAddr = "10.0.0.6:4000".parse().unwrap();
        assert!(seen.seen(alice, "a._carrier._udp.local.".into(), vec![moved], start));
        assert_eq!(seen.addrs(&alice, start), vec![moved]);
        assert!(seen.addrs(&alice, start + SIGHTING_TTL).is_empty());
        seen.removed("a._carrier._udp.local.");
        assert!(seen.addrs(&alice, start).is_empty());
    }

    #[test]
    fn only_dialable_addresses_are_kept() {
        assert!(usable("10.0.0.5".parse().unwrap(), true));
        assert!(!usable("127.0.0.1".parse().unwrap(), true));
        assert!(!usable("fd00::5".parse().unwrap(), true));
        assert!(usable("fd00::5".parse().unwrap(), false));
        assert!(!usable("fe80::1".parse().unwrap(), false));
        assert!(!usable("::1".parse().unwrap(), false));
        // A dual-stack socket reaches IPv4 too.
        assert!(usable("10.0.0.5".parse().unwrap(), false));
    }
}
