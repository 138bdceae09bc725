//! The consistency check behind the exactly-once invariant: counters,
//! rollups and the registry must equal what a full scan of the stored events
//! gives. Used by `vigia verify` and by the tests.

use std::collections::BTreeMap;

use vigia_domain::{Projection, RollupGrain};
use vigia_store::Store;

/// Where the projections disagree with a scan; empty when consistent.
#[derive(Debug, Default, PartialEq)]
pub struct Report {
    pub events: u64,
    pub mismatches: Vec<String>,
}

/// Scans every stored event and compares counters, rollups and registry.
pub async fn verify(store: &Store) -> anyhow::Result<Report> {
    let events = store.all_events().await?;
    let mut report = Report { events: events.len() as u64, mismatches: Vec::new() };
    let mut seen = std::collections::HashSet::new();
    for e in &events {
        if !seen.insert(e.id) {
            report.mismatches.push(format!("event {} stored twice", e.id));
        }
    }
    let mut expected = Projection::of(&events);
    // Retention removed events but not their counts: add what it accounts for,
    // and compare rollups and traffic only from the horizon on.
    let retired = store.retired().await?;
    let horizon = store.horizon().await?.unwrap_or(i64::MIN);
    for r in &retired {
        expected.count_retired(&r.tag, r.count as u64, r.errors as u64);
    }
    if let Some(e) = events.iter().find(|e| e.reading.ts_ms.div_euclid(3_600_000) * 3_600_000 < horizon) {
        report.mismatches.push(format!("event {} is older than the retention horizon {horizon}", e.id));
    }

    let counters: BTreeMap<String, (u64, u64)> =
        store.counters().await?.into_iter().map(|c| (c.prefix, (c.ok as u64, c.errors as u64))).collect();
    let want: BTreeMap<String, (u64, u64)> =
        expected.counters().into_iter().map(|(k, c)| (k, (c.ok, c.error))).collect();
    diff(&mut report, "counter", &want, &counters);

    for grain in RollupGrain::ALL {
        let got: BTreeMap<(String, i64), (u64, Approx, f64, f64)> = store
            .rollups(grain.as_str())
            .await?
            .into_iter()
            .filter(|r| r.bucket >= horizon)
            .map(|r| ((r.tag, r.bucket), (r.count as u64, Approx(r.sum), r.min, r.max)))
            .collect();
        let want: BTreeMap<(String, i64), (u64, Approx, f64, f64)> = expected
            .rollups()
            .filter(|(_, g, b, _)| *g == grain && *b >= horizon)
            .map(|(t, _, b, r)| ((t.to_owned(), b), (r.count, Approx(r.sum), r.min, r.max)))
            .collect();
        diff(&mut report, &format!("rollup/{}", grain.as_str()), &want, &got);
    }

    for grain in [RollupGrain::Minute, RollupGrain::Hour] {
        let got: BTreeMap<(String, i64), (u64, u64)> = store
            .traffic(grain.as_str(), horizon, i64::MAX)
            .await?
            .into_iter()
            .map(|t| ((t.root, t.bucket), (t.ok as u64, t.errors as u64)))
            .collect();
        let want: BTreeMap<(String, i64), (u64, u64)> = expected
            .traffic
            .iter()
            .filter(|((_, g, b), _)| *g == grain && *b >= horizon)
            .map(|((root, _, b), c)| ((root.clone(), *b), (c.ok, c.error)))
            .collect();
        diff(&mut report, &format!("traffic/{}", grain.as_str()), &want, &got);
    }

    // The registry counts what retention removed; its first reading may be gone.
    let retired_tags: std::collections::HashSet<&str> = retired.iter().map(|r| r.tag.as_str()).collect();
    let got: BTreeMap<String, (u64, Option<i64>, Option<i64>)> = store
        .sensors()
        .await?
        .into_iter()
        .map(|s| {
            let gone = retired_tags.contains(s.tag.as_str());
            (s.tag.clone(), (s.count as u64, (!gone).then_some(s.first_seen), (!gone).then_some(s.last_seen)))
        })
        .collect();
    let want: BTreeMap<String, (u64, Option<i64>, Option<i64>)> = expected
        .tags
        .iter()
        .map(|t| {
            let (gone, s) = (retired_tags.contains(t.tag.as_str()), &t.sensor);
            (t.tag.clone(), (s.count, (!gone).then_some(s.first_seen_ms), (!gone).then_some(s.last_seen_ms)))
        })
        .collect();
    diff(&mut report, "sensor", &want, &got);
    Ok(report)
}

/// A sum compared with a relative tolerance: batches add in another order than a scan.
#[derive(Debug, Clone, Copy)]
struct Approx(f64);

impl PartialEq for Approx {
    fn eq(&self, other: &Self) -> bool {
        (self.0 - other.0).abs() <= 1e-9 * self.0.abs().max(other.0.abs()).max(1.0)
    }
}

fn diff<K: Ord + std::fmt::Debug, V: PartialEq + std::fmt::Debug>(
    report: &mut Report,
    what: &str,
    want: &BTreeMap<K, V>,
    got: &BTreeMap<K, V>,
) {
    for (k, w) in want {
        match got.get(k) {
            Some(g) if g == w => {}
            other => report.mismatches.push(format!("{what} {k:?}: scan says {w:?}, store says {other:?}")),
        }
    }
    for k in got.keys().filter(|k| !want.contains_key(k)) {
        report.mismatches.push(format!("{what} {k:?} exists but no stored event accounts for it"));
    }
}
