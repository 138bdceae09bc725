//! Loaded datasets kept in memory for queries, least recently used out.
//!
//! A dataset never changes once loaded (a new upload under the same name
//! needs a DELETE first, and gets a new job), so an entry is keyed by name
//! and job and needs no invalidation beyond a DELETE. The bound is on the
//! bytes of the cells; a dataset larger than the whole cache is read from
//! the store on every query instead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A dataset's rows in file order, each a cell per column.
pub(crate) type Rows = Arc<Vec<Vec<String>>>;

/// Shared by every handler; cheap to clone.
#[derive(Clone, Debug)]
pub struct DatasetCache {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    capacity: u64,
    used: u64,
    tick: u64,
    entries: HashMap<String, Entry>,
}

#[derive(Debug)]
struct Entry {
    job: String,
    rows: Rows,
    bytes: u64,
    used_at: u64,
}

impl DatasetCache {
    /// A cache of at most `capacity` bytes of cells (0: nothing is kept).
    pub fn new(capacity: u64) -> DatasetCache {
        DatasetCache { inner: Arc::new(Mutex::new(Inner { capacity, used: 0, tick: 0, entries: HashMap::new() })) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The rows of `name` as loaded by `job`, if kept.
    pub(crate) fn get(&self, name: &str, job: &str) -> Option<Rows> {
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        let entry = inner.entries.get_mut(name).filter(|e| e.job == job)?;
        entry.used_at = tick;
        Some(entry.rows.clone())
    }

    /// Keeps `rows`, evicting the least recently used until they fit.
    pub(crate) fn put(&self, name: &str, job: &str, rows: Rows) {
        let bytes: u64 = rows.iter().flatten().map(|c| c.len() as u64 + 24).sum::<u64>() + rows.len() as u64 * 24;
        let mut inner = self.lock();
        if bytes > inner.capacity {
            return;
        }
        if let Some(old) = inner.entries.remove(name) {
            inner.used -= old.bytes;
        }
        while inner.used + bytes > inner.capacity {
            let Some(oldest) = inner.entries.iter().min_by_key(|(_, e)| e.used_at).map(|(k, _)| k.clone()) else {
                break;
            };
            let gone = inner.entries.remove(&oldest).expect("found above");
            inner.used -= gone.bytes;
        }
        inner.tick += 1;
        let used_at = inner.tick;
        inner.used += bytes;
        inner.entries.insert(name.to_owned(), Entry { job: job.to_owned(), rows, bytes, used_at });
    }

    /// Drops `name` (after a DELETE).
    pub(crate) fn forget(&self, name: &str) {
        let mut inner = self.lock();
        if let Some(old) = inner.entries.remove(name) {
            inner.used -= old.bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize) -> Rows {
        Arc::new((0..n).map(|i| vec![format!("{i:08}")]).collect())
    }

    #[test]
    fn least_recently_used_goes_first_and_jobs_must_match() {
        let one = rows(10).iter().flatten().map(|c| c.len() as u64 + 24).sum::<u64>() + 240;
        let cache = DatasetCache::new(one * 2);
        cache.put("a", "j1", rows(10));
        cache.put("b", "j2", rows(10));
        assert!(cache.get("a", "j1").is_some());
        assert!(cache.get("a", "other").is_none(), "another load of the same name is not this one");
        cache.put("c", "j3", rows(10));
        assert!(cache.get("b", "j2").is_none(), "b was used least recently");
        assert!(cache.get("a", "j1").is_some() && cache.get("c", "j3").is_some());
        cache.forget("a");
        assert!(cache.get("a", "j1").is_none());
        cache.put("huge", "j4", rows(100));
        assert!(cache.get("huge", "j4").is_none(), "larger than the cache: not kept");
    }
}
