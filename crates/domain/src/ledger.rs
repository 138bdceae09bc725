//! Which stream sequences a projection has applied, as sorted ranges.
//!
//! Acks can be lost and messages redelivered (design: crash between commit
//! and ack, two persisters on one consumer), so exactly-once comes from this
//! ledger, committed in the same transaction as the changes it guards. One
//! persister applies mostly contiguous runs, so the ranges stay few.

use serde::{Deserialize, Serialize};

/// Applied sequences as disjoint, sorted, inclusive ranges, with a version
/// bumped on every commit for optimistic concurrency.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    pub version: u64,
    pub ranges: Vec<(u64, u64)>,
}

impl Ledger {
    pub fn contains(&self, seq: u64) -> bool {
        let i = self.ranges.partition_point(|(_, hi)| *hi < seq);
        self.ranges.get(i).is_some_and(|(lo, _)| *lo <= seq)
    }

    /// Marks a sequence applied, merging neighbouring ranges.
    pub fn insert(&mut self, seq: u64) {
        let i = self.ranges.partition_point(|(_, hi)| hi.saturating_add(1) < seq);
        match self.ranges.get(i) {
            Some(&(lo, hi)) if lo <= seq.saturating_add(1) => {
                let mut merged = (lo.min(seq), hi.max(seq));
                if let Some(&(next_lo, next_hi)) = self.ranges.get(i + 1)
                    && next_lo <= merged.1 + 1
                {
                    merged.1 = merged.1.max(next_hi);
                    self.ranges.remove(i + 1);
                }
                self.ranges[i] = merged;
            }
            _ => self.ranges.insert(i, (seq, seq)),
        }
    }

    /// The end of the run of applied sequences that starts at `from`:
    /// the highest `h` with every sequence in `from..=h` applied, or
    /// `from - 1` when `from` itself is not. A cumulative ack may cover no
    /// more than this (the persister's acks, `workers/acks.rs`).
    pub fn run_end(&self, from: u64) -> u64 {
        let i = self.ranges.partition_point(|(_, hi)| *hi < from);
        match self.ranges.get(i) {
            Some(&(lo, hi)) if lo <= from => hi,
            _ => from.saturating_sub(1),
        }
    }

    /// Number of sequences applied.
    pub fn count(&self) -> u64 {
        self.ranges.iter().map(|(lo, hi)| hi - lo + 1).sum()
    }

    /// Sequences in `1..=last` never applied (for audits and tests).
    pub fn gaps(&self, last: u64) -> Vec<(u64, u64)> {
        let mut gaps = Vec::new();
        let mut next = 1;
        for &(lo, hi) in &self.ranges {
            if lo > next {
                gaps.push((next, (lo - 1).min(last)));
            }
            next = hi + 1;
        }
        if next <= last {
            gaps.push((next, last));
        }
        gaps.retain(|(lo, hi)| lo <= hi && *lo <= last);
        gaps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn merges_runs() {
        let mut l = Ledger::default();
        for s in [1, 2, 3, 7, 5, 6, 9] {
            l.insert(s);
        }
        assert_eq!(l.ranges, [(1, 3), (5, 7), (9, 9)]);
        l.insert(4);
        assert_eq!(l.ranges, [(1, 7), (9, 9)]);
        assert!(l.contains(7) && !l.contains(8) && l.contains(9));
        assert_eq!(l.gaps(12), [(8, 8), (10, 12)]);
        assert_eq!(l.count(), 8);
        assert_eq!(l.run_end(1), 7);
        assert_eq!(l.run_end(5), 7);
        assert_eq!(l.run_end(8), 7, "8 is not applied: the run is empty");
        assert_eq!(l.run_end(9), 9);
        assert_eq!(l.run_end(10), 9);
        assert_eq!(Ledger::default().run_end(1), 0);
    }

    proptest! {
        #[test]
        fn behaves_like_a_set(seqs in prop::collection::vec(1u64..200, 0..300)) {
            let mut l = Ledger::default();
            let mut set = std::collections::BTreeSet::new();
            for s in &seqs {
                l.insert(*s);
                set.insert(*s);
            }
            for s in 0..210 {
                prop_assert_eq!(l.contains(s), set.contains(&s));
            }
            prop_assert_eq!(l.count(), set.len() as u64);
            for from in 1..205u64 {
                let end = l.run_end(from);
                prop_assert!((from..=end).all(|s| set.contains(&s)));
                prop_assert!(!set.contains(&(end + 1)));
            }
            prop_assert!(l.ranges.windows(2).all(|w| w[0].1 + 1 < w[1].0));
        }
    }
}
