//! What can stop a [`Carrier`](super::Carrier) node from starting.

use std::path::PathBuf;

/// Why [`CarrierBuilder::start`](super::CarrierBuilder::start) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CarrierError {
    /// No data directory was given and none could be derived from the environment
    /// (`CARRIER_DATA`, `XDG_DATA_HOME`, `HOME`).
    #[error(
        "no data directory: set one with CarrierBuilder::data_dir, or CARRIER_DATA, \
         XDG_DATA_HOME or HOME in the environment"
    )]
    NoDataDir,
    /// The DHT node could not start (its socket, key file or database).
    #[error("cannot start the DHT node on {dir}: {source}")]
    Dht {
        /// The data directory.
        dir: PathBuf,
        /// What failed.
        #[source]
        source: crate::dht::DhtError,
    },
    /// The friend layer could not start.
    #[error("cannot start the friend layer: {0}")]
    Friends(#[source] crate::friend::FriendError),
    /// The messenger could not start.
    #[error("cannot start the messenger: {0}")]
    Messages(#[source] crate::msg::MsgError),
    /// The sessions layer could not start.
    #[error("cannot start the sessions layer: {0}")]
    Sessions(#[source] crate::stream::StreamError),
    /// The forwarder could not start (something else handles its session bundle).
    #[error("cannot start the forwarder: {0}")]
    Forward(#[source] crate::forward::ForwardError),
    /// The user information given to the builder could not be set.
    #[error("cannot set the user information: {0}")]
    UserInfo(#[source] crate::friend::FriendError),
    /// An extension's invites could not be taken (another part of the node takes them).
    #[error("cannot take the invites of this extension: {0}")]
    Invites(#[source] crate::msg::invite::InviteError),
    /// The node was shut down.
    #[error("the node is shut down")]
    ShutDown,
}
