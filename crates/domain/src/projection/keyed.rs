//! Values keyed by a small key, in order of first appearance, for the
//! projection of one tag's events.
//!
//! A pull usually holds a few readings of each tag, so a linear scan of a
//! handful of entries beats any map. One sensor's backfill can hold tens of
//! thousands of minutes in one pull, where a scan per reading would be
//! quadratic: past [`SCAN`] entries, lookups go through a hash index.

use std::collections::HashMap;
use std::hash::Hash;

/// Entries scanned before an index is built.
const SCAN: usize = 16;

#[derive(Debug)]
pub(super) struct Keyed<K, V> {
    entries: Vec<(K, V)>,
    index: HashMap<K, usize>,
}

impl<K: Copy + Eq + Hash, V> Keyed<K, V> {
    pub(super) fn new() -> Keyed<K, V> {
        Keyed { entries: Vec::new(), index: HashMap::new() }
    }

    /// The value of `key`, made by `make` if it is new.
    pub(super) fn entry(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        // Readings mostly come in time order: the last bucket is the likely one.
        if let Some((k, _)) = self.entries.last()
            && *k == key
        {
            return &mut self.entries.last_mut().expect("checked").1;
        }
        let found = if self.entries.len() <= SCAN {
            self.entries.iter().rposition(|(k, _)| *k == key)
        } else {
            self.index.get(&key).copied()
        };
        let at = found.unwrap_or_else(|| {
            self.entries.push((key, make()));
            let at = self.entries.len() - 1;
            if self.entries.len() > SCAN {
                if self.index.is_empty() {
                    self.index.extend(self.entries.iter().enumerate().map(|(i, (k, _))| (*k, i)));
                } else {
                    self.index.insert(key, at);
                }
            }
            at
        });
        &mut self.entries[at].1
    }

    /// The entries, in order of first appearance.
    pub(super) fn into_entries(self) -> Vec<(K, V)> {
        self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_key_before_and_after_the_index_is_built() {
        let mut keyed: Keyed<u32, u32> = Keyed::new();
        for round in 1..=3 {
            for key in (0..100).rev() {
                *keyed.entry(key, || 0) += 1;
                assert_eq!(*keyed.entry(key, || 0), round, "key {key} in round {round}");
            }
        }
        let entries = keyed.into_entries();
        assert_eq!(entries.len(), 100);
        assert_eq!(entries[0], (99, 3), "in order of first appearance");
        assert_eq!(entries[99], (0, 3));
    }
}
