//! Signatures: context separation, strict verification, encodings.

use carrier_id::{Context, CryptoError, Keypair, Signature};
use proptest::prelude::*;

const PEER_RECORD: Context = Context::new("carrier/peer-record/v1");
const MAILBOX_ITEM: Context = Context::new("carrier/mailbox-item/v1");

#[test]
fn a_signature_under_one_context_fails_under_another() {
    let keypair = Keypair::from_seed(&[4; 32]);
    let signature = keypair.sign(PEER_RECORD, b"record");
    assert_eq!(
        keypair.id().verify(PEER_RECORD, b"record", &signature),
        Ok(())
    );
    assert_eq!(
        keypair.id().verify(MAILBOX_ITEM, b"record", &signature),
        Err(CryptoError::BadSignature)
    );
}

#[test]
fn moving_bytes_between_context_and_message_breaks_the_signature() {
    let keypair = Keypair::from_seed(&[4; 32]);
    let signature = keypair.sign(Context::new("carrier/a"), b"bc");
    assert_eq!(
        keypair
            .id()
            .verify(Context::new("carrier/ab"), b"c", &signature),
        Err(CryptoError::BadSignature)
    );
}

#[test]
fn a_signature_is_not_a_plain_ed25519_signature_of_the_message() {
    // The context prefix is really in what is signed: plain Ed25519 over the message alone
    // does not verify the signature.
    let keypair = Keypair::from_seed(&[4; 32]);
    let signature = keypair.sign(PEER_RECORD, b"record");
    let key = ed25519_dalek::VerifyingKey::from_bytes(keypair.id().as_bytes()).unwrap();
    let plain = ed25519_dalek::Signature::from_bytes(signature.as_bytes());
    assert!(key.verify_strict(b"record", &plain).is_err());
}

#[test]
fn another_key_or_message_fails() {
    let alice = Keypair::from_seed(&[4; 32]);
    let bob = Keypair::from_seed(&[5; 32]);
    let signature = alice.sign(PEER_RECORD, b"record");
    assert_eq!(
        bob.id().verify(PEER_RECORD, b"record", &signature),
        Err(CryptoError::BadSignature)
    );
    assert_eq!(
        alice.id().verify(PEER_RECORD, b"recorD", &signature),
        Err(CryptoError::BadSignature)
    );
}

#[test]
fn a_malleated_signature_is_rejected_by_strict_verification() {
    // Adding the group order L to s gives a signature that lax verifiers accept.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let keypair = Keypair::from_seed(&[4; 32]);
    let mut bytes = keypair.sign(PEER_RECORD, b"record").to_bytes();
    let mut carry = 0u16;
    for (s, l) in bytes[32..].iter_mut().zip(L) {
        let sum = u16::from(*s) + u16::from(l) + carry;
        *s = sum as u8;
        carry = sum >> 8;
    }
    let malleated = Signature::from_bytes(&bytes);
    assert_eq!(
        keypair.id().verify(PEER_RECORD, b"record", &malleated),
        Err(CryptoError::BadSignature)
    );
}

#[test]
fn a_signature_with_a_small_order_r_is_rejected() {
    let keypair = Keypair::from_seed(&[4; 32]);
    let mut bytes = [0u8; 64];
    bytes[0] = 1; // R = identity, s = 0
    let signature = Signature::from_bytes(&bytes);
    assert_eq!(
        keypair.id().verify(PEER_RECORD, b"record", &signature),
        Err(CryptoError::BadSignature)
    );
}

#[test]
fn a_slice_of_the_wrong_length_is_not_a_signature() {
    assert_eq!(
        Signature::from_slice(&[0; 63]),
        Err(CryptoError::SignatureLength { actual: 63 })
    );
    assert_eq!(
        Signature::from_slice(&[7; 64]),
        Ok(Signature::from_bytes(&[7; 64]))
    );
}

#[test]
fn postcard_holds_the_64_raw_bytes() {
    let signature = Keypair::from_seed(&[4; 32]).sign(PEER_RECORD, b"record");
    assert_eq!(
        postcard::to_allocvec(&signature).unwrap(),
        signature.as_bytes()
    );
}

proptest! {
    #[test]
    fn every_signature_verifies_and_round_trips(
        seed in any::<[u8; 32]>(),
        message in proptest::collection::vec(any::<u8>(), 0..200),
        flip in any::<prop::sample::Index>(),
    ) {
        let keypair = Keypair::from_seed(&seed);
        let signature = keypair.sign(PEER_RECORD, &message);
        prop_assert_eq!(keypair.id().verify(PEER_RECORD, &message, &signature), Ok(()));
        prop_assert!(keypair.id().verify(MAILBOX_ITEM, &message, &signature).is_err());

        let binary = postcard::to_allocvec(&signature).unwrap();
        prop_assert_eq!(postcard::from_bytes::<Signature>(&binary).unwrap(), signature);
        let json = serde_json::to_string(&signature).unwrap();
        prop_assert_eq!(serde_json::from_str::<Signature>(&json).unwrap(), signature);
        prop_assert_eq!(Signature::from_slice(&signature.to_bytes()), Ok(signature));

        let mut damaged = signature.to_bytes();
        let bit = flip.index(64 * 8);
        damaged[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(keypair
            .id()
            .verify(PEER_RECORD, &message, &Signature::from_bytes(&damaged))
            .is_err());
    }

    #[test]
    fn arbitrary_bytes_as_a_signature_are_refused_without_panicking(
        bytes in proptest::collection::vec(any::<u8>(), 0..100),
    ) {
        let id = Keypair::from_seed(&[4; 32]).id();
        if let Ok(signature) = Signature::from_slice(&bytes) {
            prop_assert!(id.verify(PEER_RECORD, b"record", &signature).is_err());
        }
        let _ = postcard::from_bytes::<Signature>(&bytes);
        let _ = serde_json::from_slice::<Signature>(&bytes);
    }

    #[test]
    fn arbitrary_json_as_a_signature_is_refused_without_panicking(text in any::<String>()) {
        let _ = serde_json::from_str::<Signature>(&text);
    }
}
