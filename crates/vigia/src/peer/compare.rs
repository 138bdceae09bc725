//! The honesty check and the table of `vigia peer`: both systems' answers
//! held against what the dataset's generator knows, and the figures side by side.

use std::collections::BTreeMap;
use std::fmt;

/// Relative tolerance for means: the systems sum the same doubles in other orders.
pub(super) const MEAN_TOLERANCE: f64 = 1e-9;

/// How one system's answer compares with the expected one.
#[derive(Debug, Clone, PartialEq)]
pub struct Agreement {
    /// Groups whose value matches.
    pub matched: usize,
    /// Groups expected.
    pub expected: usize,
    /// Groups in the answer that were not expected.
    pub unexpected: usize,
    /// Largest relative difference among the groups present in both.
    pub max_rel_diff: f64,
    /// The first group that does not match, with both values.
    pub first_mismatch: Option<String>,
}

impl Agreement {
    pub fn holds(&self) -> bool {
        self.matched == self.expected && self.unexpected == 0
    }
}

impl fmt::Display for Agreement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.holds() { "agree" } else { "DISAGREE" };
        write!(f, "{}/{} {verdict} (max relative difference {:.1e}", self.matched, self.expected, self.max_rel_diff)?;
        if self.unexpected > 0 {
            write!(f, ", {} unexpected", self.unexpected)?;
        }
        if let Some(m) = &self.first_mismatch {
            write!(f, "; first: {m}")?;
        }
        write!(f, ")")
    }
}

/// Compares `got` with `expected` group by group within `tolerance` (relative).
pub(super) fn agree(expected: &BTreeMap<String, f64>, got: &BTreeMap<String, f64>, tolerance: f64) -> Agreement {
    let mut a = Agreement {
        matched: 0,
        expected: expected.len(),
        unexpected: got.keys().filter(|k| !expected.contains_key(*k)).count(),
        max_rel_diff: 0.0,
        first_mismatch: None,
    };
    for (key, want) in expected {
        let Some(have) = got.get(key) else {
            a.first_mismatch.get_or_insert_with(|| format!("{key}: expected {want}, missing"));
            continue;
        };
        let diff = (have - want).abs() / want.abs().max(f64::MIN_POSITIVE);
        a.max_rel_diff = a.max_rel_diff.max(diff);
        if diff <= tolerance {
            a.matched += 1;
        } else {
            a.first_mismatch.get_or_insert_with(|| format!("{key}: expected {want}, got {have}"));
        }
    }
    a
}

/// The median of some timings (the mean of the middle two for an even count).
pub(super) fn median(samples: &[f64]) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// One system's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    pub name: String,
    /// Points per second, first write to stored (and, for Vigia, counted).
    pub ingest_rate: f64,
    /// Median milliseconds of the month averages.
    pub averages_ms: f64,
    /// Median milliseconds of the counts per region.
    pub counts_ms: f64,
    /// Answers against the dataset: averages, then counts.
    pub averages_check: Agreement,
    pub counts_check: Agreement,
}

/// Both systems and Vigia's targets, as a table.
#[derive(Debug, Clone)]
pub struct Table {
    pub title: String,
    pub influx: Option<Figures>,
    pub vigia: Option<Figures>,
}

fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ms(x: f64) -> String {
    if x < 10.0 { format!("{x:.2} ms") } else { format!("{x:.0} ms") }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = |s: &Option<Figures>| s.as_ref().map_or("-".to_owned(), |s| s.name.clone());
        writeln!(f, "{}", self.title)?;
        writeln!(
            f,
            "{:<34} {:>16} {:>16} {:>14} {:>14}",
            "",
            name(&self.influx),
            name(&self.vigia),
            "Vigia speed-up",
            "Vigia target"
        )?;
        let cell = |s: &Option<Figures>, pick: &dyn Fn(&Figures) -> String| s.as_ref().map_or("-".into(), pick);
        // Speed-up: how many times faster Vigia is (above 1) or slower (below 1).
        let ratio = |pick: &dyn Fn(&Figures) -> f64, higher_is_better: bool| match (&self.influx, &self.vigia) {
            (Some(i), Some(v)) => {
                let r = if higher_is_better { pick(v) / pick(i) } else { pick(i) / pick(v) };
                format!("{r:.3}×")
            }
            _ => "-".into(),
        };
        type Row<'a> = (&'a str, &'a dyn Fn(&Figures) -> f64, bool, &'a str);
        let rows: [Row<'_>; 3] = [
            ("ingest, points/s (stored, counted)", &|s| s.ingest_rate, true, "≥ 400,000"),
            ("month averages per sensor, median", &|s| s.averages_ms, false, "< 50 ms"),
            ("counts per region, median", &|s| s.counts_ms, false, "< 10 ms"),
        ];
        for (i, (label, pick, higher, target)) in rows.into_iter().enumerate() {
            let show = |s: &Figures| if i == 0 { thousands(pick(s)) } else { ms(pick(s)) };
            writeln!(
                f,
                "{label:<34} {:>16} {:>16} {:>14} {:>14}",
                cell(&self.influx, &show),
                cell(&self.vigia, &show),
                ratio(pick, higher),
                target
            )?;
        }
        writeln!(f, "honesty check (answers against the generator's own sums):")?;
        for s in [&self.influx, &self.vigia].into_iter().flatten() {
            writeln!(f, "  {:<16} averages {}", s.name, s.averages_check)?;
            writeln!(f, "  {:<16} counts   {}", "", s.counts_check)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn agreement_within_tolerance() {
        let want = map(&[("a", 50.0), ("b", 20.0)]);
        let a = agree(&want, &map(&[("a", 50.0 + 1e-12), ("b", 20.0)]), MEAN_TOLERANCE);
        assert!(a.holds(), "{a}");
        assert_eq!(a.matched, 2);
        assert!(a.max_rel_diff > 0.0 && a.max_rel_diff < 1e-12);
    }

    #[test]
    fn disagreement_names_the_first_mismatch() {
        let want = map(&[("a", 50.0), ("b", 20.0), ("c", 1.0)]);
        let a = agree(&want, &map(&[("a", 50.5), ("b", 20.0), ("z", 3.0)]), MEAN_TOLERANCE);
        assert!(!a.holds());
        assert_eq!((a.matched, a.expected, a.unexpected), (1, 3, 1));
        assert_eq!(a.first_mismatch.as_deref(), Some("a: expected 50, got 50.5"));
        assert!(a.to_string().contains("DISAGREE"), "{a}");
        let missing = agree(&want, &map(&[("a", 50.0), ("b", 20.0)]), 0.0);
        assert_eq!(missing.first_mismatch.as_deref(), Some("c: expected 1, missing"));
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[5.0, 1.0, 3.0]), 3.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn table_shows_ratios_as_vigia_speed_up() {
        let ok = Agreement { matched: 5, expected: 5, unexpected: 0, max_rel_diff: 0.0, first_mismatch: None };
        let figures = |name: &str, rate, avg, counts| Figures {
            name: name.into(),
            ingest_rate: rate,
            averages_ms: avg,
            counts_ms: counts,
            averages_check: ok.clone(),
            counts_check: ok.clone(),
        };
        let table = Table {
            title: "t".into(),
            influx: Some(figures("InfluxDB", 400_000.0, 1360.0, 155.0)),
            vigia: Some(figures("Vigia", 2_000.0, 40.0, 5.0)),
        };
        let text = table.to_string();
        assert!(text.contains("400,000"), "{text}");
        assert!(text.contains("0.005×"), "ingest: Vigia at 1/200 of InfluxDB\n{text}");
        assert!(text.contains("34.000×"), "averages: 1360 / 40\n{text}");
        assert!(text.contains("31.000×"), "counts: 155 / 5\n{text}");
        assert!(text.contains("5/5 agree"), "{text}");
        assert_eq!(thousands(1_234_567.4), "1,234,567");
        assert_eq!(thousands(12.0), "12");
    }
}
