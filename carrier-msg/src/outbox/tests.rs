#![allow(clippy::unwrap_used)]

use carrier_friend::dht::id::Keypair;

use super::*;

const RESEND_MS: u64 = 1_000;

fn queued(n: u8, expires_at_ms: u64) -> Queued {
    Queued {
        id: MessageId([n; 16]),
        sent_at_ms: 0,
        offline: false,
        expires_at_ms,
        skip: false,
        body: Some(vec![n; 10]),
    }
}

fn large(id: MessageId, after: u64, expires_at_ms: u64) -> NewLarge {
    NewLarge {
        id,
        after,
        sent_at_ms: 0,
        offline: false,
        expires_at_ms,
    }
}

fn seqs(planned: &[Planned]) -> Vec<u64> {
    planned
        .iter()
        .flat_map(|p| match p {
            Planned::Message { seq, .. } => vec![*seq],
            Planned::Skip(r) => (r.first..=r.last).collect(),
        })
        .collect()
}

fn delivered(first: u64, last: u64) -> [SeqRange; 1] {
    [SeqRange { first, last }]
}

#[test]
fn messages_go_in_order_once_per_link_and_leave_on_their_receipt() {
    let peer = Keypair::generate().id();
    let mut outbox = Outbox::new(RESEND_MS);
    for n in 1..=5 {
        outbox.queue(peer, 7, u64::from(n), queued(n, u64::MAX));
    }
    let (epoch, batch) = outbox.next_batch(&peer, 1, 0, 3, usize::MAX).unwrap();
    assert_eq!((epoch, seqs(&batch)), (7, vec![1, 2, 3]));
    let (_, batch) = outbox.next_batch(&peer, 1, 0, 3, usize::MAX).unwrap();
    assert_eq!(seqs(&batch), [4, 5]);
    assert!(outbox.next_batch(&peer, 1, 10, 3, usize::MAX).is_none());
    let settled = outbox.receipt(&peer, 7, &delivered(1, 3), &[], 20);
    assert_eq!(settled.len(), 3);
    assert_eq!(outbox.len(&peer), 2);
    // A receipt of another epoch settles nothing.
    assert!(outbox
        .receipt(&peer, 8, &delivered(1, 9), &[], 20)
        .is_empty());
    outbox.receipt(&peer, 7, &delivered(1, 5), &[], 30);
    assert_eq!(outbox.len(&peer), 0);
    assert_eq!(outbox.poll_timeout(), None);
}

#[test]
fn a_new_link_or_a_silent_one_gets_everything_unacknowledged_again() {
    let peer = Keypair::generate().id();
    let mut outbox = Outbox::new(RESEND_MS);
    for n in 1..=3 {
        outbox.queue(peer, 1, u64::from(n), queued(n, u64::MAX));
    }
    let (_, batch) = outbox.next_batch(&peer, 1, 0, 10, usize::MAX).unwrap();
    assert_eq!(seqs(&batch), [1, 2, 3]);
    // The body is sent from memory once; a resend reads it from disk.
    assert!(matches!(&batch[0], Planned::Message { body: Some(_), .. }));
    outbox.receipt(&peer, 1, &delivered(1, 1), &[], 100);
    // A new link: what is left goes again, without its body.
    let (_, batch) = outbox.next_batch(&peer, 2, 200, 10, usize::MAX).unwrap();
    assert_eq!(seqs(&batch), [2, 3]);
    assert!(matches!(&batch[0], Planned::Message { body: None, .. }));
    // Nothing acknowledged for RESEND_MS: again on the same link, and not before.
    assert_eq!(outbox.poll_timeout(), Some(200 + RESEND_MS));
    assert!(outbox
        .next_batch(&peer, 2, 200 + RESEND_MS - 1, 10, usize::MAX)
        .is_none());
    let (_, batch) = outbox
        .next_batch(&peer, 2, 200 + RESEND_MS, 10, usize::MAX)
        .unwrap();
    assert_eq!(seqs(&batch), [2, 3]);
}

#[test]
fn a_sequence_not_committed_yet_holds_the_ones_after_it() {
    let peer = Keypair::generate().id();
    let mut outbox = Outbox::new(RESEND_MS);
    outbox.queue(peer, 1, 1, queued(1, u64::MAX));
    outbox.queue(peer, 1, 3, queued(3, u64::MAX));
    let (_, batch) = outbox.next_batch(&peer, 1, 0, 10, usize::MAX).unwrap();
    assert_eq!(seqs(&batch), [1]);
    assert!(outbox.next_batch(&peer, 1, 0, 10, usize::MAX).is_none());
    // Nothing in flight but the held ones: no resend timer spins meanwhile (only the
    // expiry, never here, is a deadline).
    outbox.receipt(&peer, 1, &delivered(1, 1), &[], 5);
    assert_eq!(outbox.poll_timeout(), Some(u64::MAX));
    outbox.queue(peer, 1, 2, queued(2, u64::MAX));
    let (_, batch) = outbox.next_batch(&peer, 1, 6, 10, usize::MAX).unwrap();
    assert_eq!(seqs(&batch), [2, 3]);
}

#[test]
fn an_expired_message_fails_once_and_travels_as_a_skip() {
    let peer = Keypair::generate().id();
    let mut outbox = Outbox::new(RESEND_MS);
    outbox.queue(peer, 1, 1, queued(1, 500));
    outbox.queue(peer, 1, 2, queued(2, 500));
    outbox.queue(peer, 1, 3, queued(3, 10_000));
    assert_eq!(outbox.poll_timeout(), Some(500));
    assert!(outbox.expire(499).is_empty());
    let expired = outbox.expire(500);
    assert_eq!(expired.len(), 2);
    assert!(expired.iter().all(|s| s.skip));
    assert!(outbox.expire(600).is_empty(), "reported once");
    let (_, batch) = outbox.next_batch(&peer, 1, 600, 10, usize::MAX).unwrap();
    assert_eq!(batch[0], Planned::Skip(SeqRange { first: 1, last: 2 }));
    assert_eq!(seqs(&batch), [1, 2, 3]);
    let settled = outbox.receipt(&peer, 1, &delivered(1, 3), &[], 700);
    assert_eq!(settled.iter().filter(|s| s.skip).count(), 2);
    assert_eq!(outbox.poll_timeout(), None);
}

#[test]
fn large_messages_go_alone_again_after_a_silence_and_expire_whole() {
    let peer = Keypair::generate().id();
    let mut outbox = Outbox::new(RESEND_MS);
    let (a, b) = (MessageId([1; 16]), MessageId([2; 16]));
    outbox.queue_large(peer, 1, large(a, 0, 5_000));
    outbox.queue_large(peer, 1, large(b, 4, 50_000));
    let mut sent = outbox.next_large(&peer, 1, 0);
    sent.sort();
    assert_eq!(sent.len(), 2);
    assert!(outbox.next_large(&peer, 1, 10).is_empty());
    assert_eq!(outbox.poll_timeout(), Some(RESEND_MS));
    assert_eq!(outbox.next_large(&peer, 1, RESEND_MS).len(), 2);
    outbox.large_unsent(&peer, &a);
    assert_eq!(outbox.next_large(&peer, 1, RESEND_MS + 1).len(), 1);
    let settled = outbox.receipt(&peer, 1, &[], &[b], 2_000);
    assert_eq!(settled.len(), 1);
    let expired = outbox.expire(5_000);
    assert_eq!(expired.len(), 1);
    assert!(!expired[0].skip);
    assert_eq!(outbox.len(&peer), 0);
}

#[test]
fn a_removed_friend_takes_everything_and_a_new_epoch_starts_clean() {
    let peer = Keypair::generate().id();
    let mut outbox = Outbox::new(RESEND_MS);
    outbox.queue(peer, 1, 1, queued(1, 100));
    outbox.queue_large(peer, 1, large(MessageId([9; 16]), 1, 100));
    assert_eq!(outbox.remove_peer(&peer).len(), 2);
    assert!(outbox.expire(1_000).is_empty(), "nothing left to expire");
    outbox.queue(peer, 1, 1, queued(1, u64::MAX));
    outbox.queue(peer, 2, 1, queued(2, u64::MAX));
    assert_eq!(outbox.epoch(&peer), Some(2));
    assert_eq!(outbox.len(&peer), 1);
}

#[test]
fn a_batch_is_cut_by_bytes_but_always_carries_one() {
    let peer = Keypair::generate().id();
    let mut outbox = Outbox::new(RESEND_MS);
    for n in 1..=4 {
        outbox.queue(peer, 1, u64::from(n), queued(n, u64::MAX));
    }
    let (_, batch) = outbox.next_batch(&peer, 1, 0, 10, 5).unwrap();
    assert_eq!(seqs(&batch), [1]);
    let (_, batch) = outbox.next_batch(&peer, 1, 0, 10, 20).unwrap();
    assert_eq!(seqs(&batch), [2, 3]);
}
