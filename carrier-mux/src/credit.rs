//! Each channel's credit, without I/O: how much its writer may send ([`SendCredit`]) and when
//! its reader grants more ([`RecvCredit`]).
//!
//! A writer sends at most its limit, in bytes since the channel opened; the limit starts at
//! the reader's credit and only grows. The reader grants a new limit (consumed + credit) once
//! half the credit is consumed, so a reader that keeps up never stalls its writer, and a
//! reader that stops holds at most one credit of the channel's data unread.

/// The writer's side of a channel's credit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SendCredit {
    sent: u64,
    limit: u64,
}

impl SendCredit {
    /// A writer that may send `limit` bytes before it is granted more.
    pub(crate) fn new(limit: u64) -> Self {
        SendCredit { sent: 0, limit }
    }

    /// Bytes it may send now.
    pub(crate) fn available(&self) -> u64 {
        self.limit.saturating_sub(self.sent)
    }

    /// `n` bytes were sent.
    pub(crate) fn sent(&mut self, n: u64) {
        self.sent = self.sent.saturating_add(n);
    }

    /// The reader granted `limit` in all; an older (lower) grant changes nothing.
    pub(crate) fn grant(&mut self, limit: u64) {
        self.limit = self.limit.max(limit);
    }
}

/// The reader's side of a channel's credit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecvCredit {
    consumed: u64,
    granted: u64,
    credit: u64,
}

impl RecvCredit {
    /// A reader that lets its writer run `credit` bytes ahead of what it consumed.
    pub(crate) fn new(credit: u64) -> Self {
        RecvCredit {
            consumed: 0,
            granted: credit,
            credit,
        }
    }

    /// The application consumed `n` more bytes: the new limit to grant, if it is time.
    pub(crate) fn consumed(&mut self, n: u64) -> Option<u64> {
        self.consumed = self.consumed.saturating_add(n);
        if self.granted.saturating_sub(self.consumed) <= self.credit / 2 {
            self.granted = self.consumed.saturating_add(self.credit);
            Some(self.granted)
        } else {
            None
        }
    }

    /// Bytes the writer may still send beyond what was consumed.
    #[cfg(test)]
    pub(crate) fn outstanding(&self) -> u64 {
        self.granted.saturating_sub(self.consumed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writer_sends_at_most_its_limit_and_grants_only_raise_it() {
        let mut credit = SendCredit::new(100);
        assert_eq!(credit.available(), 100);
        credit.sent(60);
        assert_eq!(credit.available(), 40);
        credit.sent(40);
        assert_eq!(credit.available(), 0);
        credit.grant(150);
        assert_eq!(credit.available(), 50);
        credit.grant(120);
        assert_eq!(
            credit.available(),
            50,
            "a late, lower grant changes nothing"
        );
    }

    #[test]
    fn a_reader_grants_once_half_its_credit_is_consumed() {
        let mut credit = RecvCredit::new(100);
        assert_eq!(credit.consumed(40), None);
        assert_eq!(credit.consumed(10), Some(150));
        assert_eq!(credit.outstanding(), 100);
        assert_eq!(credit.consumed(49), None);
        assert_eq!(credit.consumed(1), Some(200));
    }

    #[test]
    fn a_writer_stalls_only_on_unread_data_and_never_exceeds_one_credit() {
        let mut writer = SendCredit::new(64);
        let mut reader = RecvCredit::new(64);
        let mut unread = 0u64;
        for round in 0..1000u64 {
            let n = writer.available().min(1 + round % 37);
            if n == 0 {
                assert!(unread > 32, "stalled with {unread} unread at round {round}");
            }
            writer.sent(n);
            unread += n;
            assert!(unread <= 64, "more than one credit unread");
            let read = unread.min(1 + round % 23);
            unread -= read;
            if let Some(limit) = reader.consumed(read) {
                writer.grant(limit);
            }
        }
    }
}
