//! Joining the DHT if nobody did, and announcing the node's peer record, again when its
//! addresses or its relays change.

use std::sync::Arc;

use carrier_dht::PeerRecord;

use super::error::FriendError;
use super::{unix_ms, Core};

impl Core {
    /// The node's addresses for its peer record: the observed one, and the local one.
    pub(super) fn addresses(&self) -> Vec<std::net::SocketAddr> {
        let mut addrs = Vec::new();
        if let Some(observed) = self.dht.observed_addr() {
            addrs.push(observed);
        }
        let local = self.dht.local_addr();
        if !local.ip().is_unspecified() && !addrs.contains(&local) {
            addrs.push(local);
        }
        addrs
    }

    /// Publishes the node's signed peer record (its observed and local addresses).
    pub(super) async fn announce(&self) -> Result<usize, FriendError> {
        let addrs = self.addresses();
        // The relays the DHT registered with while the node is not a server (at most 3).
        let relays = self.dht.relay_hints();
        if addrs.is_empty() && relays.is_empty() {
            // Nowhere to be found yet (behind a NAT, before peers reported the public
            // address or a relay took the node): a record without addresses would only hide
            // the last useful one.
            return Ok(0);
        }
        let now_ms = unix_ms();
        let expires = (now_ms / 1000).saturating_add(self.config.record_ttl.as_secs());
        // Two addresses and at most three relays always fit the record's caps.
        let Ok(record) = PeerRecord::sign(&self.keypair, now_ms, expires, addrs, relays) else {
            return Ok(0);
        };
        Ok(self.dht.announce(record).await?)
    }
}

pub(super) async fn announce_loop(core: Arc<Core>) {
    let mut failed_joins = 0u32;
    loop {
        // A node that never joined (or lost every contact) joins through the DHT's configured
        // bootstrap nodes (or its saved contacts) first: a friend layer on a node nobody
        // bootstrapped still finds its friends. Failed joins back off like outbox items.
        if core.dht.routing_entries() == 0 {
            if core.dht.bootstrap().await.is_err() {
                failed_joins = failed_joins.saturating_add(1);
                tokio::time::sleep(core.config.retry.backoff(failed_joins)).await;
                continue;
            }
            failed_joins = 0;
        }
        let addrs = core.addresses();
        let relays = core.dht.relay_hints();
        let wait = match core.announce().await {
            Ok(stored) if stored > 0 => core.config.announce_interval,
            // Nobody stored it: soon again.
            _ => core.config.retry.initial,
        };
        // Until the next announce is due, watch for a change of address or of relays (one
        // found dead and replaced): friends looking the node up must find where it is now.
        let due = tokio::time::Instant::now() + wait;
        loop {
            let check = core.config.address_check_interval.min(wait);
            tokio::time::sleep_until(due.min(tokio::time::Instant::now() + check)).await;
            if tokio::time::Instant::now() >= due
                || core.addresses() != addrs
                || core.dht.relay_hints() != relays
            {
                break;
            }
        }
    }
}
