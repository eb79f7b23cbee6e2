//! Where a lookup's rounds go: for each of the true K closest, the hop at which the lookup
//! first heard of it and the round trip at which it answered; and how full routing tables
//! are against an ideal one.

use std::fmt;

use crate::node::query::QueryTrace;
use crate::wire::key::Key;

/// Where the rounds of a scenario's lookups go (see docs/ARCHITECTURE.md, "Lookups").
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LookupSummary {
    /// Lookups traced.
    pub lookups: usize,
    /// Index `d - 1`: true K closest first named at hop depth `d` (1: in the asker's table).
    pub learned_at: Vec<u64>,
    /// Index `w - 1`: true K closest that answered a request of wave `w`, the round trips
    /// on the chain of answers that led to asking it (1: the first requests).
    pub answered_at: Vec<u64>,
    /// True K closest the lookup never heard of.
    pub never_learned: u64,
    /// True K closest it heard of but that never answered it.
    pub never_answered: u64,
    /// Index `r`: lookups whose rounds figure (greatest hop depth among the result) is `r`.
    pub rounds: Vec<u64>,
    /// Index `w`: lookups whose last answer among the result came in wave `w`: the round
    /// trips actually waited.
    pub waves: Vec<u64>,
    /// Requests sent and answers received by the traced lookups, all together.
    pub datagrams: u64,
    /// Index `b`: mean entries of bucket `b` in the sampled nodes' tables, and the mean of
    /// the ideal, `min(K, live servers that fall in bucket b)`.
    pub buckets: Vec<(f64, f64)>,
    /// Nodes whose tables were sampled.
    pub sampled: usize,
}

fn bump(counts: &mut Vec<u64>, index: usize) {
    if counts.len() <= index {
        counts.resize(index + 1, 0);
    }
    counts[index] += 1;
}

impl LookupSummary {
    /// Adds one finished lookup: its trace and the true K closest to its target.
    pub(crate) fn add_lookup(&mut self, trace: &QueryTrace, truth: &[Key]) {
        self.lookups += 1;
        self.datagrams += u64::from(trace.datagrams);
        let mut rounds = 0;
        let mut wave = 0;
        for key in truth {
            let Some(c) = trace.candidates.iter().find(|c| c.id == *key) else {
                self.never_learned += 1;
                continue;
            };
            bump(&mut self.learned_at, c.learned.saturating_sub(1) as usize);
            rounds = rounds.max(c.learned);
            match c.answered {
                Some(w) => {
                    bump(&mut self.answered_at, w.saturating_sub(1) as usize);
                    wave = wave.max(w);
                }
                None => self.never_answered += 1,
            }
        }
        bump(&mut self.rounds, rounds as usize);
        bump(&mut self.waves, wave as usize);
    }

    /// Adds one node's buckets: per index, (entries held, ideal).
    pub(crate) fn add_table(&mut self, fill: &[(usize, usize)]) {
        let n = self.sampled as f64;
        if self.buckets.len() < fill.len() {
            self.buckets.resize(fill.len(), (0.0, 0.0));
        }
        for (b, mean) in self.buckets.iter_mut().enumerate() {
            let (held, ideal) = fill.get(b).copied().unwrap_or((0, 0));
            mean.0 = (mean.0 * n + held as f64) / (n + 1.0);
            mean.1 = (mean.1 * n + ideal as f64) / (n + 1.0);
        }
        self.sampled += 1;
    }
}

impl fmt::Display for LookupSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |counts: &[u64], from: usize| {
            counts
                .iter()
                .enumerate()
                .skip(from)
                .map(|(i, n)| format!("{}:{n}", i + 1 - from))
                .collect::<Vec<_>>()
                .join(" ")
        };
        writeln!(
            f,
            "{} lookups, {:.1} datagrams each; true K closest by hop first named (depth:count) {}, never {}",
            self.lookups,
            self.datagrams as f64 / self.lookups.max(1) as f64,
            list(&self.learned_at, 0),
            self.never_learned
        )?;
        writeln!(
            f,
            "  by wave answered {}, never {}",
            list(&self.answered_at, 0),
            self.never_answered
        )?;
        writeln!(
            f,
            "  lookups by rounds {}; by waves waited {}",
            list(&self.rounds, 1),
            list(&self.waves, 1)
        )?;
        let buckets: Vec<String> = self
            .buckets
            .iter()
            .enumerate()
            .map(|(b, (held, ideal))| format!("{b}:{held:.1}/{ideal:.1}"))
            .collect();
        write!(
            f,
            "  buckets of {} nodes (index:held/ideal) {}",
            self.sampled,
            buckets.join(" ")
        )
    }
}
