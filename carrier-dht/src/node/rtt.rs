//! Round-trip time estimates per peer, as TCP keeps them (RFC 6298), for adaptive timeouts.

use std::time::Duration;

/// Smoothed RTT and its variation for one peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RttEstimator {
    srtt: Duration,
    rttvar: Duration,
}

impl RttEstimator {
    /// The estimate after a first sample.
    pub fn new(sample: Duration) -> Self {
        Self {
            srtt: sample,
            rttvar: sample / 2,
        }
    }

    /// Folds in a new sample (gains 1/8 and 1/4, as RFC 6298).
    pub fn update(&mut self, sample: Duration) {
        let diff = self.srtt.abs_diff(sample);
        self.rttvar = (self.rttvar * 3 + diff) / 4;
        self.srtt = (self.srtt * 7 + sample) / 8;
    }

    /// Smoothed RTT.
    pub fn srtt(&self) -> Duration {
        self.srtt
    }

    /// Retransmission timeout: SRTT + 4 RTTVAR, clamped.
    pub fn rto(&self, min: Duration, max: Duration) -> Duration {
        (self.srtt + self.rttvar * 4).clamp(min, max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rto_tracks_a_steady_rtt() {
        let mut rtt = RttEstimator::new(Duration::from_millis(100));
        for _ in 0..50 {
            rtt.update(Duration::from_millis(100));
        }
        let rto = rtt.rto(Duration::from_millis(10), Duration::from_secs(10));
        assert!(rto >= Duration::from_millis(100) && rto < Duration::from_millis(120));
    }
}
