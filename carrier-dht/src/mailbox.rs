//! Mailboxes: sealed items left in the DHT for a recipient who may be offline.
//!
//! A **letter** (up to [`MAX_LETTER_BYTES`]) is cut into chunks, and each chunk, plus a
//! manifest, becomes one [`MailboxItem`]: signed by the sender, then sealed to the recipient
//! ([`carrier_id::seal_signed`], whose signature names the recipient), so a storer sees only
//! ciphertext of bounded size. Every part inside the seal also names the mailbox key it was
//! written for, so nobody can move an item into another mailbox or day unnoticed.
//!
//! All items of a recipient for one day live under one **mailbox key**,
//! `blake3(context ‖ recipient ID ‖ day ‖ kind)`: it moves every day, so storers and
//! observers cannot follow one mailbox for long, and a request mailbox also folds in the
//! recipient's nospam, so a new nospam moves it away from everyone who only had the old one.
//! Each item is named by its own hash ([`ItemId`]).
//!
//! Each item carries `blake3(d)`, where `d` ([`DeleteSecret`]) is a keyed hash of the item ID
//! under the sender-recipient pairwise key ([`carrier_id::Keypair::shared_key`]): the sender
//! and the recipient can compute it, nobody else can, and a storer deletes an item only when
//! shown it.

use std::collections::BTreeMap;

use carrier_id::{seal_signed_with_ephemeral, CarrierId, Context, CryptoError, Keypair, Nospam};
use serde::{Deserialize, Serialize};

use crate::bounded::{BoundedBytes, TooLong};
use crate::entropy::Entropy;
use crate::key::Key;
use crate::message::{decode_exact, encode};
use crate::record::MAX_VALUE_BYTES;

/// Version of the [`MailboxItem`] format; items of another version are refused.
pub const MAILBOX_ITEM_VERSION: u8 = 1;
/// Largest sealed part of an item: the DHT's value payload cap, so a store request with the
/// largest item still fits one datagram (`tests/frames_fit.rs` checks it).
pub const MAX_SEALED_ITEM_BYTES: usize = MAX_VALUE_BYTES;
/// Smallest sealed part: a signed box of an empty plaintext. Anything shorter cannot be an
/// item, so storers refuse it.
pub const MIN_SEALED_ITEM_BYTES: usize = carrier_id::SEALED_SIGNED_OVERHEAD;
/// Largest letter [`seal_letter`] accepts.
pub const MAX_LETTER_BYTES: usize = 64 * 1024;
/// Letter bytes per chunk: what is left of [`MAX_SEALED_ITEM_BYTES`] after the signed box's
/// overhead and the chunk's own framing (tag, mailbox key, letter ID, index, length), with a
/// few bytes to spare.
pub const MAX_CHUNK_BYTES: usize = 680;
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
    /// Its name: the hash of the sealed part.
    pub fn id(&self) -> ItemId {
        ItemId(*blake3::hash(&self.sealed).as_bytes())
    }

    /// Whether `secret` is the `d` this item was made with.
    pub fn deleted_by(&self, secret: &DeleteSecret) -> bool {
        secret.hash() == self.delete_hash
    }
}

/// What is inside an item's seal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Part {
    /// How to put the letter back together.
    Manifest {
        mailbox: Key,
        letter: [u8; 16],
        len: u32,
        chunks: u16,
        digest: [u8; 32],
    },
    /// A piece of the letter.
    Chunk {
        mailbox: Key,
        letter: [u8; 16],
        index: u16,
        data: BoundedBytes<MAX_CHUNK_BYTES>,
    },
}

/// Why a letter could not be sealed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LetterError {
    /// Over [`MAX_LETTER_BYTES`].
    #[error(transparent)]
    TooLarge(#[from] TooLong),
    /// The recipient's ID is not usable for sealing or key agreement.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// Seals `bytes` from `sender` to `recipient` into the items of mailbox `mailbox`: chunks,
/// then the manifest. Randomness (letter ID, ephemeral keys) comes from `entropy`, so a
/// simulation stays reproducible.
pub fn seal_letter(
    sender: &Keypair,
    recipient: &CarrierId,
    mailbox: Key,
    bytes: &[u8],
    expires_unix_secs: u64,
    entropy: &mut Entropy,
) -> Result<Vec<MailboxItem>, LetterError> {
    if bytes.len() > MAX_LETTER_BYTES {
        return Err(TooLong {
            len: bytes.len(),
            cap: MAX_LETTER_BYTES,
        }
        .into());
    }
    let mut letter = [0u8; 16];
    entropy.fill(&mut letter);
    let mut parts = Vec::new();
    for (index, data) in bytes.chunks(MAX_CHUNK_BYTES).enumerate() {
        parts.push(Part::Chunk {
            mailbox,
            letter,
            index: index as u16,
            data: BoundedBytes::from_slice(data)?,
        });
    }
    parts.push(Part::Manifest {
        mailbox,
        letter,
        len: bytes.len() as u32,
        chunks: parts.len() as u16,
        digest: *blake3::hash(bytes).as_bytes(),
    });
    let mut items = Vec::with_capacity(parts.len());
    for part in parts {
        let ephemeral = zeroize::Zeroizing::new(entropy.bytes32());
        let sealed = seal_signed_with_ephemeral(
            sender,
            recipient,
            MAILBOX_ITEM_CONTEXT,
            &encode(&part),
            &ephemeral,
        )?;
        let sealed = BoundedBytes::new(sealed)?;
        items.push(MailboxItem {
            version: MAILBOX_ITEM_VERSION,
            expires_unix_secs,
            delete_hash: [0; 32],
            sealed,
        });
    }
    let ids: Vec<ItemId> = items.iter().map(MailboxItem::id).collect();
    let secrets = DeleteSecret::derive_all(sender, recipient, &ids)?;
    for (item, secret) in items.iter_mut().zip(secrets) {
        item.delete_hash = secret.hash();
    }
    Ok(items)
}

/// A letter fetched from a mailbox, verified and put back together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Letter {
    /// Who signed it.
    pub sender: CarrierId,
    /// What they wrote.
    pub bytes: Vec<u8>,
    /// The mailbox it was in.
    pub mailbox: Key,
    /// Its items (chunks and manifest), for deleting it.
    pub items: Vec<ItemId>,
}

type Parts = (
    Option<(u32, u16, [u8; 32], ItemId)>,
    BTreeMap<u16, (Vec<u8>, ItemId)>,
);

/// Opens the items of mailbox `mailbox` that were sealed to `own`, and puts complete letters
/// back together. Items that do not open, were written for another mailbox, or belong to an
/// incomplete or inconsistent letter are left out.
pub fn open_letters(own: &Keypair, mailbox: Key, items: &[MailboxItem]) -> Vec<Letter> {
    let mut letters: BTreeMap<(CarrierId, [u8; 16]), Parts> = BTreeMap::new();
    for item in items {
        let Ok((sender, plain)) = own.open_signed(MAILBOX_ITEM_CONTEXT, &item.sealed) else {
            continue;
        };
        let Ok(part) = decode_exact::<Part>(&plain) else {
            continue;
        };
        match part {
            Part::Manifest {
                mailbox: written_for,
                letter,
                len,
                chunks,
                digest,
            } if written_for == mailbox => {
                let entry = letters.entry((sender, letter)).or_default();
                entry.0 = Some((len, chunks, digest, item.id()));
            }
            Part::Chunk {
                mailbox: written_for,
                letter,
                index,
                data,
            } if written_for == mailbox => {
                let entry = letters.entry((sender, letter)).or_default();
                entry.1.insert(index, (data.into_vec(), item.id()));
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for ((sender, _), (manifest, chunks)) in letters {
        let Some((len, count, digest, manifest_id)) = manifest else {
            continue;
        };
        // The length is the sender's claim: checked against the cap before anything is
        // allocated for it.
        if len as usize > MAX_LETTER_BYTES
            || chunks.len() != usize::from(count)
            || chunks.keys().copied().ne(0..count)
        {
            continue;
        }
        let mut bytes = Vec::with_capacity(len as usize);
        let mut ids = Vec::with_capacity(chunks.len() + 1);
        for (data, id) in chunks.into_values() {
            bytes.extend_from_slice(&data);
            ids.push(id);
        }
        if bytes.len() != len as usize || *blake3::hash(&bytes).as_bytes() != digest {
            continue;
        }
        ids.push(manifest_id);
        out.push(Letter {
            sender,
            bytes,
            mailbox,
            items: ids,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_letter_seals_into_items_only_its_recipient_opens() {
        let (alice, bob, eve) = (
            Keypair::from_seed(&[1; 32]),
            Keypair::from_seed(&[2; 32]),
            Keypair::from_seed(&[3; 32]),
        );
        let key = mailbox_key(&bob.id(), MailboxKind::Messages, 20_000);
        let mut entropy = Entropy::from_seed([9; 32]);
        let bytes: Vec<u8> = (0..MAX_LETTER_BYTES).map(|i| i as u8).collect();
        let items = seal_letter(&alice, &bob.id(), key, &bytes, 1, &mut entropy).expect("seals");
        assert_eq!(items.len(), MAX_LETTER_BYTES.div_ceil(MAX_CHUNK_BYTES) + 1);
        assert!(items
            .iter()
            .all(|i| i.sealed.len() <= MAX_SEALED_ITEM_BYTES));
        let letters = open_letters(&bob, key, &items);
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].sender, alice.id());
        assert_eq!(letters[0].bytes, bytes);
        assert!(open_letters(&eve, key, &items).is_empty());
        let other_day = mailbox_key(&bob.id(), MailboxKind::Messages, 20_001);
        assert!(open_letters(&bob, other_day, &items).is_empty());
        // Both ends derive the same d; a third party derives another.
        let id = items[0].id();
        let from_bob = DeleteSecret::derive(&bob, &alice.id(), &id).expect("valid");
        assert!(items[0].deleted_by(&from_bob));
        let from_eve = DeleteSecret::derive(&eve, &alice.id(), &id).expect("valid");
        assert!(!items[0].deleted_by(&from_eve));
    }

    #[test]
    fn a_manifest_claiming_more_than_the_cap_is_ignored() {
        let (alice, bob) = (Keypair::from_seed(&[1; 32]), Keypair::from_seed(&[2; 32]));
        let key = mailbox_key(&bob.id(), MailboxKind::Messages, 1);
        let manifest = Part::Manifest {
            mailbox: key,
            letter: [7; 16],
            len: u32::MAX,
            chunks: 0,
            digest: *blake3::hash(b"").as_bytes(),
        };
        let sealed =
            carrier_id::seal_signed(&alice, &bob.id(), MAILBOX_ITEM_CONTEXT, &encode(&manifest))
                .expect("seals");
        let item = MailboxItem {
            version: MAILBOX_ITEM_VERSION,
            expires_unix_secs: 1,
            delete_hash: [0; 32],
            sealed: BoundedBytes::new(sealed).expect("cap"),
        };
        assert!(open_letters(&bob, key, &[item]).is_empty());
    }

    #[test]
    fn a_new_nospam_moves_the_request_mailbox() {
        let bob = Keypair::from_seed(&[2; 32]).id();
        let a = mailbox_key(&bob, MailboxKind::Requests(Nospam(1)), 5);
        let b = mailbox_key(&bob, MailboxKind::Requests(Nospam(2)), 5);
        assert_ne!(a, b);
        assert_ne!(a, mailbox_key(&bob, MailboxKind::Messages, 5));
    }
}
