//! Failover of a relayed link: when the relay a link runs through dies, the same QUIC
//! connection continues through another of the peer's relays, before the link's silence
//! limit closes it.
//!
//! [`keep_relayed_link`] watches one link. While its path is relayed, it looks at the
//! socket's traffic with that relay ([`NodeSocket::relay_traffic`]) once per
//! [`FAILOVER_CHECK_INTERVAL`]: data sent to it and none heard from it for
//! [`FAILOVER_SILENCE`] (QUIC acknowledges within a round trip, and a PING goes out every
//! keep-alive interval, so a live relay is never that silent under traffic) means the path
//! is failing. It then looks the peer's record up, opens a session at each of its other
//! relays and adds them to the link's mapped address as candidates
//! ([`PathTable::add_candidate`]): quinn's packets go to every one of them, and the first
//! that answers becomes the path. quinn sees nothing change on this side; on the peer's side
//! the packets arrive from a new relayed path, which quinn takes as the client moving (a
//! migration, validated), so the accepting side follows without help.
//!
//! [`NodeSocket::relay_traffic`]: carrier_dht::socket::NodeSocket::relay_traffic

use std::time::{Duration, Instant};

use carrier_dht::{Dht, Path};

use crate::link::{Link, LinkEndpoint, PathTable};

/// How often a relayed link's traffic is looked at.
pub const FAILOVER_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// How long a relay may stay silent while data goes to it before the link tries the peer's
/// other relays.
pub const FAILOVER_SILENCE: Duration = Duration::from_millis(1500);

/// How long opening sessions at the other relays may take, per attempt.
const OPEN_TIMEOUT: Duration = Duration::from_secs(2);

/// Watches `link` (of `endpoint`, on `dht`'s socket) until it closes, moving it to another
/// of the peer's relays when the one it runs through goes silent. Returns when the link
/// closes.
pub async fn keep_relayed_link(dht: Dht, endpoint: LinkEndpoint, link: Link) {
    let mapped = link.connection().remote_address();
    let paths: &PathTable = endpoint.paths();
    let mut tried_after: Option<Instant> = None;
    let closed = link.connection().clone();
    let mut closed = std::pin::pin!(closed.closed());
    loop {
        tokio::select! {
            _ = &mut closed => return,
            _ = tokio::time::sleep(FAILOVER_CHECK_INTERVAL) => {}
        }
        let Some(Path::Relayed { relay, .. }) = paths.path(mapped) else {
            continue;
        };
        let now = Instant::now();
        let silent = dht
            .socket()
            .relay_traffic()
            .into_iter()
            .find(|t| t.relay == relay)
            .is_some_and(|t| {
                let heard = t.last_heard;
                t.last_sent
                    .is_some_and(|sent| heard.is_none_or(|h| h < sent))
                    && heard.is_none_or(|h| now.saturating_duration_since(h) >= FAILOVER_SILENCE)
            });
        if !silent || tried_after.is_some_and(|at| now < at) {
            continue;
        }
        // Not again for a while: the candidates added are being tried.
        tried_after = Some(now + OPEN_TIMEOUT * 2);
        let peer = link.peer();
        let record = tokio::time::timeout(OPEN_TIMEOUT, dht.find_peer(&peer)).await;
        let Ok(Ok(Some(record))) = record else {
            continue;
        };
        if record.id != peer {
            continue;
        }
        let mut opening = tokio::task::JoinSet::new();
        for hint in record.relays.iter().filter(|h| h.addr != relay) {
            let dht = dht.clone();
            let other = hint.addr;
            opening.spawn(async move {
                tokio::time::timeout(OPEN_TIMEOUT, dht.open_relay_session(other, &peer)).await
            });
        }
        while let Some(opened) = opening.join_next().await {
            if let Ok(Ok(Ok(path))) = opened {
                let _ = paths.add_candidate(mapped, path);
            }
        }
    }
}
