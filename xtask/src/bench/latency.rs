//! Latency samples, one per timed operation, reduced to the percentiles the figures report.

use std::time::Duration;

/// The nearest-rank `p`-quantile (0 < p ≤ 1) of `samples` in microseconds: the smallest sample
/// that at least `p` of all samples do not exceed. Fails on no samples.
pub(crate) fn percentile_us(samples: &[Duration], p: f64) -> Result<f64, String> {
    if samples.is_empty() {
        return Err("no samples".into());
    }
    if !(p > 0.0 && p <= 1.0) {
        return Err(format!("no {p}-quantile"));
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    // The rank is ceil(p * n), 1-based; p ≤ 1 keeps it within n.
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Ok(sorted[rank - 1].as_secs_f64() * 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_in_microseconds() {
        let samples: Vec<Duration> = (1..=100).rev().map(Duration::from_micros).collect();
        assert_eq!(percentile_us(&samples, 0.5).unwrap(), 50.0);
        assert_eq!(percentile_us(&samples, 0.99).unwrap(), 99.0);
        assert_eq!(percentile_us(&samples, 1.0).unwrap(), 100.0);
        let one = [Duration::from_nanos(1500)];
        assert_eq!(percentile_us(&one, 0.5).unwrap(), 1.5);
        assert_eq!(percentile_us(&one, 0.99).unwrap(), 1.5);
        assert!(percentile_us(&[], 0.5).is_err());
        assert!(percentile_us(&one, 0.0).is_err());
    }
}
