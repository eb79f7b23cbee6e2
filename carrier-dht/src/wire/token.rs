//! An address token as carried on the wire (issued and checked by the guard).

use serde::{Deserialize, Serialize};

/// A token proving an address, as carried on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct Token(pub [u8; 16]);
