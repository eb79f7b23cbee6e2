//! What the DHT stores: immutable values, signed mutable values and signed peer records.

use std::net::SocketAddr;

use carrier_id::{CarrierId, Context, Keypair, Signature};
use serde::{Deserialize, Serialize};

use crate::wire::bounded::{BoundedBytes, BoundedVec, TooLong};
use crate::wire::error::RecordError;
use crate::wire::key::Key;

/// Signature context of peer records.
pub const PEER_RECORD_CONTEXT: Context = Context::new("carrier/peer-record/v1");
/// Signature context of mutable values.
pub const MUTABLE_VALUE_CONTEXT: Context = Context::new("carrier/dht/mutable-value/v1");

/// Version of the signed record formats below; a record of another version is refused.
pub const RECORD_VERSION: u8 = 1;

/// Largest value payload in bytes. Derived from the 1232-byte datagram budget: a `find_value`
/// reply or a `store_value` request carrying a mutable value with the longest salt, plus the
/// packet header, tag and message framing, must still fit (the `largest_frames_fit` test
/// checks it).
pub const MAX_VALUE_BYTES: usize = 900;
/// Longest salt of a mutable value.
pub const MAX_SALT_BYTES: usize = 64;
/// Most addresses a peer record lists.
pub const MAX_PEER_ADDRS: usize = 8;
/// Most relays a peer record lists.
pub const MAX_PEER_RELAYS: usize = 3;

/// A value whose key is the blake3 hash of its bytes: anyone can store it, nobody can change it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImmutableValue {
    /// The payload.
    pub data: BoundedBytes<MAX_VALUE_BYTES>,
}

impl ImmutableValue {
    /// Wraps `data`, refusing more than [`MAX_VALUE_BYTES`].
    pub fn new(data: &[u8]) -> Result<Self, TooLong> {
        Ok(Self {
            data: BoundedBytes::from_slice(data)?,
        })
    }

    /// Its key: blake3 of the data.
    pub fn key(&self) -> Key {
        Key::of_immutable(&self.data)
    }
}

/// A value only its owner can write: signed, keyed by owner and salt, with a sequence number
/// that only grows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MutableValue {
    /// Format version, [`RECORD_VERSION`].
    pub version: u8,
    /// The owner, whose signature it carries.
    pub owner: CarrierId,
    /// Tells apart the owner's values.
    pub salt: BoundedBytes<MAX_SALT_BYTES>,
    /// Sequence number; a storer keeps the highest it has seen.
    pub seq: u64,
    /// The payload.
    pub data: BoundedBytes<MAX_VALUE_BYTES>,
    /// The owner's signature over everything above, in [`MUTABLE_VALUE_CONTEXT`].
    pub signature: Signature,
}

#[derive(Serialize)]
struct MutableSigned<'a> {
    version: u8,
    owner: &'a CarrierId,
    salt: &'a BoundedBytes<MAX_SALT_BYTES>,
    seq: u64,
    data: &'a BoundedBytes<MAX_VALUE_BYTES>,
}

impl MutableValue {
    /// Signs a new version of the value `(owner, salt)`.
    pub fn sign(owner: &Keypair, salt: &[u8], seq: u64, data: &[u8]) -> Result<Self, TooLong> {
        let salt = BoundedBytes::from_slice(salt)?;
        let data = BoundedBytes::from_slice(data)?;
        let id = owner.id();
        let message = signed_bytes(&MutableSigned {
            version: RECORD_VERSION,
            owner: &id,
            salt: &salt,
            seq,
            data: &data,
        });
        let signature = owner.sign(MUTABLE_VALUE_CONTEXT, &message);
        Ok(Self {
            version: RECORD_VERSION,
            owner: id,
            salt,
            seq,
            data,
            signature,
        })
    }

    /// Its key, from owner and salt.
    pub fn key(&self) -> Key {
        Key::of_mutable(&self.owner, &self.salt)
    }

    /// Checks the version and the owner's signature.
    pub fn verify(&self) -> Result<(), RecordError> {
        if self.version != RECORD_VERSION {
            return Err(RecordError::Version(self.version));
        }
        let message = signed_bytes(&MutableSigned {
            version: self.version,
            owner: &self.owner,
            salt: &self.salt,
            seq: self.seq,
            data: &self.data,
        });
        self.owner
            .verify(MUTABLE_VALUE_CONTEXT, &message, &self.signature)
            .map_err(|_| RecordError::BadSignature)
    }
}

/// A value as stored and carried on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Value {
    /// Keyed by its hash.
    Immutable(ImmutableValue),
    /// Keyed by owner and salt, signed.
    Mutable(MutableValue),
}

impl Value {
    /// The key it is stored under.
    pub fn key(&self) -> Key {
        match self {
            Value::Immutable(v) => v.key(),
            Value::Mutable(v) => v.key(),
        }
    }

    /// The payload.
    pub fn data(&self) -> &[u8] {
        match self {
            Value::Immutable(v) => &v.data,
            Value::Mutable(v) => &v.data,
        }
    }

    /// Sequence number (0 for immutable values).
    pub fn seq(&self) -> u64 {
        match self {
            Value::Immutable(_) => 0,
            Value::Mutable(v) => v.seq,
        }
    }

    /// Checks that the value is what its key claims: the hash for immutable values, the
    /// owner's signature for mutable ones.
    pub fn verify_for(&self, key: &Key) -> Result<(), RecordError> {
        if self.key() != *key {
            return Err(RecordError::WrongKey);
        }
        match self {
            Value::Immutable(_) => Ok(()),
            Value::Mutable(v) => v.verify(),
        }
    }
}

/// A relay through which a NATed node can be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayHint {
    /// The relay's node key (its Carrier ID bytes).
    pub id: Key,
    /// Where the relay listens.
    pub addr: SocketAddr,
}

/// A node's own signed statement of where it can be reached. Stored under the node's key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRecord {
    /// Format version, [`RECORD_VERSION`].
    pub version: u8,
    /// The node the record is about, whose signature it carries.
    pub id: CarrierId,
    /// Sequence number; a storer keeps the highest it has seen.
    pub seq: u64,
    /// Unix time (seconds) after which the record must not be used.
    pub expires_unix_secs: u64,
    /// Direct addresses.
    pub addrs: BoundedVec<SocketAddr, MAX_PEER_ADDRS>,
    /// Relays that forward to the node.
    pub relays: BoundedVec<RelayHint, MAX_PEER_RELAYS>,
    /// The node's signature over everything above, in [`PEER_RECORD_CONTEXT`].
    pub signature: Signature,
}

#[derive(Serialize)]
struct PeerSigned<'a> {
    version: u8,
    id: &'a CarrierId,
    seq: u64,
    expires_unix_secs: u64,
    addrs: &'a BoundedVec<SocketAddr, MAX_PEER_ADDRS>,
    relays: &'a BoundedVec<RelayHint, MAX_PEER_RELAYS>,
}

impl PeerRecord {
    /// When it expires, in Unix milliseconds (the unit the node's clock uses).
    pub fn expires_unix_ms(&self) -> u64 {
        self.expires_unix_secs.saturating_mul(1000)
    }

    /// Signs a record for `keypair`'s node.
    pub fn sign(
        keypair: &Keypair,
        seq: u64,
        expires_unix_secs: u64,
        addrs: Vec<SocketAddr>,
        relays: Vec<RelayHint>,
    ) -> Result<Self, TooLong> {
        let addrs = BoundedVec::new(addrs)?;
        let relays = BoundedVec::new(relays)?;
        let id = keypair.id();
        let message = signed_bytes(&PeerSigned {
            version: RECORD_VERSION,
            id: &id,
            seq,
            expires_unix_secs,
            addrs: &addrs,
            relays: &relays,
        });
        let signature = keypair.sign(PEER_RECORD_CONTEXT, &message);
        Ok(Self {
            version: RECORD_VERSION,
            id,
            seq,
            expires_unix_secs,
            addrs,
            relays,
            signature,
        })
    }

    /// The key it is stored under: its node's key.
    pub fn key(&self) -> Key {
        Key::of_node(&self.id)
    }

    /// Checks the version and the signature.
    pub fn verify(&self) -> Result<(), RecordError> {
        if self.version != RECORD_VERSION {
            return Err(RecordError::Version(self.version));
        }
        let message = signed_bytes(&PeerSigned {
            version: self.version,
            id: &self.id,
            seq: self.seq,
            expires_unix_secs: self.expires_unix_secs,
            addrs: &self.addrs,
            relays: &self.relays,
        });
        self.id
            .verify(PEER_RECORD_CONTEXT, &message, &self.signature)
            .map_err(|_| RecordError::BadSignature)
    }
}

/// postcard of the unsigned fields: deterministic, and the same bytes on both sides.
fn signed_bytes<T: Serialize>(body: &T) -> Vec<u8> {
    // Serializing these plain structs into a Vec cannot fail: no map with non-string keys,
    // no custom serializer that errors.
    postcard::to_allocvec(body).unwrap_or_default()
}
