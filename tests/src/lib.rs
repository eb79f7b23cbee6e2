//! Cross-layer integration tests of Carrier.
//!
//! The tests live in `tests/tests/`; this library holds what they share:
//!
//! - [`lab`] (Linux only): the network lab, topologies of Linux network namespaces with NAT
//!   routers between them, built on the `patchbay` crate, and the faults tests put on its
//!   links (loss, a cut, delay). `docs/TESTING.md` tells how to run it and add a case.
//!
//! The node program that tests start as a child process (so they can kill it) will join it
//! with its issue.

#[cfg(target_os = "linux")]
pub mod lab;
