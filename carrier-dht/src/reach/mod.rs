//! Where the node stands: its public address as peers report it, its NAT mapping, and its
//! reachability as probes show it. The rules without I/O; the node runs them
//! (`node/reach.rs`). Uses `wire` and `guard`.

mod standing;

pub(crate) use standing::{Attempt, Observations, Prober, MAX_BACKOFF_SHIFT, MAX_CONFIDENCE};
pub use standing::{NatMapping, PublicAddr, PublicPort, Reachability, Standing};
