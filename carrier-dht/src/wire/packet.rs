//! The DHT packet: a clear header, then the message sealed with XChaCha20-Poly1305 under the
//! key of the (sender, receiver) pair, the header as associated data.
//!
//! ```text
//! +-------+-------+------------------+-------------+------------------------------+
//! | class | flags | sender ID (32)   | nonce (24)  | ciphertext ‖ Poly1305 tag    |
//! +-------+-------+------------------+-------------+------------------------------+
//! ```
//!
//! `class` is below 0x40 (QUIC packets on the shared socket have bit 0x40 set) and names the
//! packet format version. `flags` bit 0 says the sender is a client.

use carrier_id::{CarrierId, Context, Keypair};
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::wire::error::WireError;
use crate::wire::key::Key;

/// First byte of a version-1 DHT packet.
pub const DHT_CLASS_V1: u8 = 0x01;
/// Largest datagram the DHT sends or accepts.
pub const MAX_DATAGRAM_BYTES: usize = 1232;
/// Bytes of the clear header: class, flags, sender ID, nonce.
pub const HEADER_BYTES: usize = 1 + 1 + 32 + NONCE_BYTES;
/// Bytes of the random nonce.
pub const NONCE_BYTES: usize = 24;
/// Bytes of the authentication tag.
pub const TAG_BYTES: usize = 16;
/// Header plus tag: what a packet adds to its message.
pub const PACKET_OVERHEAD_BYTES: usize = HEADER_BYTES + TAG_BYTES;
/// Flag bit: the sender is a client (not known reachable), so it must not enter routing tables.
pub const FLAG_CLIENT: u8 = 0x01;
/// Key-derivation context of DHT pair keys.
pub const DHT_PACKET_CONTEXT: Context = Context::new("carrier/dht/packet/v1");

/// The clear header of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Class and version byte.
    pub class: u8,
    /// Flag bits.
    pub flags: u8,
    /// The sender's node key, in clear so the receiver can find the pair key.
    pub sender: Key,
    /// Random nonce.
    pub nonce: [u8; NONCE_BYTES],
}

impl Header {
    /// Whether the sender says it is a client.
    pub fn is_client(&self) -> bool {
        self.flags & FLAG_CLIENT != 0
    }

    fn to_bytes(self) -> [u8; HEADER_BYTES] {
        let mut out = [0u8; HEADER_BYTES];
        out[0] = self.class;
        out[1] = self.flags;
        out[2..34].copy_from_slice(&self.sender.0);
        out[34..].copy_from_slice(&self.nonce);
        out
    }

    /// Splits a datagram into its header and sealed part, checking sizes, class and flags.
    /// Nothing here costs more than a few comparisons, so it runs before any limit.
    pub fn parse(datagram: &[u8]) -> Result<(Header, &[u8]), WireError> {
        if datagram.len() > MAX_DATAGRAM_BYTES {
            return Err(WireError::Oversized(datagram.len()));
        }
        if datagram.len() < PACKET_OVERHEAD_BYTES + 1 {
            return Err(WireError::TooShort(datagram.len()));
        }
        let class = datagram[0];
        if class != DHT_CLASS_V1 {
            return Err(WireError::Class(class));
        }
        let flags = datagram[1];
        if flags & !FLAG_CLIENT != 0 {
            return Err(WireError::Flags(flags));
        }
        let mut sender = [0u8; 32];
        sender.copy_from_slice(&datagram[2..34]);
        let mut nonce = [0u8; NONCE_BYTES];
        nonce.copy_from_slice(&datagram[34..HEADER_BYTES]);
        let header = Header {
            class,
            flags,
            sender: Key(sender),
            nonce,
        };
        Ok((header, &datagram[HEADER_BYTES..]))
    }
}

/// The symmetric key of one (local node, peer) pair. Zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct PairKey([u8; 32]);

impl std::fmt::Debug for PairKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PairKey(..)")
    }
}

/// How pair keys are agreed: **the one seam where the simulation swaps real crypto for a cheap
/// stand-in.**
///
/// `Real` derives the pair key with X25519 and both Carrier IDs (`Keypair::shared_key` in the
/// DHT packet context) after validating the peer's ID as a curve point. That costs tens of
/// microseconds per new peer, which a 10,000-node simulation with millions of pairs cannot
/// afford, so `Simulated` derives it by hashing the two IDs instead. Everything else (packet
/// layout, XChaCha20-Poly1305 sealing, nonces, every check) is the same code on both paths, and
/// the tests that use `Real` show the real key agreement works through the same core.
/// `Simulated` gives no security at all: anyone can compute its keys, so it exists only with
/// the cargo feature `sim`, and a production build cannot name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyAgreement {
    /// X25519 with both Ed25519 IDs bound in (production).
    Real,
    /// Hash of the two IDs (simulations only; insecure; cargo feature `sim`).
    #[cfg(feature = "sim")]
    Simulated,
}

impl KeyAgreement {
    /// The pair key between `local` and the peer whose key is `peer`, or an error when the
    /// peer's ID is not a valid Carrier ID or the agreement is weak.
    pub fn pair_key(&self, local: &Keypair, peer: &Key) -> Result<PairKey, WireError> {
        match self {
            KeyAgreement::Real => {
                let id = CarrierId::from_bytes(&peer.0).map_err(|_| WireError::BadSender)?;
                let shared = local
                    .shared_key(DHT_PACKET_CONTEXT, &id)
                    .map_err(|_| WireError::BadSender)?;
                Ok(PairKey(*shared.as_bytes()))
            }
            #[cfg(feature = "sim")]
            KeyAgreement::Simulated => {
                let own = local.id().to_bytes();
                let (a, b) = if own <= peer.0 {
                    (own, peer.0)
                } else {
                    (peer.0, own)
                };
                let mut hasher = blake3::Hasher::new_derive_key("carrier/dht/simulated-pair-key");
                hasher.update(&a);
                hasher.update(&b);
                Ok(PairKey(*hasher.finalize().as_bytes()))
            }
        }
    }
}

/// Seals `message` into a packet from `sender` under `key`.
pub fn seal(
    key: &PairKey,
    sender: Key,
    client: bool,
    nonce: [u8; NONCE_BYTES],
    message: &[u8],
) -> Vec<u8> {
    let header = Header {
        class: DHT_CLASS_V1,
        flags: if client { FLAG_CLIENT } else { 0 },
        sender,
        nonce,
    }
    .to_bytes();
    let mut out = Vec::with_capacity(HEADER_BYTES + message.len() + TAG_BYTES);
    out.extend_from_slice(&header);
    out.extend_from_slice(message);
    let cipher = XChaCha20Poly1305::new((&key.0).into());
    let (aad, body) = out.split_at_mut(HEADER_BYTES);
    // Encryption fails only for messages beyond the cipher's ~256 GiB limit.
    if let Ok(tag) = cipher.encrypt_in_place_detached(XNonce::from_slice(&nonce), aad, body) {
        out.extend_from_slice(&tag);
    }
    out
}

/// Opens the sealed part of a packet whose header was parsed from the same datagram.
pub fn open(key: &PairKey, datagram: &[u8], header: &Header) -> Result<Vec<u8>, WireError> {
    let sealed = &datagram[HEADER_BYTES..];
    if sealed.len() < TAG_BYTES {
        return Err(WireError::TooShort(datagram.len()));
    }
    let (body, tag) = sealed.split_at(sealed.len() - TAG_BYTES);
    let mut plain = body.to_vec();
    let cipher = XChaCha20Poly1305::new((&key.0).into());
    cipher
        .decrypt_in_place_detached(
            XNonce::from_slice(&header.nonce),
            &datagram[..HEADER_BYTES],
            &mut plain,
            Tag::from_slice(tag),
        )
        .map_err(|_| WireError::Unauthenticated)?;
    Ok(plain)
}
