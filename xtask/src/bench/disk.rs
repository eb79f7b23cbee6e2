//! `disk.commit_us_p50`: one small commit with fsync through the node's [`Store`] (redb, one
//! writer thread), on the disk the bench's data directories are on: the floor under every
//! durable round trip, which commits at least once on each side.
//!
//! Each run opens a fresh store in a scratch directory under `target/bench/scratch/`, then
//! writes `scale.commits` rows one at a time: each [`Store::write`] inserts one 64-byte row and
//! waits until the writer thread has committed it (redb's default durability: fsync before the
//! commit returns). Nothing else writes, so every write is its own transaction; each is timed
//! from the call to its return, so the figure includes the hop to the writer thread and back,
//! as every layer's commit does.

use super::latency::percentile_us;
use super::scratch::Scratch;
use super::{transfer, Scale};
use carrier_friend::dht::store::Store;
use redb::TableDefinition;
use std::time::Instant;

/// The bench's own table; nothing else opens this store.
const ROWS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("bench/commit");

/// The size of each row's value: a small record, as a message receipt or an outbox index is.
const ROW_BYTES: usize = 64;

/// One run: returns the median commit in µs.
pub(crate) fn measure(scale: &Scale) -> Result<f64, String> {
    let count = scale.commits;
    if count == 0 {
        return Err("no commits to time".into());
    }
    let dir = Scratch::new("disk")?;
    let store = Store::open(dir.path()).map_err(|e| format!("cannot open the store: {e}"))?;
    let samples = transfer::on_runtime(async move {
        let mut samples = Vec::with_capacity(count);
        for key in 0..count as u64 {
            let started = Instant::now();
            store
                .write(move |txn| {
                    let value = [key as u8; ROW_BYTES];
                    txn.open_table(ROWS)?.insert(key, &value[..])?;
                    Ok(())
                })
                .await
                .map_err(|e| format!("commit {key} failed: {e}"))?;
            samples.push(started.elapsed());
        }
        let commits = store.stats().commits;
        if commits < count as u64 {
            return Err(format!("{count} writes took only {commits} commits"));
        }
        Ok(samples)
    })?;
    percentile_us(&samples, 0.50)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_are_timed_one_by_one() {
        let scale = Scale {
            commits: 20,
            ..crate::bench::Mode::Quick.scale()
        };
        let us = measure(&scale).unwrap();
        assert!(us > 0.0 && us < 10_000_000.0, "{us}");
    }
}
