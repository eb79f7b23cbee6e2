#![allow(clippy::unwrap_used)]

use proptest::prelude::*;

use super::*;

fn small(seq: u64, len: usize) -> Item {
    Item::Message(Small {
        seq,
        id: MessageId([seq as u8; 16]),
        sent_at_ms: 1_700_000_000_000 + seq,
        offline: seq % 2 == 0,
        body: BoundedBytes::new(vec![7; len]).unwrap(),
    })
}

#[test]
fn frames_round_trip() {
    let batch = Frame::Batch(Batch {
        epoch: u64::MAX,
        items: BoundedVec::new(vec![
            small(1, 0),
            small(2, 100),
            Item::Skip(SeqRange { first: 3, last: 9 }),
            small(10, MAX_SMALL_BYTES),
        ])
        .unwrap(),
    });
    assert_eq!(decode_frame(&encode_frame(&batch)).unwrap(), batch);
    let receipt = Frame::Receipt(Receipt {
        epoch: 5,
        delivered: BoundedVec::new(vec![SeqRange { first: 1, last: 10 }]).unwrap(),
        large: BoundedVec::new(vec![MessageId([9; 16])]).unwrap(),
    });
    assert_eq!(decode_frame(&encode_frame(&receipt)).unwrap(), receipt);
    assert_eq!(
        decode_letter(&encode_letter(&receipt)).unwrap().unwrap(),
        receipt
    );
    let large = Large {
        epoch: 5,
        id: MessageId([3; 16]),
        after: 41,
        sent_at_ms: 12,
        offline: true,
        body: BoundedBytes::new(vec![1; MAX_MESSAGE_BYTES]).unwrap(),
    };
    let bytes = encode_large(&large);
    assert!(bytes.len() <= MAX_LARGE_FRAME_BYTES);
    assert_eq!(decode_large(&bytes).unwrap(), large);
}

#[test]
fn the_largest_batch_fits_its_frame_cap() {
    // A batch is cut at MAX_BATCH_BYTES of bodies; with a 64 KiB message on top it must fit.
    let items: Vec<Item> = (1..=MAX_BATCH_ITEMS as u64)
        .map(|s| small(s, 200))
        .collect();
    let bytes = encode_frame(&Frame::Batch(Batch {
        epoch: u64::MAX,
        items: BoundedVec::new(items).unwrap(),
    }));
    assert!(bytes.len() <= MAX_FRAME_BYTES, "{}", bytes.len());
    let full = Frame::Receipt(Receipt {
        epoch: u64::MAX,
        delivered: BoundedVec::new(vec![
            SeqRange {
                first: u64::MAX,
                last: u64::MAX
            };
            MAX_RECEIPT_ENTRIES
        ])
        .unwrap(),
        large: BoundedVec::new(vec![MessageId([0xFF; 16]); MAX_RECEIPT_ENTRIES]).unwrap(),
    });
    assert!(encode_frame(&full).len() <= MAX_FRAME_BYTES);
}

#[test]
fn malformed_trailing_oversized_and_other_versions_are_refused() {
    let frame = encode_frame(&Frame::Receipt(Receipt {
        epoch: 1,
        delivered: BoundedVec::empty(),
        large: BoundedVec::empty(),
    }));
    let mut trailing = frame.clone();
    trailing.push(0);
    assert_eq!(decode_frame(&trailing), Err(WireError::Malformed));
    let mut other = frame.clone();
    other[0] = 2;
    assert_eq!(decode_frame(&other), Err(WireError::Version(2)));
    assert_eq!(decode_frame(&[]), Err(WireError::Empty));
    assert_eq!(
        decode_frame(&vec![VERSION; MAX_FRAME_BYTES + 1]),
        Err(WireError::TooLarge(MAX_FRAME_BYTES + 1))
    );
    // A small message over 64 KiB is not a small message.
    let mut over = encode_frame(&Frame::Batch(Batch {
        epoch: 1,
        items: BoundedVec::new(vec![small(1, MAX_SMALL_BYTES)]).unwrap(),
    }));
    over.push(0);
    assert!(decode_frame(&over).is_err());
    assert!(decode_letter(&[0xF1, 1, 2]).is_none(), "the friend layer's");
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_any_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = decode_frame(&bytes);
        let _ = decode_large(&bytes);
        let _ = decode_letter(&bytes);
        let mut versioned = vec![VERSION];
        versioned.extend(&bytes);
        let _ = decode_frame(&versioned);
        let _ = decode_large(&versioned);
    }

    #[test]
    fn a_cut_or_spliced_valid_frame_never_panics(
        tail in proptest::collection::vec(any::<u8>(), 0..64),
        cut in 0usize..400,
    ) {
        let mut bytes = encode_frame(&Frame::Batch(Batch {
            epoch: 77,
            items: BoundedVec::new(vec![small(1, 30), Item::Skip(SeqRange { first: 2, last: 3 }), small(4, 200)]).unwrap(),
        }));
        bytes.truncate(cut.min(bytes.len()));
        bytes.extend(&tail);
        let _ = decode_frame(&bytes);
        let _ = decode_large(&bytes);
    }

    #[test]
    fn batches_round_trip(epoch in any::<u64>(), seqs in proptest::collection::vec((any::<u64>(), 0usize..300, any::<bool>()), 0..40)) {
        let items: Vec<Item> = seqs.iter().map(|&(seq, len, skip)| if skip {
            Item::Skip(SeqRange { first: seq, last: seq.saturating_add(len as u64) })
        } else {
            small(seq, len)
        }).collect();
        let frame = Frame::Batch(Batch { epoch, items: BoundedVec::new(items).unwrap() });
        prop_assert_eq!(decode_frame(&encode_frame(&frame)).unwrap(), frame);
    }

    #[test]
    fn large_messages_round_trip(epoch in any::<u64>(), after in any::<u64>(), len in 0usize..100_000) {
        let large = Large {
            epoch, id: MessageId([1; 16]), after, sent_at_ms: after ^ 5, offline: len % 2 == 0,
            body: BoundedBytes::new(vec![9; len]).unwrap(),
        };
        prop_assert_eq!(decode_large(&encode_large(&large)).unwrap(), large);
    }
}
