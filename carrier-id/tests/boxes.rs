//! Boxes: sealed, signed then sealed, and authenticated between two identities; key
//! agreement and what it binds.
// Fixture helpers outside `#[test]` functions panic on broken fixtures, as tests do.
#![allow(clippy::unwrap_used)]

use carrier_id::{
    seal, seal_signed, CarrierId, Context, CryptoError, Keypair, BOX_OVERHEAD, SEALED_OVERHEAD,
    SEALED_SIGNED_OVERHEAD,
};
use proptest::prelude::*;

const NOTE: Context = Context::new("carrier-id/test/note/v1");
const OTHER: Context = Context::new("carrier-id/test/other/v1");

fn alice() -> Keypair {
    Keypair::from_seed(&[1; 32])
}

fn bob() -> Keypair {
    Keypair::from_seed(&[2; 32])
}

/// The other Ed25519 key with the same X25519 key: the negated Edwards point, whose
/// encoding differs only in the sign bit of x.
fn negated(id: &CarrierId) -> CarrierId {
    let mut bytes = id.to_bytes();
    bytes[31] ^= 0x80;
    CarrierId::from_bytes(&bytes).unwrap()
}

#[test]
fn a_negated_id_shares_the_x25519_key() {
    let alice = alice().id();
    assert_ne!(negated(&alice), alice);
    assert_eq!(negated(&alice).x25519_public(), alice.x25519_public());
}

#[test]
fn both_sides_derive_the_same_pairwise_key() {
    let (alice, bob) = (alice(), bob());
    let ab = alice.shared_key(NOTE, &bob.id()).unwrap();
    let ba = bob.shared_key(NOTE, &alice.id()).unwrap();
    assert_eq!(ab.as_bytes(), ba.as_bytes());
    let other = alice.shared_key(OTHER, &bob.id()).unwrap();
    assert_ne!(ab.as_bytes(), other.as_bytes());
}

#[test]
fn the_pairwise_key_binds_both_ed25519_ids() {
    let (alice, bob) = (alice(), bob());
    let true_key = bob.shared_key(NOTE, &alice.id()).unwrap();
    let relabelled = bob.shared_key(NOTE, &negated(&alice.id())).unwrap();
    assert_ne!(true_key.as_bytes(), relabelled.as_bytes());
}

#[test]
fn a_box_relabelled_with_the_other_ed25519_key_of_its_sender_does_not_open() {
    let (alice, bob) = (alice(), bob());
    let boxed = alice.seal_to(&bob.id(), NOTE, b"from alice").unwrap();
    assert_eq!(
        bob.open_from(&alice.id(), NOTE, &boxed).unwrap(),
        b"from alice"
    );
    assert_eq!(
        bob.open_from(&negated(&alice.id()), NOTE, &boxed),
        Err(CryptoError::Decrypt)
    );
}

#[test]
fn a_box_does_not_open_for_a_third_party_another_context_or_its_own_sender() {
    let (alice, bob) = (alice(), bob());
    let carol = Keypair::from_seed(&[3; 32]);
    let boxed = alice.seal_to(&bob.id(), NOTE, b"secret").unwrap();
    assert_eq!(
        carol.open_from(&alice.id(), NOTE, &boxed),
        Err(CryptoError::Decrypt)
    );
    assert_eq!(
        bob.open_from(&alice.id(), OTHER, &boxed),
        Err(CryptoError::Decrypt)
    );
    // Reflected back to Alice, it is not a box from Bob: the direction is authenticated.
    assert_eq!(
        alice.open_from(&bob.id(), NOTE, &boxed),
        Err(CryptoError::Decrypt)
    );
}

#[test]
fn every_byte_of_every_box_is_authenticated() {
    let (alice, bob) = (alice(), bob());
    let boxed = alice.seal_to(&bob.id(), NOTE, b"abc").unwrap();
    let sealed = seal(&bob.id(), NOTE, b"abc").unwrap();
    let signed = seal_signed(&alice, &bob.id(), NOTE, b"abc").unwrap();
    for index in 0..boxed.len() {
        let mut damaged = boxed.clone();
        damaged[index] ^= 1;
        assert!(
            bob.open_from(&alice.id(), NOTE, &damaged).is_err(),
            "{index}"
        );
    }
    for index in 0..sealed.len() {
        let mut damaged = sealed.clone();
        damaged[index] ^= 1;
        assert!(bob.open_sealed(NOTE, &damaged).is_err(), "{index}");
    }
    for index in 0..signed.len() {
        let mut damaged = signed.clone();
        damaged[index] ^= 1;
        assert!(bob.open_signed(NOTE, &damaged).is_err(), "{index}");
    }
}

#[test]
fn a_sealed_box_binds_its_ephemeral_key() {
    // X25519 ignores the top bit of a public key, so flipping it leaves the Diffie-Hellman
    // output unchanged: only binding the ephemeral key's bytes into the key catches it.
    let bob = bob();
    let mut sealed = seal(&bob.id(), NOTE, b"abc").unwrap();
    sealed[31] ^= 0x80;
    assert_eq!(bob.open_sealed(NOTE, &sealed), Err(CryptoError::Decrypt));
}

#[test]
fn a_sealed_box_binds_its_recipients_ed25519_id() {
    // Sealed to the other Ed25519 key with Bob's X25519 key: Bob must not open it as his.
    let bob = bob();
    let sealed = seal(&negated(&bob.id()), NOTE, b"abc").unwrap();
    assert_eq!(bob.open_sealed(NOTE, &sealed), Err(CryptoError::Decrypt));
    let signed = seal_signed(&alice(), &negated(&bob.id()), NOTE, b"abc").unwrap();
    assert_eq!(bob.open_signed(NOTE, &signed), Err(CryptoError::Decrypt));
}

#[test]
fn a_sealed_box_opens_only_for_its_recipient_and_context() {
    let (alice, bob) = (alice(), bob());
    let sealed = seal(&bob.id(), NOTE, b"abc").unwrap();
    assert_eq!(bob.open_sealed(NOTE, &sealed).unwrap(), b"abc");
    assert_eq!(alice.open_sealed(NOTE, &sealed), Err(CryptoError::Decrypt));
    assert_eq!(bob.open_sealed(OTHER, &sealed), Err(CryptoError::Decrypt));
}

#[test]
fn anonymous_and_signed_sealed_boxes_do_not_open_as_each_other() {
    let (alice, bob) = (alice(), bob());
    let anonymous = seal(&bob.id(), NOTE, &[0; 200]).unwrap();
    let signed = seal_signed(&alice, &bob.id(), NOTE, b"abc").unwrap();
    assert_eq!(bob.open_signed(NOTE, &anonymous), Err(CryptoError::Decrypt));
    assert_eq!(bob.open_sealed(NOTE, &signed), Err(CryptoError::Decrypt));
}

#[test]
fn a_signed_box_under_another_context_does_not_open() {
    let (alice, bob) = (alice(), bob());
    let signed = seal_signed(&alice, &bob.id(), NOTE, b"abc").unwrap();
    assert_eq!(bob.open_signed(OTHER, &signed), Err(CryptoError::Decrypt));
}

#[test]
fn a_small_order_ephemeral_key_is_a_weak_key() {
    let bob = bob();
    // u = 0 and u = 1 are of small order: X25519 with them gives all zeros.
    for u in [0u8, 1] {
        let mut sealed = vec![0u8; SEALED_OVERHEAD + 3];
        sealed[0] = u;
        assert_eq!(
            bob.open_sealed(NOTE, &sealed),
            Err(CryptoError::WeakKey),
            "u = {u}"
        );
    }
}

#[test]
fn boxes_shorter_than_their_overhead_are_too_short() {
    let (alice, bob) = (alice(), bob());
    let short = [0u8; 10];
    assert_eq!(
        bob.open_from(&alice.id(), NOTE, &short),
        Err(CryptoError::TooShort {
            min: BOX_OVERHEAD,
            actual: 10
        })
    );
    assert_eq!(
        bob.open_sealed(NOTE, &short),
        Err(CryptoError::TooShort {
            min: SEALED_OVERHEAD,
            actual: 10
        })
    );
    assert_eq!(
        bob.open_signed(NOTE, &[0; SEALED_SIGNED_OVERHEAD - 1]),
        Err(CryptoError::TooShort {
            min: SEALED_SIGNED_OVERHEAD,
            actual: SEALED_SIGNED_OVERHEAD - 1
        })
    );
}

#[test]
fn random_nonces_and_ephemeral_keys_make_each_box_unique() {
    let (alice, bob) = (alice(), bob());
    assert_ne!(
        seal(&bob.id(), NOTE, b"a").unwrap(),
        seal(&bob.id(), NOTE, b"a").unwrap()
    );
    assert_ne!(
        alice.seal_to(&bob.id(), NOTE, b"a").unwrap(),
        alice.seal_to(&bob.id(), NOTE, b"a").unwrap()
    );
}

fn plaintext() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..300)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_box_round_trips(
        sender_seed in any::<[u8; 32]>(),
        recipient_seed in any::<[u8; 32]>(),
        plaintext in plaintext(),
    ) {
        let sender = Keypair::from_seed(&sender_seed);
        let recipient = Keypair::from_seed(&recipient_seed);

        let boxed = sender.seal_to(&recipient.id(), NOTE, &plaintext).unwrap();
        prop_assert_eq!(boxed.len(), plaintext.len() + BOX_OVERHEAD);
        prop_assert_eq!(recipient.open_from(&sender.id(), NOTE, &boxed).unwrap(), plaintext.clone());

        let sealed = seal(&recipient.id(), NOTE, &plaintext).unwrap();
        prop_assert_eq!(sealed.len(), plaintext.len() + SEALED_OVERHEAD);
        prop_assert_eq!(recipient.open_sealed(NOTE, &sealed).unwrap(), plaintext.clone());

        let signed = seal_signed(&sender, &recipient.id(), NOTE, &plaintext).unwrap();
        prop_assert_eq!(signed.len(), plaintext.len() + SEALED_SIGNED_OVERHEAD);
        prop_assert_eq!(
            recipient.open_signed(NOTE, &signed).unwrap(),
            (sender.id(), plaintext)
        );
    }

    #[test]
    fn arbitrary_bytes_into_every_opener_give_an_error_without_panicking(
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let (alice, bob) = (alice(), bob());
        prop_assert!(bob.open_from(&alice.id(), NOTE, &bytes).is_err());
        prop_assert!(bob.open_sealed(NOTE, &bytes).is_err());
        prop_assert!(bob.open_signed(NOTE, &bytes).is_err());
    }
}
