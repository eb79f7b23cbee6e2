//! [`LinkEndpoint`]: the node's QUIC endpoint on its shared socket, dialing and accepting
//! links authenticated by Carrier IDs.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use carrier_dht::id::{CarrierId, Keypair};
use carrier_dht::socket::NodeSocket;
use carrier_dht::Path;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::TransportConfig;
use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinHandle;

use super::accept::{accept_loop, AcceptCounters, AcceptShared};
use super::alpn::{Alpn, ALPN_FRIEND, ALPN_REQUEST};
use super::dialling::{AbandonedDials, Dialling};
use super::dials::{Dials, DialsInProgress};
use super::error::{DialError, EndpointError, PathError, RequestError, TlsError};
use super::gate::FriendGate;
use super::handle::{Accepted, Hold, Link};
use super::path_table::PathTable;
use super::quic_socket::{QuicSocket, QuicSocketCounters};
use super::stranger_limit::{StrangerLimit, StrangerLimiter};
use super::tls::{Clients, TlsIdentity, SERVER_NAME};
use super::transport::{self, Liveness};
use super::{close, request};

/// Handshakes (and request connections being read) in progress at once, by default; over it,
/// new connections are refused until some finish.
pub const MAX_PENDING_HANDSHAKES: usize = 256;

/// Accepted links and requests waiting for [`LinkEndpoint::accept`].
const ACCEPT_QUEUE: usize = 64;

/// How a [`LinkEndpoint`] admits peers.
#[derive(Clone)]
pub struct LinkConfig {
    /// Who may hold a `carrier/1` link.
    pub gate: Arc<dyn FriendGate>,
    /// Handshakes a stranger's source may start.
    pub stranger_limit: StrangerLimit,
    /// Handshakes in progress at once.
    pub max_pending_handshakes: usize,
    /// The keep-alive interval of dialled links, and the idle timeout of every connection.
    pub liveness: Liveness,
}

impl LinkConfig {
    /// The defaults, with `gate` deciding who is a friend.
    pub fn new(gate: impl FriendGate) -> Self {
        Self {
            gate: Arc::new(gate),
            stranger_limit: StrangerLimit::default(),
            max_pending_handshakes: MAX_PENDING_HANDSHAKES,
            liveness: Liveness::default(),
        }
    }
}

impl std::fmt::Debug for LinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkConfig")
            .field("stranger_limit", &self.stranger_limit)
            .field("max_pending_handshakes", &self.max_pending_handshakes)
            .field("liveness", &self.liveness)
            .finish_non_exhaustive()
    }
}

/// What the endpoint did, for tests and monitoring.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LinkStats {
    /// `carrier/1` links the gate admitted.
    pub friends_accepted: u64,
    /// `carrier/1` peers the gate refused (closed with [`close::NOT_A_FRIEND`]).
    pub friends_refused: u64,
    /// `carrier-request/1` frames received whole.
    pub requests_received: u64,
    /// `carrier-request/1` connections refused (oversized, extra frame, malformed, late).
    pub requests_refused: u64,
    /// Strangers' connection attempts refused by the per-source rate limit.
    pub strangers_refused: u64,
    /// Connection attempts refused because too many handshakes were in progress.
    pub busy_refused: u64,
    /// Handshakes that failed or timed out.
    pub handshakes_failed: u64,
    /// Datagrams quinn addressed to a mapped address with no path: dropped.
    pub unmapped_dropped: u64,
    /// Transmits with a packet lacking the QUIC bit: dropped.
    pub unmarked_dropped: u64,
    /// Received datagrams from a new real address while the path table was full of pinned
    /// entries: dropped.
    pub unmappable_dropped: u64,
}

/// The node's QUIC endpoint on its shared socket. Cheap to clone; the endpoint closes when
/// the last clone is dropped.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use carrier_friend::dht::{id::Keypair, socket::NodeSocket, Path};
/// use carrier_friend::{Accepted, AllowList, LinkConfig, LinkEndpoint};
///
/// let (alice, bob) = (Keypair::generate(), Keypair::generate());
/// let friends = AllowList::default();
/// friends.insert(alice.id());
/// let bob_node = LinkEndpoint::new(
///     NodeSocket::bind("127.0.0.1:0".parse()?)?,
///     &bob,
///     LinkConfig::new(friends),
/// )?;
/// let alice_node = LinkEndpoint::new(
///     NodeSocket::bind("127.0.0.1:0".parse()?)?,
///     &alice,
///     LinkConfig::new(|_: &_| false),
/// )?;
///
/// let to_bob = Path::Direct(bob_node.local_addr()?);
/// let link = alice_node.dial(bob.id(), to_bob).await?;
/// assert_eq!(link.peer(), bob.id());
/// let Some(Accepted::Link(at_bob)) = bob_node.accept().await else { panic!() };
/// assert_eq!(at_bob.peer(), alice.id());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct LinkEndpoint {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: quinn::Endpoint,
    socket: NodeSocket,
    paths: PathTable,
    /// Friend dials in their handshake, by peer.
    dials: Dials,
    tls: TlsIdentity,
    transport: Arc<TransportConfig>,
    accepted: Mutex<mpsc::Receiver<Accepted>>,
    accept_counters: Arc<AcceptCounters>,
    socket_counters: Arc<QuicSocketCounters>,
    accept_task: JoinHandle<()>,
    /// Where a friend dial given up with its handshake complete goes
    /// ([`LinkEndpoint::on_abandoned_dial`]).
    abandoned: AbandonedDials,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkEndpoint")
            .field("id", &self.tls.id())
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.accept_task.abort();
        self.endpoint.close(close::DONE, b"");
    }
}

impl LinkEndpoint {
    /// Runs QUIC on `socket` (the node's shared socket) as `keypair`'s Carrier ID. Must be
    /// called inside a tokio runtime.
    pub fn new(
        socket: NodeSocket,
        keypair: &Keypair,
        config: LinkConfig,
    ) -> Result<Self, EndpointError> {
        let tls = TlsIdentity::new(keypair)?;
        let (transport, server_transport) = transport::transport_configs(config.liveness);
        let mut server_tls = tls.server_config(Clients::Any, &[ALPN_FRIEND, ALPN_REQUEST])?;
        // Every dial uses a fresh client configuration, so a ticket could never be used.
        server_tls.send_tls13_tickets = 0;
        let server_crypto = QuicServerConfig::try_from(Arc::new(server_tls))
            .map_err(|e| TlsError::NotForQuic(e.to_string()))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
        server.transport_config(server_transport);

        let paths = PathTable::default();
        let socket_counters = Arc::new(QuicSocketCounters::default());
        let quic_socket = QuicSocket::new(socket.clone(), paths.clone(), socket_counters.clone())
            .map_err(EndpointError::Socket)?;
        let endpoint = quinn::Endpoint::new_with_abstract_socket(
            transport::endpoint_config(),
            Some(server),
            Arc::new(quic_socket),
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(EndpointError::Socket)?;

        let (sender, receiver) = mpsc::channel(ACCEPT_QUEUE);
        let accept_counters = Arc::new(AcceptCounters::default());
        let shared = Arc::new(AcceptShared {
            paths: paths.clone(),
            gate: config.gate,
            limiter: StrangerLimiter::new(config.stranger_limit),
            max_pending: config.max_pending_handshakes,
            pending: AtomicUsize::new(0),
            counters: accept_counters.clone(),
            accepted: sender,
        });
        let accept_task = tokio::spawn(accept_loop(endpoint.clone(), shared));
        Ok(Self {
            inner: Arc::new(Inner {
                endpoint,
                socket,
                paths,
                dials: Dials::default(),
                tls,
                transport,
                accepted: Mutex::new(receiver),
                accept_counters,
                socket_counters,
                accept_task,
                abandoned: AbandonedDials::default(),
            }),
        })
    }

    /// The Carrier ID this endpoint proves.
    pub fn id(&self) -> CarrierId {
        self.inner.tls.id()
    }

    /// The real address of the node's socket.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.socket.local_addr()
    }

    /// The table from the mapped addresses quinn sees to peers' real paths.
    pub fn paths(&self) -> &PathTable {
        &self.inner.paths
    }

    /// A `carrier/1` link to `peer`, reached at `path`. Fails if whoever answers at `path`
    /// cannot prove `peer`. The peer may still close the link with [`close::NOT_A_FRIEND`] right
    /// after the handshake if its gate refuses us.
    pub async fn dial(&self, peer: CarrierId, path: Path) -> Result<Link, DialError> {
        let (connection, hold) = self.open(peer, &[path], Alpn::Friend).await?;
        Ok(Link::new(connection, peer, hold))
    }

    /// A `carrier/1` link to `peer`, tried on every one of `paths` at once as one connection
    /// (its first packets go to each; see [`PathTable::mapped_for_candidates`]): the path
    /// table keeps the first path that answers. Relayed paths the socket does not use are
    /// left out; with none left the dial fails with [`PathError::NotInUse`] (or
    /// [`PathError::NoCandidates`] for an empty list).
    pub async fn dial_any(&self, peer: CarrierId, paths: &[Path]) -> Result<Link, DialError> {
        let (connection, hold) = self.open(peer, paths, Alpn::Friend).await?;
        Ok(Link::new(connection, peer, hold))
    }

    /// Hands `sink` every friend dial (from [`dial`](Self::dial) or
    /// [`dial_any`](Self::dial_any)) that was dropped in its handshake while the handshake
    /// had in fact just completed: quinn sends the client's last flight a moment before the
    /// awaiting task sees the dial complete, so the peer holds that link. Without a sink
    /// (the default) such a link is closed as it is dropped, and the peer sees it end at
    /// once; the friend layer adopts it instead. Replaces any sink set before.
    pub fn on_abandoned_dial(&self, sink: impl Fn(Link) + Send + Sync + 'static) {
        *self
            .inner
            .abandoned
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Arc::new(sink));
    }

    /// Makes every dial of `peer` still in its handshake go on only on direct paths: its
    /// relayed paths are dropped, and relays found later are not tried. Returns what those
    /// dials can still come to. The friend layer calls it when the peer gives it a relayed
    /// link meanwhile: a direct link would still beat that one, a second relayed link only
    /// race it.
    pub fn keep_dials_direct(&self, peer: CarrierId) -> DialsInProgress {
        self.inner.dials.keep_direct(peer, &self.inner.paths)
    }

    /// Sends one friend request `frame` to `peer` at `path` over `carrier-request/1`, and
    /// waits until the peer confirms it got it whole ([`close::REQUEST_RECEIVED`]).
    pub async fn send_request(
        &self,
        peer: CarrierId,
        path: Path,
        frame: &[u8],
    ) -> Result<(), RequestError> {
        let bytes = request::encode(frame).ok_or(RequestError::TooLarge(frame.len()))?;
        let connection = self.connect(peer, path, Alpn::Request).await?;
        request::send(&connection, &bytes).await
    }

    /// A raw QUIC connection to `peer` at `path` on `alpn`, after the handshake: what
    /// [`send_request`](Self::send_request) builds on, for a short exchange. Its path is held
    /// in the [`PathTable`] only during the handshake; a [`Link`] from [`dial`](Self::dial)
    /// holds it as long as the link lives.
    pub async fn connect(
        &self,
        peer: CarrierId,
        path: Path,
        alpn: Alpn,
    ) -> Result<quinn::Connection, DialError> {
        Ok(self.open(peer, &[path], alpn).await?.0)
    }

    /// [`connect`](Self::connect), with the hold on a friend's path that a link keeps.
    async fn open(
        &self,
        peer: CarrierId,
        paths: &[Path],
        alpn: Alpn,
    ) -> Result<(quinn::Connection, Option<Hold>), DialError> {
        // A relayed path the socket does not use could carry nothing.
        let usable: Vec<Path> = paths
            .iter()
            .copied()
            .filter(|path| self.inner.socket.addr_of(*path).is_some())
            .collect();
        let Some(first) = usable.first().copied() else {
            return Err(match paths.first() {
                Some(path) => PathError::NotInUse(*path),
                None => PathError::NoCandidates,
            }
            .into());
        };
        // If the dial fails or is dropped half-way, the hold goes with it.
        let (mapped, hold) = match alpn {
            Alpn::Friend if usable.len() > 1 => {
                let mapped = self.inner.paths.mapped_for_candidates(&usable)?;
                (mapped, Some(Hold::taken(&self.inner.paths, mapped)))
            }
            Alpn::Friend => {
                let mapped = self.inner.paths.mapped_for(first)?;
                (mapped, Some(Hold::taken(&self.inner.paths, mapped)))
            }
            Alpn::Request => (self.inner.paths.mapped_for_a_moment(first)?, None),
        };
        let tls = self.inner.tls.client_config(peer, alpn.as_bytes())?;
        let crypto = QuicClientConfig::try_from(Arc::new(tls))
            .map_err(|e| TlsError::NotForQuic(e.to_string()))?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(self.inner.transport.clone());
        let connecting = self
            .inner
            .endpoint
            .connect_with(config, mapped, SERVER_NAME)?;
        let (_dialling, abandoned) = match alpn {
            Alpn::Friend => (
                Some(self.inner.dials.start(peer, mapped)),
                Some(self.inner.abandoned.clone()),
            ),
            Alpn::Request => (None, None),
        };
        Ok(Dialling::new(connecting, hold, peer, abandoned)
            .finish()
            .await?)
    }

    /// The next friend link or friend request; `None` once the endpoint is closed.
    pub async fn accept(&self) -> Option<Accepted> {
        self.inner.accepted.lock().await.recv().await
    }

    /// What the endpoint did so far.
    pub fn stats(&self) -> LinkStats {
        let a = &self.inner.accept_counters;
        let s = &self.inner.socket_counters;
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        LinkStats {
            friends_accepted: load(&a.friends_accepted),
            friends_refused: load(&a.friends_refused),
            requests_received: load(&a.requests_received),
            requests_refused: load(&a.requests_refused),
            strangers_refused: load(&a.strangers_refused),
            busy_refused: load(&a.busy_refused),
            handshakes_failed: load(&a.handshakes_failed),
            unmapped_dropped: load(&s.unmapped_dropped),
            unmarked_dropped: load(&s.unmarked_dropped),
            unmappable_dropped: load(&s.unmappable_dropped),
        }
    }

    /// Closes every connection with [`close::DONE`] and waits until the peers know (or time
    /// out), so nothing is left half-open. It waits for every connection to drain, however
    /// long (seconds for a dial never answered): until then quinn's driver holds the node's
    /// socket, and a node restarted on the same port could not bind it.
    pub async fn shutdown(&self) {
        self.inner.endpoint.close(close::DONE, b"");
        self.inner.endpoint.wait_idle().await;
    }
}
