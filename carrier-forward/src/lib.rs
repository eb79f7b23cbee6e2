//! Services exposed by name and local TCP ports forwarded to a friend through Carrier
//! channels, as `ssh -L` does, but addressed by Carrier ID, through NATs, with no account on
//! the other side.
//!
//! A node offers **services** ([`Forwarder::serve`]): a name, a `host:port` target, and who
//! may use it ([`Allowed::Everyone`] or [`Allowed::Only`] some friends). A friend opens a
//! **forwarding** ([`Forwarder::forward`]): a local TCP listener whose every accepted
//! connection becomes a carrier-mux channel whose cookie is the service's name
//! ([`ServiceName`]); the serving node connects to the target and the bytes flow both ways
//! with no extra framing, each way's end passed on as a half-close, until either end
//! closes. All of a node's forwardings to one friend share one session (bundle
//! [`FORWARD_BUNDLE`]) and one multiplexed stream; each connection is a channel, so a slow
//! connection never holds up another.
//!
//! A refused connection (a service that is unknown, not offered to this friend — the same
//! answer, so a refusal tells nothing about others' services — or unreachable at its
//! target) is closed at once, logged and reported ([`ForwardEvent`]). A [`Forwarding`] lists
//! its open connections with their byte counts ([`ConnectionInfo`]). Errors are
//! [`ForwardError`]s, one variant per case.
//!
//! # Rooms
//!
//! - `service`: [`ServiceName`] (the cookie's decoder), [`ServiceTable`], [`Allowed`],
//!   [`ServiceInfo`]: rules without I/O.
//! - `forwarding`: [`Forwarding`] (the local listener), the serving side's handler, the
//!   relay between a TCP connection and a channel, one session per friend.
//! - `forwarder`: [`Forwarder`], the handle.
//! - `events`: [`ForwardEvent`], [`ForwardEvents`], [`Side`]. `config`: [`ForwardConfig`].
//!   `error`: [`ForwardError`].
//!
//! # Example
//!
//! ```no_run
//! # async fn example(
//! #     alice: carrier_forward::mux::stream::Sessions,
//! #     bob: carrier_forward::mux::stream::Sessions,
//! #     alice_id: carrier_forward::mux::stream::msg::friend::dht::id::CarrierId,
//! #     bob_id: carrier_forward::mux::stream::msg::friend::dht::id::CarrierId,
//! # ) -> Result<(), carrier_forward::ForwardError> {
//! use carrier_forward::{Allowed, ForwardConfig, Forwarder};
//!
//! // Bob offers his web server to Alice only.
//! let (bob_forwarder, _bob_events) = Forwarder::start(&bob, ForwardConfig::default())?;
//! bob_forwarder.serve("web", "127.0.0.1:8080", Allowed::Only(vec![alice_id]))?;
//!
//! // Alice forwards a local port to it: connections to it reach Bob's web server.
//! let (alice_forwarder, _events) = Forwarder::start(&alice, ForwardConfig::default())?;
//! let forwarding = alice_forwarder
//!     .forward(&bob_id, "web", "127.0.0.1:0".parse().expect("an address"))
//!     .await?;
//! println!("http://{}/", forwarding.local_addr());
//! # Ok(()) }
//! ```
//!
//! See `docs/ARCHITECTURE.md`, "Forwarding (carrier-forward)", for the decisions behind this
//! crate.

pub use carrier_mux as mux;

mod config;
mod error;
mod events;
mod forwarder;
mod forwarding;
mod service;

pub use config::{ForwardConfig, DEFAULT_CONNECT_TIMEOUT, FORWARD_BUNDLE};
pub use error::ForwardError;
pub use events::{ForwardEvent, ForwardEvents, Side};
pub use forwarder::Forwarder;
pub use forwarding::{ConnectionInfo, Forwarding};
pub use service::{Allowed, ServiceInfo, ServiceName, ServiceTable, MAX_SERVICE_NAME_BYTES};
