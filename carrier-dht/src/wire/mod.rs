//! Wire formats and the small types every other folder shares. Uses no other folder.

pub mod bounded;
pub(crate) mod entropy;
pub(crate) mod error;
pub(crate) mod key;
pub(crate) mod mailbox_item;
pub mod message;
pub mod packet;
pub(crate) mod path;
pub mod record;
pub(crate) mod time;
pub(crate) mod token;
