//! `CarrierId`: parsing, validation, text and serde encodings.
// Fixture helpers outside `#[test]` functions panic on broken fixtures, as tests do.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use carrier_id::{CarrierId, IdError, Keypair};
use curve25519_dalek::constants::EIGHT_TORSION;
use proptest::prelude::*;

fn from_hex(text: &str) -> [u8; 32] {
    hex::decode(text).unwrap().try_into().unwrap()
}

/// The canonical encodings of the 8 points of small order (libsodium keeps the same list
/// as a blocklist).
const SMALL_ORDER_POINTS: [&str; 8] = [
    "0100000000000000000000000000000000000000000000000000000000000000", // identity, order 1
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // order 2
    "0000000000000000000000000000000000000000000000000000000000000000", // order 4
    "0000000000000000000000000000000000000000000000000000000000000080", // order 4
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05", // order 8
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85", // order 8
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a", // order 8
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa", // order 8
];

#[test]
fn the_small_order_list_is_the_eight_torsion_subgroup() {
    let listed: BTreeSet<[u8; 32]> = SMALL_ORDER_POINTS.iter().map(|hex| from_hex(hex)).collect();
    let torsion: BTreeSet<[u8; 32]> = EIGHT_TORSION.iter().map(|p| p.compress().0).collect();
    assert_eq!(listed, torsion);
}

#[test]
fn each_small_order_point_is_rejected_as_small_order() {
    for hex in SMALL_ORDER_POINTS {
        let bytes = from_hex(hex);
        assert_eq!(
            CarrierId::from_bytes(&bytes),
            Err(IdError::SmallOrder),
            "{hex}"
        );
        assert_eq!(
            CarrierId::from_slice(&bytes),
            Err(IdError::SmallOrder),
            "{hex}"
        );
        let text = bs58::encode(bytes).into_string();
        assert_eq!(text.parse::<CarrierId>(), Err(IdError::SmallOrder), "{hex}");
    }
}

#[test]
fn unreduced_y_coordinates_are_rejected_as_non_canonical() {
    // y = p + k for k = 0..=18 are all the values at or above p = 2^255 - 19, with either
    // sign bit. `ffff..ff7f` (y = 2^255 - 1) and `edff..ff7f` (y = p) are among them.
    for k in 0..=18u8 {
        for sign in [0x00, 0x80] {
            let mut bytes = [0xff; 32];
            bytes[0] = 0xed + k;
            bytes[31] = 0x7f | sign;
            assert_eq!(
                CarrierId::from_bytes(&bytes),
                Err(IdError::NonCanonical),
                "k={k}"
            );
        }
    }
    let all_ones = from_hex("ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f");
    assert_eq!(CarrierId::from_bytes(&all_ones), Err(IdError::NonCanonical));
}

#[test]
fn a_negative_zero_x_is_rejected_as_non_canonical() {
    // The identity and the order-2 point have x = 0; setting the sign bit encodes "-0".
    for hex in [
        "0100000000000000000000000000000000000000000000000000000000000080",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    ] {
        assert_eq!(
            CarrierId::from_bytes(&from_hex(hex)),
            Err(IdError::NonCanonical),
            "{hex}"
        );
    }
}

#[test]
fn a_y_without_a_curve_point_is_rejected_as_not_on_curve() {
    let mut found = 0;
    for y in 2u8..40 {
        let mut bytes = [0u8; 32];
        bytes[0] = y;
        if CarrierId::from_bytes(&bytes) == Err(IdError::NotOnCurve) {
            found += 1;
        }
    }
    // About half of all y values have no x; be sure the check was exercised.
    assert!(found > 5, "{found}");
}

#[test]
fn text_with_a_character_outside_the_alphabet_names_it() {
    let id = Keypair::from_seed(&[3; 32]).id().to_string();
    for bad in ['0', 'O', 'I', 'l', '+', '/', ' ', 'é'] {
        let text = format!("{}{bad}{}", &id[..5], &id[5..]);
        assert_eq!(
            text.parse::<CarrierId>(),
            Err(IdError::BadCharacter {
                character: bad,
                index: 5
            }),
            "{text}"
        );
    }
}

#[test]
fn text_of_the_wrong_length_is_rejected_with_its_decoded_length() {
    assert_eq!(
        "".parse::<CarrierId>(),
        Err(IdError::WrongLength {
            expected: 32,
            actual: 0
        })
    );
    let short = bs58::encode([5u8; 31]).into_string();
    assert_eq!(
        short.parse::<CarrierId>(),
        Err(IdError::WrongLength {
            expected: 32,
            actual: 31
        })
    );
    // 33 bytes can still fit in 44 characters when they start with a zero.
    let mut long = [5u8; 33];
    long[0] = 0;
    let long = bs58::encode(long).into_string();
    assert!(long.len() <= 44);
    assert_eq!(
        long.parse::<CarrierId>(),
        Err(IdError::WrongLength {
            expected: 32,
            actual: 33
        })
    );
}

#[test]
fn text_longer_than_any_id_is_rejected_before_decoding() {
    let text = "2".repeat(45);
    assert_eq!(
        text.parse::<CarrierId>(),
        Err(IdError::TooLong {
            max_chars: 44,
            actual_chars: 45
        })
    );
    // A megabyte of base58 is refused at once, not decoded.
    let huge = "z".repeat(1 << 20);
    assert!(matches!(
        huge.parse::<CarrierId>(),
        Err(IdError::TooLong { .. })
    ));
}

#[test]
fn slices_of_the_wrong_length_are_rejected() {
    let id = Keypair::from_seed(&[3; 32]).id();
    for len in [0, 1, 31, 33, 64] {
        let bytes = vec![id.as_bytes()[0]; len];
        assert_eq!(
            CarrierId::from_slice(&bytes),
            Err(IdError::WrongLength {
                expected: 32,
                actual: len
            })
        );
    }
}

#[test]
fn json_holds_the_base58_string_and_postcard_the_raw_bytes() {
    let id = Keypair::from_seed(&[3; 32]).id();
    assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{id}\""));
    assert_eq!(postcard::to_allocvec(&id).unwrap(), id.as_bytes());
}

#[test]
fn deserializing_validates_the_point() {
    let identity = from_hex(SMALL_ORDER_POINTS[0]);
    assert!(postcard::from_bytes::<CarrierId>(&identity).is_err());
    let json = format!("\"{}\"", bs58::encode(identity).into_string());
    assert!(serde_json::from_str::<CarrierId>(&json).is_err());
    assert!(postcard::from_bytes::<CarrierId>(&[1; 31]).is_err());
}

#[test]
fn debug_and_display_show_base58() {
    let id = Keypair::from_seed(&[3; 32]).id();
    assert_eq!(format!("{id:?}"), format!("CarrierId({id})"));
    assert_eq!(id.to_string(), bs58::encode(id.as_bytes()).into_string());
}

fn keypair() -> impl Strategy<Value = Keypair> {
    any::<[u8; 32]>().prop_map(|seed| Keypair::from_seed(&seed))
}

proptest! {
    #[test]
    fn every_id_round_trips_through_text_bytes_and_serde(keypair in keypair()) {
        let id = keypair.id();
        prop_assert_eq!(id.to_string().parse::<CarrierId>(), Ok(id));
        prop_assert_eq!(CarrierId::from_bytes(id.as_bytes()), Ok(id));
        prop_assert_eq!(CarrierId::from_slice(&id.to_bytes()), Ok(id));
        let binary = postcard::to_allocvec(&id).unwrap();
        prop_assert_eq!(postcard::from_bytes::<CarrierId>(&binary).unwrap(), id);
        let json = serde_json::to_vec(&id).unwrap();
        prop_assert_eq!(serde_json::from_slice::<CarrierId>(&json).unwrap(), id);
    }

    #[test]
    fn arbitrary_text_is_parsed_or_refused_without_panicking(text in any::<String>()) {
        let _ = text.parse::<CarrierId>();
        let _ = serde_json::from_str::<CarrierId>(&text);
        let _ = serde_json::from_value::<CarrierId>(serde_json::Value::String(text));
    }

    #[test]
    fn arbitrary_base58_text_is_parsed_or_refused_and_valid_ids_round_trip(
        text in "[1-9A-HJ-NP-Za-km-z]{0,50}",
    ) {
        if let Ok(id) = text.parse::<CarrierId>() {
            prop_assert_eq!(id.to_string(), text);
        }
    }

    #[test]
    fn arbitrary_bytes_are_parsed_or_refused_without_panicking(
        bytes in proptest::collection::vec(any::<u8>(), 0..80),
    ) {
        if let Ok(id) = CarrierId::from_slice(&bytes) {
            prop_assert_eq!(id.as_bytes().as_slice(), bytes.as_slice());
        }
        if let Ok(id) = postcard::from_bytes::<CarrierId>(&bytes) {
            prop_assert_eq!(id.as_bytes().as_slice(), &bytes[..32]);
        }
        let _ = serde_json::from_slice::<CarrierId>(&bytes);
    }

    #[test]
    fn arbitrary_32_bytes_are_valid_exactly_when_canonical_and_of_large_order(
        bytes in any::<[u8; 32]>(),
    ) {
        let point = curve25519_dalek::edwards::CompressedEdwardsY(bytes).decompress();
        let expected_valid = point
            .is_some_and(|p| p.compress().0 == bytes && !p.is_small_order());
        prop_assert_eq!(CarrierId::from_bytes(&bytes).is_ok(), expected_valid);
    }
}
