//! Cross-layer integration tests of Carrier.
//!
//! The tests live in `tests/tests/`; this library will hold what they share (the node program
//! that tests start as a child process so they can kill it, and the network lab) as those
//! arrive with their issues.
