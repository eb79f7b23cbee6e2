//! The services a node offers its friends: names ([`ServiceName`], also the channels'
//! cookie), and the table of services with who may use each ([`ServiceTable`]); rules only,
//! no I/O.

mod name;
mod table;

pub use name::{ServiceName, MAX_SERVICE_NAME_BYTES};
pub use table::{Allowed, ServiceInfo, ServiceTable};
