//! The receiver's rule, without I/O: which items of a batch are new, given the next sequence
//! the window expects for this (friend, epoch).
//!
//! A window starts at sequence 1. An item below it is a duplicate (acknowledged again, never
//! raised again); the item at it is taken (a skip moves the window past its range); an item
//! beyond it is left for the sender to send again, so messages are raised in sequence order
//! with no gap. The receipt acknowledges everything below the new window.

use crate::wire::{Item, SeqRange};

/// What one batch does to a window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Step {
    /// Indices (in the batch) of the messages taken now.
    pub(crate) taken: Vec<usize>,
    /// The next sequence expected after the batch.
    pub(crate) next: u64,
}

impl Step {
    /// The receipt's range: everything below `next` (none if the window has not moved from 1).
    pub(crate) fn delivered(&self) -> Option<SeqRange> {
        (self.next > 1).then(|| SeqRange {
            first: 1,
            last: self.next - 1,
        })
    }
}

/// Applies `items` to a window expecting `next`.
pub(crate) fn advance(mut next: u64, items: &[Item]) -> Step {
    let mut taken = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let range = item.range();
        if range.first > range.last || range.last < next {
            continue;
        }
        if range.first > next {
            // A gap: this and everything after it wait for a resend.
            break;
        }
        match item {
            Item::Message(_) => taken.push(index),
            Item::Skip(_) => {}
        }
        next = range.last.saturating_add(1);
    }
    Step { taken, next }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use carrier_friend::dht::bounded::BoundedBytes;

    use super::*;
    use crate::wire::Small;
    use crate::MessageId;

    fn message(seq: u64) -> Item {
        Item::Message(Small {
            seq,
            id: MessageId([seq as u8; 16]),
            sent_at_ms: 0,
            offline: false,
            body: BoundedBytes::new(vec![1]).unwrap(),
        })
    }

    fn skip(first: u64, last: u64) -> Item {
        Item::Skip(SeqRange { first, last })
    }

    #[test]
    fn in_order_messages_are_taken_and_acknowledged() {
        let step = advance(1, &[message(1), message(2), message(3)]);
        assert_eq!(step.taken, [0, 1, 2]);
        assert_eq!(step.next, 4);
        assert_eq!(step.delivered(), Some(SeqRange { first: 1, last: 3 }));
    }

    #[test]
    fn duplicates_are_acknowledged_again_but_not_taken() {
        let step = advance(3, &[message(1), message(2), message(3)]);
        assert_eq!(step.taken, [2]);
        assert_eq!(step.next, 4);
        let again = advance(4, &[message(1), message(2), message(3)]);
        assert!(again.taken.is_empty());
        assert_eq!(again.delivered(), Some(SeqRange { first: 1, last: 3 }));
    }

    #[test]
    fn a_gap_stops_the_window_until_it_is_filled() {
        let step = advance(1, &[message(2), message(3)]);
        assert!(step.taken.is_empty());
        assert_eq!(step.next, 1);
        assert_eq!(step.delivered(), None);
        let step = advance(1, &[message(1), message(3)]);
        assert_eq!(step.taken, [0]);
        assert_eq!(step.next, 2);
    }

    #[test]
    fn a_skip_moves_the_window_past_its_range() {
        let step = advance(1, &[message(1), skip(2, 5), message(6)]);
        assert_eq!(step.taken, [0, 2]);
        assert_eq!(step.next, 7);
        // A skip overlapping what was taken moves only what is left.
        let step = advance(4, &[skip(2, 5), message(6)]);
        assert_eq!(step.taken, [1]);
        assert_eq!(step.next, 7);
        // An inverted range is ignored, not taken as a skip of everything.
        let step = advance(1, &[skip(9, 2), message(1)]);
        assert_eq!(step.taken, [1]);
        assert_eq!(step.next, 2);
    }

    #[test]
    fn the_window_saturates_instead_of_wrapping() {
        let step = advance(u64::MAX, &[skip(u64::MAX, u64::MAX)]);
        assert_eq!(step.next, u64::MAX);
    }
}
