//! The peer comparison's dataset: the same readings for InfluxDB and Vigia,
//! generated from the event's index alone, so a run can be repeated and
//! every answer checked against sums the generator knows.
//!
//! Sensor `s` is `brasil.<region>.sensorNNNN` with the region `s % 5`; event
//! `k` belongs to sensor `k % sensors`, falls at `start + k * span / events`
//! and has a value of `10.00` to `99.99` (two decimals) from a hash of `k`.
//! All values are numeric, so every event counts in both systems' averages.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Range;

/// The simulator's regions, in the order sensors are dealt to them.
pub(super) const REGIONS: [&str; 5] = ["norte", "nordeste", "centro-oeste", "sudeste", "sul"];

const DAY_MS: i64 = 86_400_000;

/// One reading of the dataset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub sensor: usize,
    /// Unix milliseconds.
    pub ts: i64,
    pub value: f64,
}

/// `events` readings from `sensors` sensors between `start_ms` and `end_ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub sensors: usize,
    pub events: u64,
    pub start_ms: i64,
    pub end_ms: i64,
}

/// What a correct system answers: per sensor count and sum, per region count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expected {
    /// Tag → (count, sum of values).
    pub sensors: BTreeMap<String, (u64, f64)>,
    /// Region prefix (`brasil.norte`) → count.
    pub regions: BTreeMap<String, u64>,
}

impl Dataset {
    /// Readings over the 29 days before `now_ms` (ending a minute before it),
    /// so they stay inside a 30-day window even if the run takes a day.
    pub fn new(sensors: usize, events: u64, now_ms: i64) -> Result<Dataset, String> {
        let dataset = Dataset { sensors, events, start_ms: now_ms - 29 * DAY_MS, end_ms: now_ms - 60_000 };
        if sensors == 0 || sensors > 10_000 {
            return Err(format!("{sensors} sensors: use 1 to 10,000 (the tags have four digits)"));
        }
        if events == 0 || events > (dataset.end_ms - dataset.start_ms) as u64 {
            return Err(format!("{events} events: use 1 to one per millisecond of the 29 days"));
        }
        Ok(dataset)
    }

    pub fn region(sensor: usize) -> &'static str {
        REGIONS[sensor % REGIONS.len()]
    }

    pub fn tag(sensor: usize) -> String {
        format!("brasil.{}.sensor{sensor:04}", Dataset::region(sensor))
    }

    /// Event `k` (0-based, below `events`).
    pub fn point(&self, k: u64) -> Point {
        let span = (self.end_ms - self.start_ms) as u128;
        let ts = self.start_ms + (span * u128::from(k) / u128::from(self.events)) as i64;
        let cents = splitmix64(k) % 9_000;
        Point { sensor: (k % self.sensors as u64) as usize, ts, value: 10.0 + cents as f64 / 100.0 }
    }

    /// Consecutive index ranges of at most `size` events.
    pub fn batches(&self, size: usize) -> impl Iterator<Item = Range<u64>> + use<> {
        let (events, size) = (self.events, size.max(1) as u64);
        (0..events.div_ceil(size)).map(move |b| b * size..((b + 1) * size).min(events))
    }

    /// InfluxDB line protocol, millisecond precision: measurement `reading`,
    /// tags `region` and `sensor`, field `value`.
    pub fn line_protocol(&self, range: Range<u64>) -> String {
        let mut out = String::with_capacity(range.clone().count() * 80);
        for k in range {
            let p = self.point(k);
            let _ = writeln!(
                out,
                "reading,region={},sensor={} value={} {}",
                Dataset::region(p.sensor),
                Dataset::tag(p.sensor),
                p.value,
                p.ts
            );
        }
        out
    }

    /// A `POST /api/v1/events` body: a JSON array of readings.
    pub fn json(&self, range: Range<u64>) -> String {
        let mut out = String::with_capacity(range.clone().count() * 80 + 2);
        out.push('[');
        for k in range {
            let p = self.point(k);
            if out.len() > 1 {
                out.push(',');
            }
            let _ = write!(out, r#"{{"tag":"{}","value":{},"timestamp":{}}}"#, Dataset::tag(p.sensor), p.value, p.ts);
        }
        out.push(']');
        out
    }

    /// The answers, from the generator itself.
    pub fn expected(&self) -> Expected {
        let mut expected = Expected::default();
        for k in 0..self.events {
            let p = self.point(k);
            let e = expected.sensors.entry(Dataset::tag(p.sensor)).or_insert((0, 0.0));
            e.0 += 1;
            e.1 += p.value;
            *expected.regions.entry(format!("brasil.{}", Dataset::region(p.sensor))).or_insert(0) += 1;
        }
        expected
    }
}

/// A well-mixed 64-bit hash (SplitMix64's finaliser).
fn splitmix64(k: u64) -> u64 {
    let mut z = k.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_796_000_000_000;

    #[test]
    fn points_are_deterministic_and_inside_the_span() {
        let d = Dataset::new(2000, 1_000_000, NOW).unwrap();
        assert_eq!(d.point(12_345), d.point(12_345));
        assert_ne!(d.point(1).value, d.point(2).value, "values vary");
        for k in [0, 1, 999_999, 500_000] {
            let p = d.point(k);
            assert!((d.start_ms..d.end_ms).contains(&p.ts), "{p:?}");
            assert!((10.0..100.0).contains(&p.value));
            assert_eq!((p.value * 100.0).round() / 100.0, p.value, "two decimals");
        }
        assert_eq!(d.point(0).ts, d.start_ms);
        assert!(d.end_ms - d.start_ms > 28 * DAY_MS && d.end_ms < NOW);
    }

    #[test]
    fn tags_spread_over_the_regions() {
        assert_eq!(Dataset::tag(0), "brasil.norte.sensor0000");
        assert_eq!(Dataset::tag(7), "brasil.centro-oeste.sensor0007");
        assert_eq!(Dataset::tag(1999), "brasil.sul.sensor1999");
        let d = Dataset::new(2000, 10_000, NOW).unwrap();
        let e = d.expected();
        assert_eq!(e.sensors.len(), 2000);
        assert_eq!(e.regions.len(), 5);
        assert!(e.regions.values().all(|&n| n == 2000), "{:?}", e.regions);
        assert!(e.sensors.values().all(|&(n, _)| n == 5));
    }

    #[test]
    fn a_sensor_never_repeats_a_timestamp() {
        // InfluxDB keeps one point per series and time: a repeat would overwrite.
        let d = Dataset::new(3, 1000, NOW).unwrap();
        let mut seen = std::collections::HashSet::new();
        for k in 0..d.events {
            let p = d.point(k);
            assert!(seen.insert((p.sensor, p.ts)), "event {k} repeats {p:?}");
        }
    }

    #[test]
    fn batches_cover_every_event_once() {
        let d = Dataset::new(10, 12_001, NOW).unwrap();
        let batches: Vec<_> = d.batches(5000).collect();
        assert_eq!(batches, vec![0..5000, 5000..10_000, 10_000..12_001]);
    }

    #[test]
    fn bodies_carry_the_same_points() {
        let d = Dataset::new(2000, 100, NOW).unwrap();
        let p = d.point(3);
        let lines = d.line_protocol(3..5);
        let first = lines.lines().next().unwrap();
        assert_eq!(
            first,
            format!("reading,region=sudeste,sensor=brasil.sudeste.sensor0003 value={} {}", p.value, p.ts)
        );
        assert_eq!(lines.lines().count(), 2);
        let json: serde_json::Value = serde_json::from_str(&d.json(3..5)).unwrap();
        assert_eq!(json[0]["tag"], "brasil.sudeste.sensor0003");
        assert_eq!(json[0]["value"].as_f64(), Some(p.value));
        assert_eq!(json[0]["timestamp"].as_i64(), Some(p.ts));
        assert_eq!(json.as_array().unwrap().len(), 2);
    }

    #[test]
    fn refuses_sizes_it_cannot_generate() {
        assert!(Dataset::new(0, 10, NOW).is_err());
        assert!(Dataset::new(10_001, 10, NOW).is_err());
        assert!(Dataset::new(10, 0, NOW).is_err());
        assert!(Dataset::new(10, 3_000_000_000, NOW).is_err());
    }
}
