//! Test vectors: published ones (libsodium, RFC 8032) and Carrier's own, committed in
//! `tests/vectors.json`, so that any change to a format or a derivation is noticed.
//!
//! Carrier's vectors are recomputed from the fixed inputs below and compared with the
//! committed file. After an intended format change, regenerate the file with
//! `CARRIER_ID_WRITE_VECTORS=1 cargo test -p carrier-id --test vectors` and review the diff.
// Fixture helpers outside `#[test]` functions panic on broken fixtures, as tests do.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use carrier_id::{
    key_file, seal_signed_with_ephemeral, seal_with_ephemeral, Address, CarrierId, Context,
    Keypair, Nospam,
};
use serde_json::{json, Value};

fn from_hex<const N: usize>(text: &str) -> [u8; N] {
    hex::decode(text).unwrap().try_into().unwrap()
}

/// libsodium `test/default/ed25519_convert.c` (jedisct1/libsodium): this seed, through
/// `crypto_sign_ed25519_seed_keypair`, `crypto_sign_ed25519_pk_to_curve25519` and
/// `crypto_sign_ed25519_sk_to_curve25519`, prints these Curve25519 keys
/// (`test/default/ed25519_convert.exp`).
const LIBSODIUM_SEED: &str = "421151a459faeade3d247115f94aedae42318124095afabe4d1451a559faedee";
const LIBSODIUM_CURVE25519_PK: &str =
    "f1814f0e8ff1043d8a44d25babff3cedcae6c22c3edaa48f857ae70de2baae50";
const LIBSODIUM_CURVE25519_SK: &str =
    "8052030376d47112be7f73ed7a019293dd12ad910b654455798b4667d73de166";

#[test]
fn x25519_keys_match_libsodiums_ed25519_conversion_vectors() {
    let keypair = Keypair::from_seed(&from_hex(LIBSODIUM_SEED));
    assert_eq!(
        hex::encode(keypair.id().x25519_public()),
        LIBSODIUM_CURVE25519_PK
    );
    assert_eq!(
        hex::encode(keypair.x25519_secret()),
        LIBSODIUM_CURVE25519_SK
    );
}

#[test]
fn the_x25519_secret_and_public_keys_belong_together() {
    for seed in [[0u8; 32], [0xff; 32], from_hex(LIBSODIUM_SEED)] {
        let keypair = Keypair::from_seed(&seed);
        let secret = x25519_dalek::StaticSecret::from(keypair.x25519_secret());
        let public = x25519_dalek::PublicKey::from(&secret);
        assert_eq!(public.to_bytes(), keypair.id().x25519_public());
    }
}

#[test]
fn ids_match_rfc_8032_public_keys() {
    // RFC 8032 section 7.1, TEST 1 and TEST 2: secret key (seed) and public key.
    for (seed, public) in [
        (
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        ),
        (
            "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        ),
    ] {
        assert_eq!(
            hex::encode(Keypair::from_seed(&from_hex(seed)).id().as_bytes()),
            public
        );
    }
}

const SEEDS: [&str; 4] = [
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20",
    LIBSODIUM_SEED,
    "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
];
const PEER_RECORD: Context = Context::new("carrier/peer-record/v1");
const FRIEND_REQUEST: Context = Context::new("carrier/friend-request/v1");
const EPHEMERAL: &str = "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf";
const NONCE: &str = "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7";

fn keypair(index: usize) -> Keypair {
    Keypair::from_seed(&from_hex(SEEDS[index]))
}

/// Every vector, computed from the fixed inputs above.
fn compute_vectors() -> Value {
    let ids: Vec<Value> = (0..SEEDS.len())
        .map(|i| {
            let keypair = keypair(i);
            json!({
                "seed": SEEDS[i],
                "id": hex::encode(keypair.id().as_bytes()),
                "id_base58": keypair.id().to_string(),
                "x25519_public": hex::encode(keypair.id().x25519_public()),
                "x25519_secret": hex::encode(keypair.x25519_secret()),
            })
        })
        .collect();
    let addresses: Vec<Value> = [(0, 0u32), (1, 0x0102_0304), (2, u32::MAX)]
        .into_iter()
        .map(|(i, nospam)| {
            let address = Address::new(keypair(i).id(), Nospam(nospam));
            json!({
                "seed": SEEDS[i],
                "nospam": nospam,
                "address": hex::encode(address.to_bytes()),
                "address_base58": address.to_string(),
            })
        })
        .collect();
    let signatures: Vec<Value> = [
        (0, PEER_RECORD, ""),
        (1, PEER_RECORD, "record"),
        (1, FRIEND_REQUEST, "record"),
    ]
    .into_iter()
    .map(|(i, context, message)| {
        json!({
            "seed": SEEDS[i],
            "context": context.name(),
            "message": message,
            "signature": hex::encode(keypair(i).sign(context, message.as_bytes()).to_bytes()),
        })
    })
    .collect();
    let shared_keys: Vec<Value> = [
        (0, 1, PEER_RECORD),
        (1, 2, PEER_RECORD),
        (1, 2, FRIEND_REQUEST),
    ]
    .into_iter()
    .map(|(a, b, context)| {
        let key = keypair(a).shared_key(context, &keypair(b).id()).unwrap();
        json!({
            "seed_a": SEEDS[a],
            "seed_b": SEEDS[b],
            "context": context.name(),
            "key": hex::encode(key.as_bytes()),
        })
    })
    .collect();
    let ephemeral = from_hex(EPHEMERAL);
    let plaintext = "hello, Carrier";
    let recipient = keypair(2).id();
    let sealed =
        seal_with_ephemeral(&recipient, FRIEND_REQUEST, plaintext.as_bytes(), &ephemeral).unwrap();
    let sealed_signed = seal_signed_with_ephemeral(
        &keypair(1),
        &recipient,
        FRIEND_REQUEST,
        plaintext.as_bytes(),
        &ephemeral,
    )
    .unwrap();
    let boxed = keypair(1)
        .seal_to_with_nonce(
            &recipient,
            FRIEND_REQUEST,
            plaintext.as_bytes(),
            &from_hex(NONCE),
        )
        .unwrap();
    let key_file_bytes = {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.key");
        key_file::save(&path, &keypair(1)).unwrap();
        std::fs::read(path).unwrap()
    };
    json!({
        "ids": ids,
        "addresses": addresses,
        "signatures": signatures,
        "shared_keys": shared_keys,
        "sealed": {
            "recipient_seed": SEEDS[2],
            "context": FRIEND_REQUEST.name(),
            "plaintext": plaintext,
            "ephemeral_secret": EPHEMERAL,
            "sealed": hex::encode(sealed),
        },
        "sealed_signed": {
            "sender_seed": SEEDS[1],
            "recipient_seed": SEEDS[2],
            "context": FRIEND_REQUEST.name(),
            "plaintext": plaintext,
            "ephemeral_secret": EPHEMERAL,
            "sealed": hex::encode(sealed_signed),
        },
        "box": {
            "sender_seed": SEEDS[1],
            "recipient_seed": SEEDS[2],
            "context": FRIEND_REQUEST.name(),
            "plaintext": plaintext,
            "nonce": NONCE,
            "boxed": hex::encode(boxed),
        },
        "key_file": {
            "seed": SEEDS[1],
            "file": hex::encode(key_file_bytes),
        },
    })
}

fn vectors_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("vectors.json")
}

fn committed_vectors() -> Value {
    let text = std::fs::read_to_string(vectors_path()).expect("tests/vectors.json is committed");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn formats_and_derivations_match_the_committed_vectors() {
    let computed = compute_vectors();
    if std::env::var_os("CARRIER_ID_WRITE_VECTORS").is_some() {
        let text = serde_json::to_string_pretty(&computed).unwrap() + "\n";
        std::fs::write(vectors_path(), text).unwrap();
    }
    let committed = committed_vectors();
    for (section, value) in computed.as_object().unwrap() {
        assert_eq!(
            Some(value),
            committed.get(section),
            "vectors.json section {section:?} changed"
        );
    }
    assert_eq!(computed, committed);
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} in {value}"))
}

fn seeded(value: &Value, key: &str) -> Keypair {
    Keypair::from_seed(&from_hex(text(value, key)))
}

fn context(value: &Value) -> Context {
    Context::new(Box::leak(
        text(value, "context").to_owned().into_boxed_str(),
    ))
}

/// The committed bytes decode with the public API, independently of how they were made.
#[test]
fn the_committed_vectors_parse_verify_and_open() {
    let vectors = committed_vectors();
    for id in vectors["ids"].as_array().unwrap() {
        let parsed: CarrierId = text(id, "id_base58").parse().unwrap();
        assert_eq!(hex::encode(parsed.as_bytes()), text(id, "id"));
        assert_eq!(seeded(id, "seed").id(), parsed);
    }
    for address in vectors["addresses"].as_array().unwrap() {
        let parsed: Address = text(address, "address_base58").parse().unwrap();
        assert_eq!(
            parsed,
            Address::from_bytes(&hex::decode(text(address, "address")).unwrap()).unwrap()
        );
        assert_eq!(parsed.id(), seeded(address, "seed").id());
        assert_eq!(
            u64::from(parsed.nospam().0),
            address["nospam"].as_u64().unwrap()
        );
    }
    for signature in vectors["signatures"].as_array().unwrap() {
        let bytes = hex::decode(text(signature, "signature")).unwrap();
        let parsed = carrier_id::Signature::from_slice(&bytes).unwrap();
        let message = text(signature, "message").as_bytes();
        seeded(signature, "seed")
            .id()
            .verify(context(signature), message, &parsed)
            .unwrap();
    }
    for shared in vectors["shared_keys"].as_array().unwrap() {
        let key =
            seeded(shared, "seed_b").shared_key(context(shared), &seeded(shared, "seed_a").id());
        assert_eq!(hex::encode(key.unwrap().as_bytes()), text(shared, "key"));
    }

    let sealed = &vectors["sealed"];
    let opened = seeded(sealed, "recipient_seed")
        .open_sealed(
            context(sealed),
            &hex::decode(text(sealed, "sealed")).unwrap(),
        )
        .unwrap();
    assert_eq!(opened, text(sealed, "plaintext").as_bytes());

    let signed = &vectors["sealed_signed"];
    let (sender, opened) = seeded(signed, "recipient_seed")
        .open_signed(
            context(signed),
            &hex::decode(text(signed, "sealed")).unwrap(),
        )
        .unwrap();
    assert_eq!(sender, seeded(signed, "sender_seed").id());
    assert_eq!(opened, text(signed, "plaintext").as_bytes());

    let boxed = &vectors["box"];
    let sender = seeded(boxed, "sender_seed").id();
    let opened = seeded(boxed, "recipient_seed")
        .open_from(
            &sender,
            context(boxed),
            &hex::decode(text(boxed, "boxed")).unwrap(),
        )
        .unwrap();
    assert_eq!(opened, text(boxed, "plaintext").as_bytes());

    let file = &vectors["key_file"];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identity.key");
    key_file::save(&path, &Keypair::generate()).unwrap();
    // Overwrite the content, keeping the owner-only file `save` created.
    std::fs::write(&path, hex::decode(text(file, "file")).unwrap()).unwrap();
    assert_eq!(
        key_file::load(&path).unwrap().id(),
        seeded(file, "seed").id()
    );
}
