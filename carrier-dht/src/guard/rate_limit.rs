//! Limits applied before any expensive work: a token bucket per source IP, and the one
//! per-second budget type the node uses for its global caps (Diffie-Hellman operations,
//! probe requests passed on for others).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::guard::lru::BoundedLru;
use crate::wire::path::canonical_ip;

/// A token bucket: `rate` tokens per second, at most `burst` saved up.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens_milli: u64,
    updated: Instant,
}

impl Bucket {
    fn take(&mut self, now: Instant, rate_per_sec: u32, burst: u32) -> bool {
        let elapsed = now.saturating_duration_since(self.updated);
        self.updated = now;
        let refill = (elapsed.as_micros() as u64).saturating_mul(u64::from(rate_per_sec)) / 1000;
        let cap = u64::from(burst) * 1000;
        self.tokens_milli = self.tokens_milli.saturating_add(refill).min(cap);
        if self.tokens_milli >= 1000 {
            self.tokens_milli -= 1000;
            true
        } else {
            false
        }
    }
}

/// Packets per second from each source IP. The table of IPs is bounded (least recently seen
/// forgotten first), so spoofing many sources costs memory only up to the cap; a forgotten IP
/// starts again with a full burst, which bounds what it can gain.
#[derive(Debug)]
pub(crate) struct IpRateLimit {
    buckets: BoundedLru<IpAddr, Bucket>,
    rate_per_sec: u32,
    burst: u32,
}

impl IpRateLimit {
    pub(crate) fn new(capacity: usize, rate_per_sec: u32, burst: u32) -> Self {
        Self {
            buckets: BoundedLru::new(capacity),
            rate_per_sec,
            burst: burst.max(1),
        }
    }

    /// Whether a packet from `ip` may be processed now.
    pub(crate) fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        let ip = sender_unit(ip);
        let (rate, burst) = (self.rate_per_sec, self.burst);
        if let Some(bucket) = self.buckets.get_mut(&ip) {
            return bucket.take(now, rate, burst);
        }
        let mut bucket = Bucket {
            tokens_milli: u64::from(burst) * 1000,
            updated: now,
        };
        let allowed = bucket.take(now, rate, burst);
        self.buckets.insert(ip, bucket);
        allowed
    }

    pub(crate) fn tracked(&self) -> usize {
        self.buckets.len()
    }

    pub(crate) fn capacity(&self) -> usize {
        self.buckets.capacity()
    }
}

/// The unit one sender controls: an IPv4 address, or an IPv6 /64 (a single host is commonly
/// given a whole /64, so counting IPv6 addresses one by one would let it multiply its rate).
fn sender_unit(ip: IpAddr) -> IpAddr {
    match canonical_ip(ip) {
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::V6(octets.into())
        }
        v4 => v4,
    }
}

/// At most `per_sec` actions in each one-second window, whatever their source. For
/// Diffie-Hellman operations: a flood of packets from fresh identities cannot make the node
/// spend more CPU on key agreement than this; for probe help: the node cannot be made to
/// send more probes for others than this; for relaying, counted in bytes: a relay forwards
/// no more than its bandwidth budget.
#[derive(Debug)]
pub(crate) struct PerSecondBudget {
    per_sec: u32,
    window_start: Option<Instant>,
    used: u32,
    total: u64,
    windows: u64,
}

impl PerSecondBudget {
    pub(crate) fn new(per_sec: u32) -> Self {
        Self {
            per_sec,
            window_start: None,
            used: 0,
            total: 0,
            windows: 0,
        }
    }

    /// Starts a new window if the current one is a second old.
    fn roll(&mut self, now: Instant) {
        let fresh = match self.window_start {
            Some(start) => now.saturating_duration_since(start) >= Duration::from_secs(1),
            None => true,
        };
        if fresh {
            self.window_start = Some(now);
            self.used = 0;
            self.windows += 1;
        }
    }

    /// Takes one operation from the budget, or says the budget is spent.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        self.take_many(now, 1)
    }

    /// Takes `amount` units (bytes, for a bandwidth budget) at once, or none of them if
    /// fewer are left in this window.
    pub(crate) fn take_many(&mut self, now: Instant, amount: u32) -> bool {
        self.roll(now);
        if self.per_sec - self.used < amount {
            return false;
        }
        self.used += amount;
        self.total += u64::from(amount);
        true
    }

    /// The window current at `now`, numbered from 1 (rolling it over if it is a second
    /// old), so a caller can keep per-window state of its own in step with the budget.
    pub(crate) fn window(&mut self, now: Instant) -> u64 {
        self.roll(now);
        self.windows
    }

    /// The whole budget of a window.
    pub(crate) fn per_sec(&self) -> u32 {
        self.per_sec
    }

    /// Operations done since the node started.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_bucket_allows_burst_then_rate() {
        let start = Instant::now();
        let mut limit = IpRateLimit::new(16, 10, 5);
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        let allowed = (0..20).filter(|_| limit.allow(ip, start)).count();
        assert_eq!(allowed, 5);
        assert!(limit.allow(ip, start + Duration::from_millis(100)));
        assert!(!limit.allow(ip, start + Duration::from_millis(100)));
    }

    #[test]
    fn an_ipv6_slash_64_shares_one_bucket() {
        let start = Instant::now();
        let mut limit = IpRateLimit::new(16, 1, 2);
        let a: IpAddr = "2001:db8::1".parse().expect("ip");
        let b: IpAddr = "2001:db8::ffff:2".parse().expect("ip");
        assert!(limit.allow(a, start) && limit.allow(b, start));
        assert!(!limit.allow(b, start));
        assert!(limit.allow("2001:db8:0:1::1".parse().expect("ip"), start));
    }

    #[test]
    fn dh_budget_resets_each_second() {
        let start = Instant::now();
        let mut budget = PerSecondBudget::new(3);
        assert_eq!((0..10).filter(|_| budget.take(start)).count(), 3);
        assert!(budget.take(start + Duration::from_secs(1)));
        assert_eq!(budget.total(), 4);
    }

    #[test]
    fn a_byte_budget_takes_all_or_nothing() {
        let start = Instant::now();
        let mut budget = PerSecondBudget::new(1000);
        assert_eq!(budget.window(start), 1);
        assert!(budget.take_many(start, 600));
        assert!(!budget.take_many(start, 401));
        assert!(budget.take_many(start, 400));
        assert_eq!(budget.window(start + Duration::from_secs(1)), 2);
        assert!(budget.take_many(start + Duration::from_secs(1), 1000));
        assert_eq!(budget.total(), 2000);
    }
}
