//! The largest instance of every frame kind, sealed into a packet, fits the 1232-byte budget.

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};

use carrier_dht::bounded::{BoundedBytes, BoundedVec};
use carrier_dht::id::Keypair;
use carrier_dht::mailbox::{
    mailbox_key, seal_letter, DeleteSecret, ItemId, MAX_CHUNK_BYTES, MAX_SEALED_ITEM_BYTES,
    MIN_SEALED_ITEM_BYTES,
};
use carrier_dht::mailbox_store::{MailboxStorage, MAX_PAGE_ITEMS};
use carrier_dht::message::{
    Message, ProbeNonce, Request, RequestBody, Response, ResponseBody, MAX_PADDING_BYTES,
};
use carrier_dht::packet::{seal, KeyAgreement, NONCE_BYTES};
use carrier_dht::record::{MAX_PEER_ADDRS, MAX_PEER_RELAYS, MAX_SALT_BYTES};
use carrier_dht::{
    Contact, Entropy, ImmutableValue, Key, MailboxItem, MailboxKind, MailboxLimits, MutableValue,
    Path, PeerRecord, Refusal, RelayHint, Token, Value, K, MAX_DATAGRAM_BYTES, MAX_VALUE_BYTES,
};

fn widest_addr() -> SocketAddr {
    SocketAddr::V6(SocketAddrV6::new(
        Ipv6Addr::new(
            0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xfffe,
        ),
        u16::MAX,
        0,
        0,
    ))
}

fn largest_values(keypair: &Keypair) -> Vec<Value> {
    let data = vec![0xab; MAX_VALUE_BYTES];
    let salt = vec![0xcd; MAX_SALT_BYTES];
    vec![
        Value::Immutable(ImmutableValue::new(&data).expect("cap")),
        Value::Mutable(MutableValue::sign(keypair, &salt, u64::MAX, &data).expect("cap")),
    ]
}

fn largest_record(keypair: &Keypair) -> PeerRecord {
    let addrs = vec![widest_addr(); MAX_PEER_ADDRS];
    let relays = vec![
        RelayHint {
            id: Key([0xff; 32]),
            addr: widest_addr(),
        };
        MAX_PEER_RELAYS
    ];
    PeerRecord::sign(keypair, u64::MAX, u64::MAX, addrs, relays).expect("cap")
}

fn request(body: RequestBody, padding: usize) -> Message {
    Message::Request(Request {
        txid: u64::MAX,
        unix_ms: u64::MAX,
        token: Some(Token([0xff; 16])),
        body,
        padding: BoundedBytes::new(vec![0; padding]).expect("cap"),
    })
}

fn response(body: ResponseBody) -> Message {
    Message::Response(Response {
        txid: u64::MAX,
        your_addr: widest_addr(),
        token: Token([0xff; 16]),
        body,
    })
}

#[test]
fn largest_instance_of_every_frame_kind_fits_the_datagram_budget() {
    let keypair = Keypair::from_seed(&[3; 32]);
    let pair_key = KeyAgreement::Simulated
        .pair_key(&keypair, &Key([0xee; 32]))
        .expect("key");
    let target = Key([0xff; 32]);
    let contacts = vec![
        Contact {
            id: Key([0xff; 32]),
            addr: widest_addr(),
        };
        K
    ];
    let mut frames = vec![
        ("ping", request(RequestBody::Ping, MAX_PADDING_BYTES)),
        (
            "find_node",
            request(RequestBody::FindNode { target }, MAX_PADDING_BYTES),
        ),
        (
            "find_value",
            request(RequestBody::FindValue { key: target }, MAX_PADDING_BYTES),
        ),
        (
            "find_peer",
            request(RequestBody::FindPeer { id: target }, MAX_PADDING_BYTES),
        ),
        (
            "announce_peer",
            request(
                RequestBody::AnnouncePeer {
                    record: largest_record(&keypair),
                },
                0,
            ),
        ),
        ("pong", response(ResponseBody::Pong)),
        (
            "nodes",
            response(ResponseBody::Nodes(BoundedVec::new(contacts).expect("K"))),
        ),
        (
            "peer",
            response(ResponseBody::Peer(largest_record(&keypair))),
        ),
        ("stored", response(ResponseBody::Stored)),
        (
            "refused",
            response(ResponseBody::Refused(Refusal::NotAccepted)),
        ),
        (
            "probe_me",
            request(
                RequestBody::ProbeMe {
                    nonce: ProbeNonce([0xff; 16]),
                },
                0,
            ),
        ),
        (
            "probe_for",
            request(
                RequestBody::ProbeFor {
                    id: target,
                    addr: widest_addr(),
                    nonce: ProbeNonce([0xff; 16]),
                },
                0,
            ),
        ),
        (
            "probe",
            request(
                RequestBody::Probe {
                    nonce: ProbeNonce([0xff; 16]),
                },
                0,
            ),
        ),
        ("probe_sent", response(ResponseBody::ProbeSent)),
    ];
    for value in largest_values(&keypair) {
        frames.push((
            "store_value",
            request(
                RequestBody::StoreValue {
                    value: value.clone(),
                    cas: Some(u64::MAX),
                },
                0,
            ),
        ));
        frames.push(("value", response(ResponseBody::Value(value))));
    }
    frames.extend(mailbox_frames(&keypair));
    // A ping carries no padding: its reply is small. It must stay under the size a node
    // allows itself for a ping-back within the amplification budget.
    let ping = request(RequestBody::Ping, 0).encode();
    let sealed = seal(&pair_key, Key([1; 32]), true, [9; NONCE_BYTES], &ping);
    assert!(
        sealed.len() <= carrier_dht::MAX_PING_BYTES,
        "ping is {} bytes",
        sealed.len()
    );
    for (name, frame) in frames {
        let encoded = frame.encode();
        assert_eq!(
            Message::decode(&encoded).as_ref(),
            Ok(&frame),
            "{name} round-trips"
        );
        let packet = seal(&pair_key, Key([1; 32]), true, [9; NONCE_BYTES], &encoded);
        println!("{name}: {} bytes", packet.len());
        assert!(
            packet.len() <= MAX_DATAGRAM_BYTES,
            "{name} is {} bytes, over {MAX_DATAGRAM_BYTES}",
            packet.len()
        );
    }
}

fn mailbox_item(sealed_len: usize, fill: u8) -> MailboxItem {
    MailboxItem {
        version: u8::MAX,
        expires_unix_secs: u64::MAX,
        delete_hash: [0xff; 32],
        sealed: BoundedBytes::new(vec![fill; sealed_len]).expect("cap"),
    }
}

/// The largest mailbox frames: a store of the largest item, a fetch request, a delete, and
/// fetch pages as a storer builds them (its byte budget, not the decoding bound, limits a
/// page), both of the largest items and of the smallest.
fn mailbox_frames(keypair: &Keypair) -> Vec<(&'static str, Message)> {
    let key = Key([0xff; 32]);
    let largest = mailbox_item(MAX_SEALED_ITEM_BYTES, 0xab);
    let mut frames = vec![
        (
            "store_mailbox_item",
            request(RequestBody::StoreMailboxItem { key, item: largest }, 0),
        ),
        (
            "fetch_mailbox",
            request(
                RequestBody::FetchMailbox {
                    key,
                    after: Some(ItemId([0xff; 32])),
                },
                MAX_PADDING_BYTES,
            ),
        ),
        (
            "delete_mailbox_item",
            request(
                RequestBody::DeleteMailboxItem {
                    key,
                    id: ItemId([0xff; 32]),
                    secret: DeleteSecret([0xff; 32]),
                },
                0,
            ),
        ),
        ("deleted", response(ResponseBody::Deleted)),
    ];
    // A real chunk of the largest size seals within the item cap.
    let recipient = Keypair::from_seed(&[5; 32]).id();
    let mailbox = mailbox_key(&recipient, MailboxKind::Messages, 0);
    let items = seal_letter(
        keypair,
        &recipient,
        mailbox,
        &[0xcd; MAX_CHUNK_BYTES],
        u64::MAX,
        &mut Entropy::from_seed([1; 32]),
    )
    .expect("seals");
    assert!(
        items[0].sealed.len() <= MAX_SEALED_ITEM_BYTES,
        "a chunk fits an item"
    );
    for (name, sealed_len) in [
        ("mailbox_page_of_largest_items", MAX_SEALED_ITEM_BYTES),
        ("mailbox_page_of_smallest_items", MIN_SEALED_ITEM_BYTES),
    ] {
        let mut storage = MailboxStorage::new(MailboxLimits::default());
        for fill in 0..2 * MAX_PAGE_ITEMS as u8 {
            let mut item = mailbox_item(sealed_len, fill);
            item.version = 1;
            item.expires_unix_secs = 1_000;
            let source = carrier_dht::Subnet::of(Path::Direct(widest_addr()).ip());
            storage.store(key, item, source, 0).expect("stored");
        }
        let (page, more) = storage.page(&key, None, 0);
        assert!(more && !page.is_empty());
        frames.push((
            name,
            response(ResponseBody::MailboxPage {
                items: BoundedVec::new(page).expect("page cap"),
                more: true,
            }),
        ));
    }
    frames
}
