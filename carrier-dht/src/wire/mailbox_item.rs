//! The mailbox item format: what a storer holds and the wire carries, named by its hash,
//! deletable only with the secret its sender and recipient share; and the mailbox keys.
//! Letters are cut into these items one layer up.

use carrier_id::{CarrierId, Context, CryptoError, Keypair, Nospam};
use serde::{Deserialize, Serialize};

use crate::wire::bounded::BoundedBytes;
use crate::wire::key::Key;
use crate::wire::record::MAX_VALUE_BYTES;

/// Version of the [`MailboxItem`] format; items of another version are refused.
pub const MAILBOX_ITEM_VERSION: u8 = 1;
/// Largest sealed part of an item: the DHT's value payload cap, so a store request with the
/// largest item still fits one datagram (`tests/frames_fit.rs` checks it).
pub const MAX_SEALED_ITEM_BYTES: usize = MAX_VALUE_BYTES;
/// Smallest sealed part: a signed box of an empty plaintext. Anything shorter cannot be an
/// item, so storers refuse it.
pub const MIN_SEALED_ITEM_BYTES: usize = carrier_id::SEALED_SIGNED_OVERHEAD;
/// Most items in one fetch page (a decoding bound: the byte budget below binds first).
pub const MAX_PAGE_ITEMS: usize = 8;
/// Encoded bytes of the items of one fetch page, at most; a page holds at least one item,
/// and the largest item is under this, so the reply always fits one datagram.
pub const PAGE_BUDGET_BYTES: usize = 1_000;
/// Length of a mailbox day.
pub const DAY_SECS: u64 = 24 * 60 * 60;

/// Signature and seal context of mailbox items.
pub const MAILBOX_ITEM_CONTEXT: Context = Context::new("carrier/dht/mailbox-item/v1");
/// Pairwise-key context of delete secrets.
pub const MAILBOX_DELETE_CONTEXT: Context = Context::new("carrier/dht/mailbox-delete/v1");
/// blake3 `derive_key` context of mailbox keys.
const MAILBOX_KEY_CONTEXT: &str = "carrier/dht/mailbox-key/v1";

/// Which of a recipient's mailboxes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MailboxKind {
    /// Messages from anyone who knows the recipient's ID (friends, in the layers above).
    Messages,
    /// Friend requests, addressed to an [`carrier_id::Address`]: the nospam is folded into
    /// the key, so changing it stops requests from whoever had only the old address.
    Requests(Nospam),
}

/// The day (days since the Unix epoch) of a Unix time in seconds.
pub fn day_of(unix_secs: u64) -> u64 {
    unix_secs / DAY_SECS
}

/// The key of `recipient`'s mailbox of `kind` for `day`.
pub fn mailbox_key(recipient: &CarrierId, kind: MailboxKind, day: u64) -> Key {
    let mut hasher = blake3::Hasher::new_derive_key(MAILBOX_KEY_CONTEXT);
    hasher.update(recipient.as_bytes());
    hasher.update(&day.to_le_bytes());
    match kind {
        MailboxKind::Messages => {
            hasher.update(&[0]);
        }
        MailboxKind::Requests(nospam) => {
            hasher.update(&[1]);
            hasher.update(&nospam.to_bytes());
        }
    }
    Key(*hasher.finalize().as_bytes())
}

/// An item's name within its mailbox: the blake3 hash of its sealed part.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ItemId(pub [u8; 32]);

/// The secret `d` that deletes an item: only its sender and recipient can compute it.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteSecret(pub [u8; 32]);

impl std::fmt::Debug for DeleteSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeleteSecret(..)")
    }
}

impl DeleteSecret {
    /// `d` for item `id` between `own` and `peer` (the same from either side).
    pub fn derive(own: &Keypair, peer: &CarrierId, id: &ItemId) -> Result<Self, CryptoError> {
        Ok(Self::derive_all(own, peer, std::slice::from_ref(id))?[0])
    }

    /// `d` for each of `ids`, with one Diffie-Hellman for all of them.
    pub fn derive_all(
        own: &Keypair,
        peer: &CarrierId,
        ids: &[ItemId],
    ) -> Result<Vec<Self>, CryptoError> {
        let key = own.shared_key(MAILBOX_DELETE_CONTEXT, peer)?;
        Ok(ids
            .iter()
            .map(|id| Self(*blake3::keyed_hash(key.as_bytes(), &id.0).as_bytes()))
            .collect())
    }

    /// `blake3(d)`, what an item carries.
    pub fn hash(&self) -> [u8; 32] {
        *blake3::hash(&self.0).as_bytes()
    }
}

/// One item of a mailbox, as stored and carried on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxItem {
    /// Format version, [`MAILBOX_ITEM_VERSION`].
    pub version: u8,
    /// Unix time (seconds) after which storers drop it; at most their TTL ahead.
    pub expires_unix_secs: u64,
    /// `blake3(d)`: a storer deletes the item when shown `d`.
    pub delete_hash: [u8; 32],
    /// A part of a letter, signed by the sender and sealed to the recipient.
    pub sealed: BoundedBytes<MAX_SEALED_ITEM_BYTES>,
}

impl MailboxItem {
    /// When storers drop it, in Unix milliseconds (the unit the node's clock uses).
    pub fn expires_unix_ms(&self) -> u64 {
        self.expires_unix_secs.saturating_mul(1000)
    }

    /// Its name: the hash of the sealed part.
    pub fn id(&self) -> ItemId {
        ItemId(*blake3::hash(&self.sealed).as_bytes())
    }

    /// Whether `secret` is the `d` this item was made with.
    pub fn deleted_by(&self, secret: &DeleteSecret) -> bool {
        secret.hash() == self.delete_hash
    }
}
