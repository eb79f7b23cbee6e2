//! [`Forwarding`]: a local TCP listener whose every connection becomes a channel to a
//! friend's service.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use carrier_mux::stream::msg::friend::dht::id::CarrierId;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use super::relay::{relay, Counts};
use super::{lock, Shared};
use crate::error::ForwardError;
use crate::events::{ForwardEvent, Side};
use crate::service::ServiceName;

/// One open connection of a [`Forwarding`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The local program's address.
    pub peer: SocketAddr,
    /// Bytes that came from the friend so far.
    pub bytes_in: u64,
    /// Bytes that went to the friend so far.
    pub bytes_out: u64,
    /// When the local program connected.
    pub since: SystemTime,
}

#[derive(Debug)]
struct Connection {
    peer: SocketAddr,
    since: SystemTime,
    counts: Arc<Counts>,
}

/// What a forwarding's handle and its tasks share.
#[derive(Debug)]
struct ForwardingShared {
    friend: CarrierId,
    service: ServiceName,
    local: SocketAddr,
    connections: Mutex<HashMap<u64, Connection>>,
    next: AtomicU64,
    closed: AtomicBool,
}

/// A forwarding: a local TCP listener (from
/// [`Forwarder::forward`](crate::Forwarder::forward)) whose every accepted connection
/// becomes a channel to the friend's service, bytes copied both ways until either end
/// closes. A connection the friend refuses (an unknown service, one this node may not use,
/// one not reachable there) is closed at once and reported
/// ([`ForwardEvent::Refused`]). [`close`](Self::close) or dropping it stops the listener
/// and its connections.
#[derive(Debug)]
pub struct Forwarding {
    shared: Arc<ForwardingShared>,
    // Taken by `close`, which waits for it to end: the listener is closed when it returns.
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Forwarding {
    /// Binds `local` and forwards its connections to `friend`'s `service` over `link`'s
    /// sessions.
    pub(crate) async fn start(
        link: Arc<Shared>,
        friend: CarrierId,
        service: ServiceName,
        local: SocketAddr,
    ) -> Result<Forwarding, ForwardError> {
        let listener = TcpListener::bind(local).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => ForwardError::AddressInUse(local),
            _ => ForwardError::Io(format!("listen on {local}: {e}")),
        })?;
        let local = listener
            .local_addr()
            .map_err(|e| ForwardError::Io(e.to_string()))?;
        let shared = Arc::new(ForwardingShared {
            friend,
            service,
            local,
            connections: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        });
        let task = tokio::spawn(accept(link, shared.clone(), listener));
        Ok(Forwarding {
            shared,
            task: Mutex::new(Some(task)),
        })
    }

    /// The address the forwarding listens on (its port chosen when `local`'s was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    /// The friend it forwards to.
    pub fn friend(&self) -> CarrierId {
        self.shared.friend
    }

    /// The friend's service it forwards to.
    pub fn service(&self) -> &ServiceName {
        &self.shared.service
    }

    /// Its open connections, with their byte counts, oldest first.
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        let mut list: Vec<(u64, ConnectionInfo)> = lock(&self.shared.connections)
            .iter()
            .map(|(id, c)| {
                let (bytes_in, bytes_out) = c.counts.get();
                (
                    *id,
                    ConnectionInfo {
                        peer: c.peer,
                        bytes_in,
                        bytes_out,
                        since: c.since,
                    },
                )
            })
            .collect();
        list.sort_by_key(|(id, _)| *id);
        list.into_iter().map(|(_, info)| info).collect()
    }

    /// Whether it was closed.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst)
    }

    /// Stops listening and closes its connections: once it returns, a connection to
    /// [`local_addr`](Self::local_addr) is refused. [`ForwardError::WrongState`] if it was
    /// closed already.
    pub async fn close(&self) -> Result<(), ForwardError> {
        if self.shared.closed.swap(true, Ordering::SeqCst) {
            return Err(ForwardError::WrongState(format!(
                "the forwarding on {} is closed already",
                self.shared.local
            )));
        }
        let task = lock(&self.task).take();
        if let Some(task) = task {
            task.abort();
            // An abort takes effect when the runtime next drops the task: until then its
            // listener, and the kernel's backlog behind it, still take connections.
            let _ = task.await;
        }
        lock(&self.shared.connections).clear();
        Ok(())
    }
}

impl Drop for Forwarding {
    /// Stops the listener and its connections as soon as the runtime gets to it; use
    /// [`close`](Self::close) to know when it has.
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
    }
}

/// The listener's loop; its connections are its tasks, so they end with it.
async fn accept(link: Arc<Shared>, shared: Arc<ForwardingShared>, listener: TcpListener) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        match accepted {
            Ok((tcp, peer)) => {
                connections.spawn(forward_one(link.clone(), shared.clone(), tcp, peer));
            }
            Err(error) => {
                // Out of descriptors and the like: passes; a pause keeps this from spinning.
                tracing::warn!(target: "carrier_forward", local = %shared.local, %error, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// One local connection: a channel to the friend's service, then the relay.
async fn forward_one(
    link: Arc<Shared>,
    shared: Arc<ForwardingShared>,
    tcp: TcpStream,
    peer: SocketAddr,
) {
    let friend = shared.friend;
    let service = shared.service.to_string();
    let _ = tcp.set_nodelay(true);
    let channel = match link.open(&friend, &shared.service).await {
        Ok(channel) => channel,
        Err(error) => {
            tracing::info!(target: "carrier_forward", %friend, %service, %peer, %error, "connection refused");
            drop(tcp);
            link.emit(ForwardEvent::Refused {
                friend,
                service,
                peer,
                reason: error.to_string(),
            });
            return;
        }
    };
    let id = shared.next.fetch_add(1, Ordering::Relaxed);
    let counts = Arc::new(Counts::default());
    lock(&shared.connections).insert(
        id,
        Connection {
            peer,
            since: SystemTime::now(),
            counts: counts.clone(),
        },
    );
    link.emit(ForwardEvent::Opened {
        side: Side::Forwarding,
        friend,
        service: service.clone(),
        peer,
    });
    let relayed = relay(tcp, channel, &counts).await;
    lock(&shared.connections).remove(&id);
    let (bytes_in, bytes_out) = counts.get();
    tracing::debug!(target: "carrier_forward", %friend, %service, %peer, bytes_in, bytes_out, "connection closed");
    link.emit(ForwardEvent::Closed {
        side: Side::Forwarding,
        friend,
        service,
        bytes_in,
        bytes_out,
        error: relayed.err().map(|e| e.to_string()),
    });
}
