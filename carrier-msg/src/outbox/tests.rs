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
        len: 10,
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

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

fn terms(letter_bytes: usize) -> MailboxTerms {
    MailboxTerms {
        letter_bytes,
        republish_ms: 60_000,
        retry_ms: 1_000,
        max_retry_ms: 8_000,
    }
}

fn letter(deposit: Option<Deposit>) -> (Vec<u64>, u64) {
    match deposit {
        Some(Deposit::Letter {
            planned, new_from, ..
        }) => (seqs(&planned), new_from),
        other => panic!("{other:?}"),
    }
}

#[test]
fn deposits_pack_what_fits_a_letter_once_until_it_is_stale() {
    let peer = Keypair::generate().id();
    let mut outbox = Outbox::new(RESEND_MS);
    for n in 1..=5 {
        outbox.queue(peer, 1, u64::from(n), queued(n, u64::MAX));
    }
    let per_item = ITEM_OVERHEAD_BYTES + 10;
    let terms = terms(LETTER_OVERHEAD_BYTES + 3 * per_item);
    let now = DAY_MS + 10;
    assert_eq!(
        letter(outbox.next_deposit(&peer, now, &terms)),
        (vec![1, 2, 3], 1)
    );
    outbox.deposited(&peer, 3, now);
    assert_eq!(
        letter(outbox.next_deposit(&peer, now, &terms)),
        (vec![4, 5], 4)
    );
    outbox.deposited(&peer, 5, now);
    assert!(
        outbox.next_deposit(&peer, now + 1, &terms).is_none(),
        "all deposited"
    );
    // Older than the republish interval, or of an earlier day: everything again.
    assert_eq!(
        letter(outbox.next_deposit(&peer, now + 60_000, &terms)).0,
        [1, 2, 3]
    );
    outbox.deposited(&peer, 3, now + 60_000);
    outbox.deposited(&peer, 5, now + 60_000);
    assert_eq!(
        letter(outbox.next_deposit(&peer, 2 * DAY_MS, &terms)).0,
        [1, 2, 3]
    );
    // Delivered ones are not deposited again.
    outbox.receipt(&peer, 1, &delivered(1, 4), &[], 2 * DAY_MS);
    assert_eq!(
        letter(outbox.next_deposit(&peer, 2 * DAY_MS, &terms)).0,
        [5]
    );
}

#[test]
fn a_refused_deposit_waits_longer_each_time_and_reports_each_message_once() {
    let peer = Keypair::generate().id();
    let mut outbox = Outbox::new(RESEND_MS);
    for n in 1..=2 {
        outbox.queue(peer, 1, u64::from(n), queued(n, u64::MAX));
    }
    let terms = terms(64 * 1024);
    assert_eq!(letter(outbox.next_deposit(&peer, 0, &terms)).0, [1, 2]);
    assert_eq!(outbox.deposit_refused(&peer, 2, 0, &terms), 1);
    assert!(outbox.next_deposit(&peer, 999, &terms).is_none());
    assert!(outbox.next_deposit(&peer, 1_000, &terms).is_some());
    outbox.queue(peer, 1, 3, queued(3, u64::MAX));
    assert_eq!(
        outbox.deposit_refused(&peer, 3, 1_000, &terms),
        3,
        "only 3 is news"
    );
    assert!(
        outbox.next_deposit(&peer, 2_999, &terms).is_none(),
        "2 s after the second"
    );
    assert!(outbox.next_deposit(&peer, 3_000, &terms).is_some());
    for _ in 0..10 {
        outbox.deposit_refused(&peer, 3, 3_000, &terms);
    }
    assert!(
        outbox.next_deposit(&peer, 3_000 + 8_000, &terms).is_some(),
        "capped"
    );
}

#[test]
fn a_message_too_large_for_a_letter_stops_the_deposit_and_is_reported_once() {
    let peer = Keypair::generate().id();
    let mut outbox = Outbox::new(RESEND_MS);
    let mut big = queued(1, u64::MAX);
    big.len = 64 * 1024;
    outbox.queue(peer, 1, 1, big);
    outbox.queue(peer, 1, 2, queued(2, u64::MAX));
    let terms = terms(64 * 1024);
    assert_eq!(
        outbox.next_deposit(&peer, 0, &terms),
        Some(Deposit::TooLarge {
            id: MessageId([1; 16]),
            first: true
        })
    );
    assert_eq!(
        outbox.next_deposit(&peer, 0, &terms),
        Some(Deposit::TooLarge {
            id: MessageId([1; 16]),
            first: false
        })
    );
}

#[test]
fn a_sequence_queued_before_a_lower_one_waits_even_when_nothing_lower_is_queued() {
    // Concurrent sends commit 1, 2, 3 in order but queue them as they return: 1, then 3,
    // then 2. Once 1 is acknowledged nothing below 3 is queued, and 3 must still wait for 2.
    let peer = Keypair::generate().id();
    let mut outbox = Outbox::new(RESEND_MS);
    outbox.queue(peer, 1, 1, queued(1, u64::MAX));
    let (_, batch) = outbox.next_batch(&peer, 1, 0, 10, usize::MAX).unwrap();
    assert_eq!(seqs(&batch), [1]);
    outbox.receipt(&peer, 1, &delivered(1, 1), &[], 5);
    outbox.queue(peer, 1, 3, queued(3, u64::MAX));
    assert!(
        outbox.next_batch(&peer, 1, 6, 10, usize::MAX).is_none(),
        "3 went before 2"
    );
    assert!(
        outbox.next_batch(&peer, 2, 6, 10, usize::MAX).is_none(),
        "nor on a new link"
    );
    outbox.queue(peer, 1, 2, queued(2, u64::MAX));
    let (_, batch) = outbox.next_batch(&peer, 1, 7, 10, usize::MAX).unwrap();
    assert_eq!(seqs(&batch), [2, 3]);
}

#[test]
fn what_a_restart_loads_is_sent_from_its_first_sequence() {
    let peer = Keypair::generate().id();
    let mut outbox = Outbox::new(RESEND_MS);
    // 1..=4 were delivered before the restart; 5 and 6 wait on disk.
    outbox.queue(peer, 1, 6, queued(6, u64::MAX));
    outbox.queue(peer, 1, 5, queued(5, u64::MAX));
    outbox.loaded([(peer, 1, 7)]);
    let (_, batch) = outbox.next_batch(&peer, 1, 0, 10, usize::MAX).unwrap();
    assert_eq!(seqs(&batch), [5, 6]);
}

#[test]
fn a_restart_with_nothing_queued_sends_the_next_sequence() {
    // 1..=4 were delivered and settled before the restart: nothing is loaded, and the
    // friend's row says 5 comes next. The next send must go, not wait for a lower sequence.
    let peer = Keypair::generate().id();
    let mut outbox = Outbox::new(RESEND_MS);
    outbox.loaded([(peer, 1, 5)]);
    outbox.queue(peer, 1, 5, queued(5, u64::MAX));
    let (_, batch) = outbox.next_batch(&peer, 1, 0, 10, usize::MAX).unwrap();
    assert_eq!(seqs(&batch), [5]);
}

#[test]
fn a_restart_still_waits_for_a_sequence_committed_but_not_queued() {
    // 5 and 6 wait on disk, 7 was committed after the load (a send racing another): the
    // floor is below 5, so 5 and 6 go, and 8 queued before 7 waits.
    let peer = Keypair::generate().id();
    let mut outbox = Outbox::new(RESEND_MS);
    outbox.queue(peer, 1, 5, queued(5, u64::MAX));
    outbox.queue(peer, 1, 6, queued(6, u64::MAX));
    outbox.loaded([(peer, 1, 7)]);
    outbox.queue(peer, 1, 8, queued(8, u64::MAX));
    let (_, batch) = outbox.next_batch(&peer, 1, 0, 10, usize::MAX).unwrap();
    assert_eq!(seqs(&batch), [5, 6]);
}
