//! Carrier: a decentralized, end-to-end encrypted peer-to-peer platform. The facade crate.
//!
//! **Status: early.** Every layer is re-exported here under a short name; the `Carrier` node
//! (builder, data directory, event stream) arrives with its own issue. The `carrier` program
//! (this package's binary) runs `carrier demo`, a whole network on this machine, and
//! `carrier node`, a public DHT node. The identity layer, for instance:
//!
//! ```
//! let keypair = carrier::id::Keypair::generate();
//! println!("my Carrier ID is {}", keypair.id());
//! ```
//!
//! See `docs/ARCHITECTURE.md` at the repository root for the layers.

pub use carrier_forward as forward;
pub use dht::id;
pub use forward::mux;
pub use friend::dht;
pub use msg::friend;
pub use mux::stream;
pub use stream::msg;
