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

use carrier_id::{seal_signed_with_ephemeral, CarrierId, CryptoError, Keypair};
use serde::{Deserialize, Serialize};

use crate::wire::bounded::{BoundedBytes, TooLong};
use crate::wire::entropy::Entropy;
use crate::wire::key::Key;
use crate::wire::mailbox_item::{
    DeleteSecret, ItemId, MailboxItem, MAILBOX_ITEM_CONTEXT, MAILBOX_ITEM_VERSION,
};
use crate::wire::message::{decode_exact, encode};

/// Largest letter [`seal_letter`] accepts.
pub const MAX_LETTER_BYTES: usize = 64 * 1024;
/// Letter bytes per chunk: what is left of [`crate::mailbox::MAX_SEALED_ITEM_BYTES`] after
/// the signed box's overhead and the chunk's own framing (tag, mailbox key, letter ID, index,
/// length), with a few bytes to spare.
pub const MAX_CHUNK_BYTES: usize = 680;

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
    use crate::wire::mailbox_item::{mailbox_key, MailboxKind, MAX_SEALED_ITEM_BYTES};
    use carrier_id::Nospam;

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
