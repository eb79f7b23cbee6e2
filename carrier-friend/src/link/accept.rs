//! The accept side of a node's QUIC endpoint: strangers rate-limited before the handshake,
//! then each connection sorted by ALPN, friends checked by the gate, requests read and closed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::alpn::Alpn;
use super::gate::FriendGate;
use super::handle::{Accepted, Hold, IncomingRequest, Link};
use super::path_table::PathTable;
use super::stranger_limit::StrangerLimiter;
use super::{close, request, tls};

/// How long a handshake may take once accepted, before it is abandoned.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Counters of the accept side.
#[derive(Debug, Default)]
pub(crate) struct AcceptCounters {
    pub(crate) friends_accepted: AtomicU64,
    pub(crate) friends_refused: AtomicU64,
    pub(crate) requests_received: AtomicU64,
    pub(crate) requests_refused: AtomicU64,
    pub(crate) strangers_refused: AtomicU64,
    pub(crate) busy_refused: AtomicU64,
    pub(crate) handshakes_failed: AtomicU64,
}

/// What the accept loop and its handshake tasks share.
pub(crate) struct AcceptShared {
    pub(crate) paths: PathTable,
    pub(crate) gate: Arc<dyn FriendGate>,
    pub(crate) limiter: StrangerLimiter,
    pub(crate) max_pending: usize,
    pub(crate) pending: AtomicUsize,
    pub(crate) counters: Arc<AcceptCounters>,
    pub(crate) accepted: mpsc::Sender<Accepted>,
}

fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Takes every incoming connection of `endpoint` until it closes.
pub(crate) async fn accept_loop(endpoint: quinn::Endpoint, shared: Arc<AcceptShared>) {
    while let Some(incoming) = endpoint.accept().await {
        if shared.pending.load(Ordering::Relaxed) >= shared.max_pending {
            count(&shared.counters.busy_refused);
            incoming.refuse();
            continue;
        }
        if !admits_before_handshake(&shared, incoming.remote_address()) {
            // Refused rather than ignored: an honest peer learns at once instead of waiting for
            // a timeout, and the refusal is one small packet, never larger than what came in.
            count(&shared.counters.strangers_refused);
            incoming.refuse();
            continue;
        }
        shared.pending.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(handle(incoming, shared.clone()));
    }
}

/// Peers this node dialled or accepted a friend link from (known to the path table) pass;
/// anyone else is a stranger and spends a token of its source's bucket.
fn admits_before_handshake(shared: &AcceptShared, mapped: SocketAddr) -> bool {
    if shared.paths.is_known(mapped) {
        return true;
    }
    shared
        .paths
        .path(mapped)
        .is_some_and(|path| shared.limiter.admit(path, Instant::now()))
}

/// Releases a pending-handshake slot however the task ends.
struct PendingSlot(Arc<AcceptShared>);

impl Drop for PendingSlot {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn handle(incoming: quinn::Incoming, shared: Arc<AcceptShared>) {
    let shared = PendingSlot(shared);
    let shared = &shared.0;
    let connection = match incoming.accept() {
        Ok(connecting) => tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting).await,
        Err(_) => {
            count(&shared.counters.handshakes_failed);
            return;
        }
    };
    let Ok(Ok(connection)) = connection else {
        count(&shared.counters.handshakes_failed);
        return;
    };
    // Both are set for every connection our TLS configuration lets through.
    let peer = tls::peer_id(&connection);
    let alpn = negotiated_alpn(&connection);
    let (Some(peer), Some(alpn)) = (peer, alpn) else {
        count(&shared.counters.handshakes_failed);
        connection.close(close::UNKNOWN_ALPN, b"unknown protocol");
        return;
    };
    match alpn {
        Alpn::Friend => {
            if !shared.gate.admits(&peer) {
                count(&shared.counters.friends_refused);
                connection.close(close::NOT_A_FRIEND, b"not a friend");
                return;
            }
            count(&shared.counters.friends_accepted);
            // A friend's mapped address must outlive any flood of strangers' first sights.
            let mapped = connection.remote_address();
            let hold = shared
                .paths
                .pin(mapped)
                .then(|| Hold::taken(&shared.paths, mapped));
            // If nobody accepts any more, the link is dropped, which closes it.
            let _ = shared
                .accepted
                .send(Accepted::Link(Link::new(connection, peer, hold)))
                .await;
        }
        Alpn::Request => match request::receive(&connection).await {
            Ok(frame) => {
                count(&shared.counters.requests_received);
                let (request, answered) = IncomingRequest::new(peer, frame);
                let handed = shared.accepted.send(Accepted::Request(request)).await;
                // The taker answers once it has stored the request; a dropped request was
                // taken as it is; no answer in time, or nobody taking requests any more, is
                // "not taken", so the sender tries again.
                let code = match handed {
                    Ok(()) => {
                        match tokio::time::timeout(request::REQUEST_TIMEOUT, answered).await {
                            Ok(Ok(code)) => code,
                            Ok(Err(_)) => close::REQUEST_RECEIVED,
                            Err(_) => close::REQUEST_NOT_TAKEN,
                        }
                    }
                    Err(_) => close::REQUEST_NOT_TAKEN,
                };
                connection.close(code, b"");
            }
            Err(code) => {
                count(&shared.counters.requests_refused);
                connection.close(code, b"request refused");
            }
        },
    }
}

fn negotiated_alpn(connection: &quinn::Connection) -> Option<Alpn> {
    let data = connection.handshake_data()?;
    let data = data
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?;
    Alpn::from_bytes(data.protocol.as_deref()?)
}
