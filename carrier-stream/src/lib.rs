//! Sessions and streams between Carrier friends, in reliable or datagram mode.
//!
//! **Status: placeholder.** This layer is declared in the workspace so that the chain of
//! layers is fixed from the start; its API arrives with its own issue. Until then it only
//! re-exports the layer below, through which the layers above reach everything lower.
//!
//! See `docs/ARCHITECTURE.md` at the repository root for where this crate sits.

pub use carrier_msg as msg;
