//! Friends in Carrier: QUIC links authenticated by Carrier IDs, on the DHT's own UDP socket,
//! and the friend layer on top of them. Three rooms, each using only those below it:
//!
//! - [`link`]: QUIC links, knowing nothing of friends. [`LinkEndpoint`] runs quinn on the
//!   node's [`NodeSocket`](dht::socket::NodeSocket), shared with the DHT (QUIC packets always
//!   carry bit 0x40, never greased); it dials ([`LinkEndpoint::dial`]), sends friend requests
//!   ([`LinkEndpoint::send_request`]) and accepts both ([`LinkEndpoint::accept`]). [`tls`]:
//!   TLS 1.3 with raw public keys (RFC 7250), ring only, no X.509: each side proves its
//!   Ed25519 Carrier ID, and a dial names the ID it expects. Two ALPNs ([`alpn`]):
//!   `carrier/1` for friends, admitted by a [`FriendGate`] (an [`AllowList`] without the
//!   friend layer), and `carrier-request/1` for one bounded request frame from anyone
//!   ([`MAX_REQUEST_FRAME_BYTES`]), with strangers rate-limited per source before the
//!   handshake ([`StrangerLimit`]); why a connection was closed travels as one of the
//!   [`close`] codes. [`transport`]: the QUIC settings and why, with the [`Liveness`]
//!   settings. [`PathTable`]: quinn sees one stable mapped address per peer; the table points
//!   it at the peer's current real path. [`extension`]: every stream and datagram on a link
//!   starts with its [`Extension`] number, and an [`ExtensionRouter`] hands each to its
//!   layer's inbox.
//! - [`outbox`]: a durable outbox of items waiting for their peer's acknowledgement, and the
//!   [`Scheduler`](outbox::Scheduler) that picks which to attempt; generic, so carrier-msg
//!   keeps its messages in one too.
//! - [`Friends`] (the `friends` room): friend requests that survive restarts and offline
//!   peers, the friend list, labels, the block list and the nospam, kept in the node's
//!   database, with events ([`FriendEvent`]) and typed errors ([`FriendError`]). It keeps
//!   one live link per online friend ([`Friends::link`], decided by a state machine that
//!   takes `now`), tells friends its [`UserInfo`] and [`Presence`], and routes each link's
//!   streams and datagrams to the inbox of their extension ([`Friends::register`]).
//!
//! # Example
//!
//! Two nodes on 127.0.0.1; Bob's allow-list admits Alice, so her dial gives both a link.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use carrier_friend::dht::{id::Keypair, socket::NodeSocket, Path};
//! use carrier_friend::{Accepted, AllowList, LinkConfig, LinkEndpoint};
//!
//! let (alice, bob) = (Keypair::generate(), Keypair::generate());
//! let bob_friends = AllowList::default();
//! bob_friends.insert(alice.id());
//! let bob_node = LinkEndpoint::new(
//!     NodeSocket::bind("127.0.0.1:0".parse()?)?,
//!     &bob,
//!     LinkConfig::new(bob_friends),
//! )?;
//! let alice_node = LinkEndpoint::new(
//!     NodeSocket::bind("127.0.0.1:0".parse()?)?,
//!     &alice,
//!     LinkConfig::new(AllowList::default()),
//! )?;
//!
//! let link = alice_node.dial(bob.id(), Path::Direct(bob_node.local_addr()?)).await?;
//! let mut stream = link.connection().open_uni().await?;
//! stream.write_all(b"hello").await?;
//! stream.finish()?;
//!
//! let Some(Accepted::Link(at_bob)) = bob_node.accept().await else { panic!("no link") };
//! assert_eq!(at_bob.peer(), alice.id());
//! let mut incoming = at_bob.connection().accept_uni().await?;
//! assert_eq!(incoming.read_to_end(64).await?, b"hello");
//! # Ok(()) }
//! ```
//!
//! The friend layer needs a node with a data directory; its address is what others ask:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use carrier_friend::dht::{Dht, DhtConfig};
//! use carrier_friend::{FriendError, Friends, FriendsConfig};
//!
//! let dir = tempfile::tempdir()?;
//! let config = DhtConfig::new("127.0.0.1:0".parse()?).with_data_dir(dir.path());
//! let dht = Dht::bind(config).await?;
//! let (friends, _events) = Friends::start(dht, FriendsConfig::default()).await?;
//! let address = friends.address().to_string();
//! assert!(matches!(
//!     friends.add_friend(&address, b"hello, me").await,
//!     Err(FriendError::Yourself)
//! ));
//! assert!(friends.friends().is_empty());
//! # Ok(()) }
//! ```
//!
//! See `docs/ARCHITECTURE.md`, "QUIC links and paths" and "The friend layer", for the
//! decisions behind this crate.

pub use carrier_dht as dht;

// The rooms, lowest first: `link` knows nothing of friends, `outbox` nothing of links, and
// `friends` builds on both. No module uses one above it.
mod friends;
pub mod link;
pub mod outbox;

pub use friends::{keep_relayed_link, FAILOVER_CHECK_INTERVAL, FAILOVER_SILENCE};
pub use friends::{
    Friend, FriendError, FriendEvent, FriendEvents, FriendRequest, Friends, FriendsConfig,
    InfoError, OutgoingRequest, Presence, UserInfo, MAX_DESCRIPTION_BYTES, MAX_EMAIL_BYTES,
    MAX_GENDER_BYTES, MAX_HELLO_BYTES, MAX_INCOMING_REQUESTS, MAX_LABEL_BYTES, MAX_NAME_BYTES,
    MAX_PHONE_BYTES, MAX_REGION_BYTES,
};
pub use link::extension::{
    AlreadyRegistered, Extension, ExtensionInbox, ExtensionRouter, Inbound, UnknownExtension,
};
pub use link::{alpn, close, extension, tls, transport};
pub use link::{
    Accepted, AllowList, Alpn, DialError, DialsInProgress, EndpointError, FriendGate,
    IncomingRequest, Link, LinkConfig, LinkEndpoint, LinkPath, LinkStats, Liveness, PathError,
    PathTable, RequestError, StrangerLimit, TlsError, Topology, ALPN_FRIEND, ALPN_REQUEST,
    HANDSHAKE_TIMEOUT, MAPPED_PREFIX, MAX_ALIASES_PER_PEER, MAX_CANDIDATES, MAX_MAPPED_ADDRESSES,
    MAX_PENDING_HANDSHAKES, MAX_REQUEST_FRAME_BYTES, MAX_TRACKED_SOURCES, REQUEST_TIMEOUT,
};
/// quinn, as this crate uses it: the layers above reach streams and connections through it.
pub use quinn;
