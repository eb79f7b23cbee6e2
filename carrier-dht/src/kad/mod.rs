//! Kademlia: the routing table, iterative lookups and the storage rules. Uses `wire`.

pub(crate) mod lookup;
pub(crate) mod routing;
pub(crate) mod storage;
