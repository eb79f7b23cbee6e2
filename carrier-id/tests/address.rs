//! `Address`: layout, checksum, nospam, text and serde encodings.

use carrier_id::{Address, AddressError, IdError, Keypair, Nospam};
use crc::{Crc, CRC_16_IBM_SDLC};
use proptest::prelude::*;

fn address() -> Address {
    Address::new(Keypair::from_seed(&[9; 32]).id(), Nospam(0x0102_0304))
}

#[test]
fn the_layout_is_id_then_big_endian_nospam_then_crc_16_ibm_sdlc() {
    let address = address();
    let bytes = address.to_bytes();
    assert_eq!(&bytes[..32], address.id().as_bytes());
    assert_eq!(&bytes[32..36], &[1, 2, 3, 4]);
    let checksum = Crc::<u16>::new(&CRC_16_IBM_SDLC).checksum(&bytes[..36]);
    assert_eq!(&bytes[36..], &checksum.to_be_bytes());
    assert_eq!(address.to_string(), bs58::encode(bytes).into_string());
}

#[test]
fn every_single_bit_flip_of_the_payload_fails_the_checksum() {
    let bytes = address().to_bytes();
    let mut flips = 0;
    for bit in 0..36 * 8 {
        let mut damaged = bytes;
        damaged[bit / 8] ^= 1 << (bit % 8);
        assert!(
            matches!(
                Address::from_bytes(&damaged),
                Err(AddressError::Checksum { .. })
            ),
            "bit {bit}"
        );
        let text = bs58::encode(damaged).into_string();
        assert!(
            matches!(text.parse::<Address>(), Err(AddressError::Checksum { .. })),
            "{bit}"
        );
        flips += 1;
    }
    assert_eq!(flips, 288);
}

#[test]
fn a_damaged_checksum_is_caught_too() {
    let bytes = address().to_bytes();
    for bit in 36 * 8..38 * 8 {
        let mut damaged = bytes;
        damaged[bit / 8] ^= 1 << (bit % 8);
        assert!(matches!(
            Address::from_bytes(&damaged),
            Err(AddressError::Checksum { .. })
        ));
    }
}

#[test]
fn a_new_nospam_gives_a_new_address_for_the_same_id() {
    let id = Keypair::from_seed(&[9; 32]).id();
    let old = Address::new(id, Nospam(1));
    let new = Address::new(id, Nospam(2));
    assert_ne!(old, new);
    assert_ne!(old.to_string(), new.to_string());
    assert_eq!(new.to_string().parse::<Address>().unwrap().id(), id);
    assert_eq!(
        new.to_string().parse::<Address>().unwrap().nospam(),
        Nospam(2)
    );
    assert_ne!(
        Nospam::random(),
        Nospam::random(),
        "two random nospams (1 in 2^32 flaky)"
    );
}

#[test]
fn a_checksummed_address_with_an_invalid_id_names_the_id_problem() {
    let mut bytes = [0u8; 38];
    bytes[0] = 1; // the identity point
    let checksum = Crc::<u16>::new(&CRC_16_IBM_SDLC).checksum(&bytes[..36]);
    bytes[36..].copy_from_slice(&checksum.to_be_bytes());
    assert_eq!(
        Address::from_bytes(&bytes),
        Err(AddressError::Id(IdError::SmallOrder))
    );
}

#[test]
fn text_and_bytes_of_the_wrong_shape_say_what_is_wrong() {
    assert_eq!(
        Address::from_bytes(&[0; 37]),
        Err(AddressError::WrongLength {
            expected: 38,
            actual: 37
        })
    );
    let text = address().to_string();
    let bad = format!("{}0", &text[..10]);
    assert_eq!(
        bad.parse::<Address>(),
        Err(AddressError::BadCharacter {
            character: '0',
            index: 10
        })
    );
    let id_only = Keypair::from_seed(&[9; 32]).id().to_string();
    assert_eq!(
        id_only.parse::<Address>(),
        Err(AddressError::WrongLength {
            expected: 38,
            actual: 32
        })
    );
    assert!(matches!(
        "z".repeat(53).parse::<Address>(),
        Err(AddressError::TooLong { .. })
    ));
}

#[test]
fn json_holds_the_base58_string_and_postcard_the_38_bytes() {
    let address = address();
    assert_eq!(
        serde_json::to_string(&address).unwrap(),
        format!("\"{address}\"")
    );
    assert_eq!(postcard::to_allocvec(&address).unwrap(), address.to_bytes());
    let mut damaged = address.to_bytes();
    damaged[3] ^= 1;
    assert!(postcard::from_bytes::<Address>(&damaged).is_err());
}

#[test]
fn debug_shows_base58() {
    let address = address();
    assert_eq!(format!("{address:?}"), format!("Address({address})"));
}

proptest! {
    #[test]
    fn every_address_round_trips_through_text_bytes_and_serde(
        seed in any::<[u8; 32]>(),
        nospam in any::<u32>(),
    ) {
        let address = Address::new(Keypair::from_seed(&seed).id(), Nospam(nospam));
        prop_assert_eq!(address.to_string().parse::<Address>(), Ok(address));
        prop_assert_eq!(Address::from_bytes(&address.to_bytes()), Ok(address));
        let binary = postcard::to_allocvec(&address).unwrap();
        prop_assert_eq!(postcard::from_bytes::<Address>(&binary).unwrap(), address);
        let json = serde_json::to_string(&address).unwrap();
        prop_assert_eq!(serde_json::from_str::<Address>(&json).unwrap(), address);
        let nospam_json = serde_json::to_string(&address.nospam()).unwrap();
        prop_assert_eq!(serde_json::from_str::<Nospam>(&nospam_json).unwrap(), Nospam(nospam));
    }

    #[test]
    fn arbitrary_text_is_parsed_or_refused_without_panicking(text in any::<String>()) {
        let _ = text.parse::<Address>();
        let _ = serde_json::from_str::<Address>(&text);
        let _ = serde_json::from_value::<Address>(serde_json::Value::String(text));
    }

    #[test]
    fn arbitrary_base58_text_is_parsed_or_refused_without_panicking(
        text in "[1-9A-HJ-NP-Za-km-z]{0,60}",
    ) {
        if let Ok(address) = text.parse::<Address>() {
            prop_assert_eq!(address.to_string(), text);
        }
    }

    #[test]
    fn arbitrary_bytes_are_parsed_or_refused_without_panicking(
        bytes in proptest::collection::vec(any::<u8>(), 0..80),
    ) {
        if let Ok(address) = Address::from_bytes(&bytes) {
            prop_assert_eq!(&address.to_bytes()[..], &bytes[..]);
        }
        let _ = postcard::from_bytes::<Address>(&bytes);
        let _ = postcard::from_bytes::<Nospam>(&bytes);
        let _ = serde_json::from_slice::<Address>(&bytes);
    }

    #[test]
    fn a_random_change_to_a_valid_address_is_caught(
        seed in any::<[u8; 32]>(),
        index in 0..38usize,
        change in 1..=255u8,
    ) {
        let address = Address::new(Keypair::from_seed(&seed).id(), Nospam(7));
        let mut damaged = address.to_bytes();
        damaged[index] ^= change;
        // A CRC-16 catches every burst of up to 16 bits, so any change within one byte.
        prop_assert!(Address::from_bytes(&damaged).is_err());
    }
}
