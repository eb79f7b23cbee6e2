//! Carrier: a decentralized, end-to-end encrypted peer-to-peer platform. The facade crate.
//!
//! [`Carrier::builder`] starts a node with every layer on one data directory, and gives one
//! event stream for all of them:
//!
//! ```no_run
//! # async fn run() -> Result<(), carrier::CarrierError> {
//! let (node, mut events) = carrier::Carrier::builder().data_dir("alice").start().await?;
//! node.friends().add_friend("<a friend's address>", b"hello").await.ok();
//! while let Some(event) = events.recv().await {
//!     println!("{event:?}");
//! }
//! # Ok(()) }
//! ```
//!
//! Every layer is re-exported under a short name, for those who use one layer alone or
//! reach below the facade. The identity layer, for instance:
//!
//! ```
//! let keypair = carrier::id::Keypair::generate();
//! println!("my Carrier ID is {}", keypair.id());
//! ```
//!
//! The `carrier` program (this package's binary) is built on [`Carrier`]: `carrier daemon`
//! runs a node and serves its control socket, `carrier demo` a whole network on this
//! machine, `carrier node` a public DHT node. Sessions, streams, channels and forwarding join
//! the node as their layers land. See `docs/ARCHITECTURE.md` at the repository root for the
//! layers.

mod stack;

pub use stack::{Carrier, CarrierBuilder, CarrierError, ConnectionStatus, Event, Events, DATA_ENV};

pub use carrier_forward as forward;
pub use dht::id;
pub use forward::mux;
pub use friend::dht;
pub use msg::friend;
pub use mux::stream;
pub use stream::msg;
