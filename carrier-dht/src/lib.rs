//! The Kademlia DHT of Carrier, usable on its own as a DHT library: a node on a real UDP socket
//! ([`Dht`]), its persistent store ([`store`]), and underneath, the protocol core without I/O
//! and a deterministic simulator that runs thousands of nodes on it.
//!
//! # Using the DHT
//!
//! A [`Dht`] binds one UDP socket (which QUIC shares in the layers above, see [`socket`]),
//! joins through bootstrap nodes written `ID@host:port`, and stores and finds values and peer
//! records:
//!
//! ```
//! use carrier_dht::{BootstrapNode, Dht, DhtConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
//! runtime.block_on(async {
//!     // A bootstrap node, and a node that joins through it. `DhtConfig::local`: a network on
//!     // this machine, where every node is reachable and so a server from the start; on the
//!     // internet (`DhtConfig::new`) a node starts as a client and becomes a server once a
//!     // probe shows it is reachable.
//!     let config = DhtConfig::local("127.0.0.1:0".parse()?);
//!     let bootstrap = Dht::bind(config.clone()).await?;
//!     let seed: BootstrapNode = format!("{}@{}", bootstrap.id(), bootstrap.local_addr()).parse()?;
//!     let node = Dht::bind(config.with_bootstrap([seed])).await?;
//!     node.bootstrap().await?;
//!
//!     // Store an immutable value (its key is its blake3 hash) and read it from the other.
//!     let (key, _stored_at) = node.put_immutable(b"hello, DHT").await?;
//!     let value = bootstrap.get(key).await?.expect("found");
//!     assert_eq!(value.data(), b"hello, DHT");
//!     Ok(())
//! })
//! # }
//! ```
//!
//! Letters for a node that may be offline go to its mailbox: [`Dht::deposit`] seals and
//! stores up to 64 KiB for a recipient, [`Dht::fetch`] returns the letters in one's own
//! mailbox (verified, with their sender), [`Dht::delete`] removes one for good.
//!
//! Give [`DhtConfig::data_dir`] a directory and the node keeps its key (`node.key`), the
//! values it stores for others and its routing table there: restarted, it rejoins without
//! bootstrap nodes and still serves what it stored.
//!
//! # The protocol core
//!
//! In the manner of quinn-proto, a [`Node`] takes datagrams, timer ticks and commands with an
//! explicit time ([`Now`]), and gives back datagrams to send ([`Transmit`]), [`Event`]s and its
//! next wake-up. It never reads a clock, opens a socket or spawns a task, which is what lets
//! the simulator (module `sim`, cargo feature `sim`) run 10,000 nodes in one test; [`Dht`] is
//! the thin tokio driver around it.
//!
//! What is inside, folder by folder from the bottom (each uses only those before it):
//!
//! - `wire/`: the key space and its XOR metric ([`Key`], [`Distance`]), wire formats:
//!   [`message`] (RPCs), [`record`] (values and peer records), [`packet`] (the sealed
//!   datagram), the mailbox item format, all postcard with [`bounded`] field types, strictly
//!   decoded;
//! - `guard/`: protection before work: address [`Token`]s, a replay cache, per-IP rate limits
//!   and per-second budgets (Diffie-Hellman operations, probe help);
//! - `kad/`: Kademlia: [`RoutingTable`], iterative lookups (α = 3, K = 8), [`Storage`] with
//!   its rules;
//! - [`mailbox`]: for nodes that are offline: sealed, signed items under daily keys, letters of
//!   up to 64 KiB cut into them, and [`mailbox_store`] (a storer's rules: quotas, TTL,
//!   deletion only by the recipient);
//! - `reach/`: where the node stands: its public address and NAT mapping as peers report
//!   them, and its reachability, confirmed only by a probe from an address it never
//!   contacted, which makes it a server ([`Standing`], [`PublicAddr`], [`NatMapping`],
//!   [`Reachability`]);
//! - [`relay`]: relays for NATed nodes: the frames, the limits, and the relay's table of
//!   registrations and sessions with its bandwidth budget ([`RelayTable`]), without I/O;
//! - [`punch`]: hole punching between two nodes linked through a relay: the probes, the
//!   link's key, and the rules of a round ([`punch::Puncher`]), without I/O;
//! - `node/`: [`Node`], which ties them together, counted in [`Counters`];
//! - `io/`: on the network: [`socket`] (the shared UDP socket), [`Dht`] (the driver), [`store`]
//!   (the node's database, shared by every layer) and [`persist`] (the DHT's tables in it);
//! - `sim/` (feature `sim`): the simulator, which runs many nodes.
//!
//! A simulated network drives the same core (with the cargo feature `sim`):
//!
//! ```
//! use carrier_dht::sim::{SimConfig, Simulation};
//!
//! let mut sim = Simulation::new(SimConfig { nodes: 20, ..SimConfig::default() });
//! sim.join_all();
//! let key = sim.put(0, b"hello").expect("stored");
//! assert_eq!(sim.get(7, key).as_deref(), Some(&b"hello"[..]));
//! ```

pub use carrier_id as id;

// The folders, bottom to top: each uses only the folders above it in this list, never one
// below (docs/ARCHITECTURE.md, "Layout", draws it).

/// Protection before work: address tokens, the replay cache, per-IP rate limits and the
/// per-second budgets.
mod guard;
/// On the network: the shared socket, the database, persistence, bootstrap nodes and the
/// [`Dht`] driver.
mod io;
/// Kademlia: the routing table, iterative lookups and the storage rules.
mod kad;
/// Mailboxes: letters cut into sealed items, and the storer's rules.
pub mod mailbox;
/// The protocol core: the [`Node`] state machine, without I/O.
mod node;
/// Hole punching: probes between two friends' nodes linked through a relay, without I/O.
pub mod punch;
/// Where the node stands: observed addresses, the prober, reachability.
mod reach;
/// Relays: the relay protocol's frames, limits and the relay's table, without I/O.
pub mod relay;
/// The deterministic simulator (cargo feature `sim`).
#[cfg(feature = "sim")]
pub mod sim;
/// Wire formats and the small types everything shares: keys, bounded fields, addresses,
/// time, the sealed packet, RPC messages, records and the mailbox item format.
mod wire;

pub use io::{persist, socket, store};
pub use mailbox::storer as mailbox_store;
pub use wire::{bounded, message, packet, record};

pub use io::bootstrap::{BootstrapNode, BootstrapParseError};
pub use io::dht::{Dht, DhtConfig, DhtEvent, KEY_FILE};
pub use io::error::{DhtError, MailboxError};
pub use io::mailbox::Deposit;
pub use kad::routing::{Entry, InsertOutcome, RoutingTable};
pub use kad::storage::{
    Item, ItemStore, ItemWrite, MemoryItemStore, Storage, StorageLimits, StoredItem,
};
pub use mailbox::storer::{MailboxLimits, MailboxStorage, MailboxWrite};
pub use mailbox::{ItemId, Letter, MailboxItem, MailboxKind, MAX_LETTER_BYTES};
pub use node::config::NodeConfig;
pub use node::counters::Counters;
pub use node::error::{CommandError, StoreError};
pub use node::event::{
    Event, QueryFinished, QueryId, QueryOutcome, StorageWrite, Transmit, Unstored,
};
pub use node::query::BOOTSTRAP_ROUNDS;
pub use node::rtt::RttEstimator;
pub use node::{Node, MAX_PING_BYTES, MIN_UNPROVEN_REQUEST_BYTES};
pub use reach::{NatMapping, PublicAddr, PublicPort, Reachability, Standing};
pub use relay::frame::RelayRefusal;
pub use relay::limits::RelayLimits;
pub use relay::table::{RelayCounters, RelayDrop, RelayTable, RelayTransmit};
pub use wire::entropy::Entropy;
pub use wire::error::{RecordError, WireError};
pub use wire::key::{Distance, Key};
pub use wire::message::{Contact, Refusal, K};
pub use wire::packet::{KeyAgreement, MAX_DATAGRAM_BYTES};
pub use wire::path::{canonical_addr, canonical_ip, Path, SessionId, Subnet};
pub use wire::record::{
    ImmutableValue, MutableValue, PeerRecord, RelayHint, Value, MAX_VALUE_BYTES,
};
pub use wire::time::Now;
pub use wire::token::Token;
