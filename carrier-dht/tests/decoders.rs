//! Arbitrary bytes into every decoder give an error, never a panic; valid frames round-trip;
//! trailing bytes are refused.

use std::time::Instant;

use carrier_dht::id::Keypair;
use carrier_dht::mailbox::{DeleteSecret, ItemId};
use carrier_dht::message::{
    decode_exact, Message, ProbeNonce, Request, RequestBody, Response, ResponseBody,
};
use carrier_dht::packet::{seal, Header, KeyAgreement, NONCE_BYTES};
use carrier_dht::record::RECORD_VERSION;
use carrier_dht::{
    Contact, ImmutableValue, Key, MailboxItem, MutableValue, Node, NodeConfig, Now, Path,
    PeerRecord, Token, Value, WireError,
};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic_any_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..1400)) {
        let _ = Message::decode(&bytes);
        let _ = decode_exact::<PeerRecord>(&bytes);
        let _ = decode_exact::<Value>(&bytes);
        let _ = decode_exact::<MutableValue>(&bytes);
        let _ = decode_exact::<ImmutableValue>(&bytes);
        let _ = decode_exact::<Contact>(&bytes);
        let _ = decode_exact::<MailboxItem>(&bytes);
        let _ = decode_exact::<ItemId>(&bytes);
        let _ = decode_exact::<DeleteSecret>(&bytes);
        let _ = decode_exact::<ProbeNonce>(&bytes);
        let _ = decode_exact::<RequestBody>(&bytes);
        let _ = decode_exact::<ResponseBody>(&bytes);
        let _ = Header::parse(&bytes);
        let _ = carrier_dht::punch::PunchFrame::decode(&bytes);
        let mut punch = bytes.clone();
        punch.insert(0, carrier_dht::punch::PUNCH_CLASS);
        let _ = carrier_dht::punch::PunchFrame::decode(&punch);
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_header_are_dropped_and_counted(
        body in proptest::collection::vec(any::<u8>(), 0..1300),
        client in any::<bool>(),
    ) {
        let mut node = Node::new(NodeConfig { server: true, ..NodeConfig::default() }, Keypair::from_seed(&[1; 32]), [0; 32]);
        let sender = Keypair::from_seed(&[2; 32]);
        let mut datagram = vec![0x01, u8::from(client)];
        datagram.extend_from_slice(sender.id().as_bytes());
        datagram.extend_from_slice(&body);
        node.handle_datagram(Now::new(Instant::now(), 0), Path::Direct("10.0.0.1:1".parse().expect("valid in test")), &datagram);
        prop_assert_eq!(node.counters().dropped(), 1);
        prop_assert!(node.poll_transmit().is_none());
    }

    #[test]
    fn authenticated_garbage_is_dropped_as_malformed(body in proptest::collection::vec(any::<u8>(), 1..1100)) {
        let receiver = Keypair::from_seed(&[1; 32]);
        let sender = Keypair::from_seed(&[2; 32]);
        let mut node = Node::new(NodeConfig { server: true, ..NodeConfig::default() }, receiver, [0; 32]);
        let key = KeyAgreement::Real.pair_key(&sender, &node.key()).expect("valid in test");
        let packet = seal(&key, Key::of_node(&sender.id()), false, [1; NONCE_BYTES], &body);
        node.handle_datagram(Now::new(Instant::now(), 0), Path::Direct("10.0.0.1:1".parse().expect("valid in test")), &packet);
        // Random bytes can decode by chance into a frame; then it is answered or refused
        // by the later checks, but it never panics and never goes uncounted.
        let c = node.counters();
        prop_assert!(c.dropped() + c.requests_answered == 1);
    }
}

#[test]
fn trailing_bytes_are_refused() {
    let message = Message::Request(Request {
        txid: 7,
        unix_ms: 1,
        token: None,
        body: RequestBody::Ping,
        padding: Default::default(),
    });
    let mut bytes = message.encode();
    assert_eq!(Message::decode(&bytes), Ok(message));
    bytes.push(0);
    assert_eq!(Message::decode(&bytes), Err(WireError::Trailing(1)));
}

#[test]
fn records_round_trip_and_carry_their_version() {
    let keypair = Keypair::from_seed(&[4; 32]);
    let record = PeerRecord::sign(
        &keypair,
        3,
        10,
        vec!["10.0.0.1:4000".parse().expect("valid in test")],
        vec![],
    )
    .expect("valid in test");
    assert_eq!(record.version, RECORD_VERSION);
    let bytes = carrier_dht::message::encode(&record);
    assert_eq!(decode_exact::<PeerRecord>(&bytes), Ok(record.clone()));
    assert!(record.verify().is_ok());
    let mut other_version = record;
    other_version.version = 2;
    assert!(other_version.verify().is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Arbitrary bytes after the tag of each mailbox frame kind (requests and replies) never
    /// panic the decoder, and a frame that decodes round-trips.
    #[test]
    fn arbitrary_mailbox_frames_never_panic(
        kind in 0u8..3,
        tail in proptest::collection::vec(any::<u8>(), 0..1300),
    ) {
        // postcard tags of StoreMailboxItem (6), FetchMailbox (7), DeleteMailboxItem (8) in
        // a request, and of MailboxPage (6), Deleted (7) in a response.
        let mut request = vec![0, 1, 1, 0, 6 + kind];
        request.extend_from_slice(&tail);
        if let Ok(message) = Message::decode(&request) {
            prop_assert_eq!(Message::decode(&message.encode()), Ok(message));
        }
        let mut response = vec![1, 1, 0, 127, 0, 0, 1, 0, 0];
        response.extend_from_slice(&[0; 16]);
        response.push(6 + kind % 2);
        response.extend_from_slice(&tail);
        let _ = Message::decode(&response);
    }
}

#[test]
fn mailbox_frames_round_trip_and_refuse_trailing_bytes() {
    let message = Message::Request(Request {
        txid: 9,
        unix_ms: 2,
        token: None,
        body: RequestBody::DeleteMailboxItem {
            key: Key([1; 32]),
            id: ItemId([2; 32]),
            secret: DeleteSecret([3; 32]),
        },
        padding: Default::default(),
    });
    let mut bytes = message.encode();
    assert_eq!(Message::decode(&bytes), Ok(message));
    bytes.push(0);
    assert_eq!(Message::decode(&bytes), Err(WireError::Trailing(1)));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Arbitrary bytes after the tag of each probe request kind (`ProbeMe` 9, `ProbeFor` 10,
    /// `Probe` 11) and of `ProbeSent` (8) never panic the decoder, and what decodes
    /// round-trips.
    #[test]
    fn arbitrary_probe_frames_never_panic(
        kind in 0u8..3,
        tail in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut request = vec![0, 1, 1, 0, 9 + kind];
        request.extend_from_slice(&tail);
        if let Ok(message) = Message::decode(&request) {
            prop_assert_eq!(Message::decode(&message.encode()), Ok(message));
        }
        let sent = Message::Response(Response {
            txid: 1,
            your_addr: "127.0.0.1:1".parse().expect("valid in test"),
            token: Token([0; 16]),
            body: ResponseBody::ProbeSent,
        });
        let mut response = sent.encode();
        prop_assert_eq!(Message::decode(&response), Ok(sent));
        response.extend_from_slice(&tail);
        match Message::decode(&response) {
            Ok(message) => prop_assert!(tail.is_empty(), "{message:?} decoded with a tail"),
            Err(_) => prop_assert!(!tail.is_empty()),
        }
    }
}

#[test]
fn probe_frames_round_trip_and_refuse_trailing_bytes() {
    let nonce = ProbeNonce([7; 16]);
    let bodies = [
        RequestBody::ProbeMe { nonce },
        RequestBody::ProbeFor {
            id: Key([1; 32]),
            addr: "198.18.0.1:4000".parse().expect("valid in test"),
            nonce,
        },
        RequestBody::Probe { nonce },
    ];
    for body in bodies {
        let message = Message::Request(Request {
            txid: 9,
            unix_ms: 2,
            token: None,
            body,
            padding: Default::default(),
        });
        let mut bytes = message.encode();
        assert_eq!(Message::decode(&bytes), Ok(message));
        bytes.push(0);
        assert_eq!(Message::decode(&bytes), Err(WireError::Trailing(1)));
    }
    let mut bytes = nonce.0.to_vec();
    assert_eq!(decode_exact::<ProbeNonce>(&bytes), Ok(nonce));
    bytes.pop();
    assert_eq!(
        decode_exact::<ProbeNonce>(&bytes),
        Err(WireError::Malformed)
    );
}
