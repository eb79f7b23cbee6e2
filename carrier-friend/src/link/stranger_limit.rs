//! The per-IP rate limit on strangers' handshakes, applied to quinn's `Incoming` before any
//! cryptography is done.
//!
//! A token bucket per source: an IPv4 address, or an IPv6 /64 (what one subscriber gets, so
//! what one attacker cheaply has); a peer reached through a relay is its relay session, not the
//! relay's address (every peer behind one relay would otherwise share one bucket, and one of
//! them could lock out the others; a session is as costly to make as a relay lets it be, which
//! the relay limits per source itself). The table of buckets is bounded; when it is full of recently
//! active sources, new ones share one overflow bucket, so a flood from many addresses cannot
//! grow memory, and cannot lock out sources already known either.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use carrier_dht::{Path, SessionId};

/// How many handshakes one source may start: a burst, then a steady rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StrangerLimit {
    /// Handshakes a source that has been quiet may start at once.
    pub burst: u32,
    /// Handshakes per second a source earns back.
    pub per_second: f64,
}

impl Default for StrangerLimit {
    /// 8 at once, then one every 2 s: far above what an honest node needs (one request, a few
    /// retries), far below what makes a flood cheap.
    fn default() -> Self {
        Self {
            burst: 8,
            per_second: 0.5,
        }
    }
}

/// Sources tracked at once, at most.
pub const MAX_TRACKED_SOURCES: usize = 4096;

/// Whom a bucket belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    V4([u8; 4]),
    V6Prefix([u8; 8]),
    /// A session at a relay.
    Relayed(SocketAddr, SessionId),
    /// Everyone who arrived while the table was full.
    Overflow,
}

impl Source {
    fn of(path: Path) -> Self {
        match path {
            Path::Relayed { relay, session } => {
                Source::Relayed(carrier_dht::canonical_addr(relay), session)
            }
            direct => Source::of_ip(direct.ip()),
        }
    }

    fn of_ip(ip: IpAddr) -> Self {
        match carrier_dht::canonical_ip(ip) {
            IpAddr::V4(v4) => Source::V4(v4.octets()),
            IpAddr::V6(v6) => {
                let mut prefix = [0u8; 8];
                prefix.copy_from_slice(&v6.octets()[..8]);
                Source::V6Prefix(prefix)
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Token buckets per source.
#[derive(Debug)]
pub(crate) struct StrangerLimiter {
    limit: StrangerLimit,
    buckets: Mutex<HashMap<Source, Bucket>>,
}

impl StrangerLimiter {
    pub(crate) fn new(limit: StrangerLimit) -> Self {
        Self {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one handshake from the bucket of `path`'s source at `now`; `false` when it is
    /// empty.
    pub(crate) fn admit(&self, path: Path, now: Instant) -> bool {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let burst = f64::from(self.limit.burst);
        let mut source = Source::of(path);
        if !buckets.contains_key(&source) && buckets.len() >= MAX_TRACKED_SOURCES {
            // Sources whose bucket has refilled are indistinguishable from new ones: forget
            // them first.
            let refill =
                Duration::from_secs_f64(burst / self.limit.per_second.max(f64::MIN_POSITIVE));
            buckets.retain(|s, b| {
                *s == Source::Overflow || now.saturating_duration_since(b.updated) < refill
            });
            if buckets.len() >= MAX_TRACKED_SOURCES {
                source = Source::Overflow;
            }
        }
        let bucket = buckets.entry(source).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        let earned =
            now.saturating_duration_since(bucket.updated).as_secs_f64() * self.limit.per_second;
        bucket.tokens = (bucket.tokens + earned).min(burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn direct(ip: &str) -> Path {
        Path::Direct(SocketAddr::new(ip.parse().unwrap(), 1))
    }

    #[test]
    fn relayed_peers_are_counted_by_session_not_by_relay() {
        let limiter = StrangerLimiter::new(StrangerLimit {
            burst: 2,
            per_second: 0.001,
        });
        let relay: SocketAddr = "192.0.2.9:4000".parse().unwrap();
        let session = |n| Path::Relayed {
            relay,
            session: SessionId(n),
        };
        let t0 = Instant::now();
        // Many peers behind one relay: each its own source.
        for n in 0..100 {
            assert!(limiter.admit(session(n), t0), "session {n}");
        }
        // A flood from one session empties its own bucket only.
        assert!(limiter.admit(session(0), t0));
        assert!(!limiter.admit(session(0), t0));
        assert!(limiter.admit(session(1), t0));
        assert!(
            limiter.admit(Path::Direct(relay), t0),
            "the relay's own address"
        );
    }

    #[test]
    fn a_burst_then_the_steady_rate() {
        let limiter = StrangerLimiter::new(StrangerLimit {
            burst: 3,
            per_second: 1.0,
        });
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        assert!((0..3).all(|_| limiter.admit(Path::Direct(SocketAddr::new(ip, 1)), t0)));
        assert!(!limiter.admit(Path::Direct(SocketAddr::new(ip, 1)), t0));
        assert!(limiter.admit(direct("192.0.2.2"), t0), "per source");
        assert!(limiter.admit(
            Path::Direct(SocketAddr::new(ip, 1)),
            t0 + Duration::from_secs(1)
        ));
        assert!(!limiter.admit(
            Path::Direct(SocketAddr::new(ip, 1)),
            t0 + Duration::from_secs(1)
        ));
    }

    #[test]
    fn an_ipv6_subscriber_is_one_source() {
        let limiter = StrangerLimiter::new(StrangerLimit {
            burst: 1,
            per_second: 0.001,
        });
        let t0 = Instant::now();
        assert!(limiter.admit(direct("2001:db8::1"), t0));
        assert!(!limiter.admit(direct("2001:db8::2"), t0));
        assert!(limiter.admit(direct("2001:db8:0:1::1"), t0));
    }

    #[test]
    fn a_flood_of_sources_shares_one_bucket() {
        let limiter = StrangerLimiter::new(StrangerLimit {
            burst: 1,
            per_second: 0.001,
        });
        let t0 = Instant::now();
        for i in 0..MAX_TRACKED_SOURCES as u32 {
            assert!(limiter.admit(
                Path::Direct(SocketAddr::new(IpAddr::V4((0x0a00_0000 + i).into()), 1)),
                t0
            ));
        }
        assert!(
            limiter.admit(direct("192.0.2.1"), t0),
            "the overflow bucket"
        );
        assert!(!limiter.admit(direct("192.0.2.2"), t0));
        assert!(limiter.buckets.lock().unwrap().len() <= MAX_TRACKED_SOURCES + 1);
    }
}
