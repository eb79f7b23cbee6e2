//! The Kademlia DHT of Carrier: the node's UDP socket, routing, lookups, values, peer records and mailboxes.
//!
//! **Status: placeholder.** This layer is declared in the workspace so that the chain of
//! layers is fixed from the start; its API arrives with its own issue. Until then it only
//! re-exports the layer below, through which the layers above reach everything lower.
//!
//! See `docs/ARCHITECTURE.md` at the repository root for where this crate sits.

pub use carrier_id as id;
