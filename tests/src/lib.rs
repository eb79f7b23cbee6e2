//! Cross-layer integration tests of Carrier.
//!
//! The tests live in `tests/tests/`; this library holds what they share:
//!
//! - [`lab`] (Linux only): the network lab, topologies of Linux network namespaces with NAT
//!   routers between them, built on the `patchbay` crate, and the faults tests put on its
//!   links (loss, a cut, delay). `docs/TESTING.md` tells how to run it and add a case.
//! - [`program`]: where the `carrier` program is, for the lab's tests that run
//!   `carrier daemon` inside a host.
//!
//! Tests that SIGKILL nodes run the `carrier daemon` program; they live in the `carrier`
//! package (`carrier/tests/`), where cargo gives the program's path.

#[cfg(target_os = "linux")]
pub mod lab;
pub mod program;
