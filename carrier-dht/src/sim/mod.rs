//! A deterministic simulated network that runs many [`crate::Node`]s in virtual time.
//!
//! It drives the very same [`crate::Node`] code as a real socket does: datagrams travel over
//! links with a latency drawn around 50 ms one way and optional loss; nodes join and die;
//! time is virtual, so a 10,000-node network runs in one test process in seconds. The only
//! difference from production is the [`crate::KeyAgreement`] seam, which simulations may set
//! to `Simulated` (hash instead of X25519).
//!
//! [`run_scenario`](crate::sim::run_scenario) runs the benchmark scenario (`cargo xtask bench` reports its
//! [`SimFigures`](crate::sim::SimFigures) as `dht.sim10k.*`).

mod mailbox;
mod network;
mod scenario;
mod trace;

pub use mailbox::{run_mailbox_scenario, MailboxFigures, MailboxScenario};
pub use network::{SimConfig, Simulation};
pub use scenario::{run_scenario, Scenario, SimFigures};
pub use trace::LookupSummary;
