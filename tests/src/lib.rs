//! Cross-layer integration tests of Carrier.
//!
//! The tests live in `tests/tests/`; this library holds what they share:
//!
//! - [`lab`] (Linux only): the network lab, topologies of Linux network namespaces with NAT
//!   routers between them, built on the `patchbay` crate, and the faults tests put on its
//!   links (loss, a cut, delay). `docs/TESTING.md` tells how to run it and add a case.
//! - The node program `carrier-test-node` (`src/bin/carrier-test-node.rs`): one node (DHT
//!   and friend layer) as a child process driven over stdin and stdout, so tests can SIGKILL it
//!   and start it again on the same data directory. Its documentation lists the commands.

#[cfg(target_os = "linux")]
pub mod lab;
