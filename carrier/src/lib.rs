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
//! # Examples
//!
//! Three programs in `carrier/examples/`, each a minute to read, run as two processes (one
//! per friend; `--help` shows the options, `carrier node` gives them a bootstrap node):
//!
//! - `chat`: a two-party chat on [`Carrier::messenger`]: each line typed is sent, each
//!   message received printed, with the receipts;
//! - `file`: a file sent over a reliable stream of a session ([`Carrier::sessions`]), with a
//!   progress bar and the throughput at both ends;
//! - `forward`: a TCP service offered to a friend and a local port forwarded to it
//!   ([`Carrier::forwarder`]).
//!
//! `cargo run -p carrier --example chat -- --data DIR --local --bootstrap ID@HOST:PORT`
//! starts one; the README shows the others, and `carrier/tests/examples.rs` runs all three.
//!
//! The `carrier` program (this package's binary) is built on [`Carrier`]: `carrier daemon`
//! runs a node and serves its control socket (friends, messages, pipes, services and
//! forwardings), `carrier demo` a whole network on this machine, `carrier node` a public DHT
//! node. See `docs/ARCHITECTURE.md` at the repository root for the layers.

mod stack;

pub use stack::{Carrier, CarrierBuilder, CarrierError, ConnectionStatus, Event, Events, DATA_ENV};

pub use carrier_forward as forward;
pub use dht::id;
pub use forward::mux;
pub use friend::dht;
pub use msg::friend;
pub use mux::stream;
pub use stream::msg;
