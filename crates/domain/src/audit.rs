//! Loss accounting: what the log says was recorded against what the store
//! holds, per tag. Pure: the caller reads both sides and hands them in.
//!
//! An event the log holds (and no retraction removed) must be stored exactly
//! once. One that is not stored is a **gap**, unless its message was
//! dead-lettered (then it is listed as such). One stored twice is a
//! **duplicate**; there must be none. Stored events the log no longer holds
//! (older than the stream keeps) are counted apart, not as errors.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::reading::EventId;

/// An event as the log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    pub id: EventId,
    pub tag: String,
}

/// One tag's account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagAudit {
    pub tag: String,
    /// Events the log holds for this tag (after retractions).
    pub in_log: u64,
    /// Distinct events of this tag in the store.
    pub stored: u64,
    /// Lowest and highest stream sequence of the tag's logged events.
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Logged events the store does not have.
    pub gaps: Vec<EventId>,
    /// Events the store holds more than once.
    pub duplicates: Vec<EventId>,
    /// Messages of this tag set aside as dead letters.
    pub dead_lettered: Vec<u64>,
    /// Stored events the log no longer holds (past the stream's retention).
    pub beyond_log: u64,
}

/// Reconciles `logged` (minus `retracted`) with `stored`, given the
/// dead-lettered sequences and the first sequence the log still holds.
pub fn reconcile(
    logged: &[Logged],
    retracted: &HashSet<EventId>,
    stored: &[(EventId, String)],
    dead: &BTreeSet<u64>,
    log_first_seq: u64,
) -> Vec<TagAudit> {
    let mut tags: BTreeMap<String, TagAudit> = BTreeMap::new();
    let mut times: HashMap<EventId, u32> = HashMap::new();
    for (id, tag) in stored {
        let n = times.entry(*id).or_default();
        *n += 1;
        let t = entry(&mut tags, tag);
        if *n == 1 {
            t.stored += 1;
        } else if *n == 2 {
            t.duplicates.push(*id);
        }
        if id.seq < log_first_seq {
            t.beyond_log += u64::from(*n == 1);
        }
    }
    for l in logged.iter().filter(|l| !retracted.contains(&l.id)) {
        let t = entry(&mut tags, &l.tag);
        t.in_log += 1;
        t.first_seq = Some(t.first_seq.map_or(l.id.seq, |s| s.min(l.id.seq)));
        t.last_seq = Some(t.last_seq.map_or(l.id.seq, |s| s.max(l.id.seq)));
        if times.contains_key(&l.id) {
            continue;
        }
        if dead.contains(&l.id.seq) {
            if t.dead_lettered.last() != Some(&l.id.seq) {
                t.dead_lettered.push(l.id.seq);
            }
        } else {
            t.gaps.push(l.id);
        }
    }
    for t in tags.values_mut() {
        t.gaps.sort();
        t.duplicates.sort();
        t.dead_lettered.sort();
        t.dead_lettered.dedup();
    }
    tags.into_values().collect()
}

fn entry<'a>(tags: &'a mut BTreeMap<String, TagAudit>, tag: &str) -> &'a mut TagAudit {
    tags.entry(tag.to_owned()).or_insert_with(|| TagAudit { tag: tag.to_owned(), ..TagAudit::default() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(seq: u64, idx: u32) -> EventId {
        EventId { seq, idx }
    }

    #[test]
    fn gaps_duplicates_dead_letters_and_retractions_are_told_apart() {
        let log = |seq, idx, tag: &str| Logged { id: id(seq, idx), tag: tag.into() };
        let logged =
            vec![log(10, 0, "a.x"), log(11, 0, "a.x"), log(12, 0, "a.x"), log(13, 0, "a.y"), log(13, 1, "a.y")];
        let retracted: HashSet<EventId> = [id(12, 0)].into();
        let stored = vec![
            (id(10, 0), "a.x".into()),
            (id(10, 0), "a.x".into()),
            (id(13, 1), "a.y".into()),
            (id(3, 0), "a.x".into()),
        ];
        let dead: BTreeSet<u64> = [13].into();
        let audit = reconcile(&logged, &retracted, &stored, &dead, 5);
        let x = &audit[0];
        assert_eq!((x.tag.as_str(), x.in_log, x.stored), ("a.x", 2, 2));
        assert_eq!(x.gaps, vec![id(11, 0)], "12-0 was retracted, 11-0 is missing");
        assert_eq!(x.duplicates, vec![id(10, 0)]);
        assert_eq!((x.beyond_log, x.first_seq, x.last_seq), (1, Some(10), Some(11)));
        let y = &audit[1];
        assert_eq!((y.in_log, y.stored, y.gaps.len()), (2, 1, 0));
        assert_eq!(y.dead_lettered, vec![13], "the missing 13-0 is accounted as a dead letter");
    }
}
