//! What a batch of events changes in the projections, as plain values.
//!
//! The store applies a `Projection` in one transaction; tests and the
//! consistency check build one from a full scan and compare. Keeping this a
//! pure function (events in, changes out) is what lets us prove that counters
//! and rollups equal a scan without a broker or a database.

use std::collections::{BTreeMap, HashMap};

use crate::reading::{EventId, Reading, Status, Value};
use crate::tag::Tag;

/// Span of one time block: events of one tag in one hour share a block per batch.
pub const BLOCK_SPAN_MS: i64 = 3_600_000;

/// An event as stored: its log id and its reading.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub id: EventId,
    pub reading: Reading,
}

/// Columns of one tag's events inside one time block, from one batch.
/// Several blocks may share a (tag, start); each batch writes its own, so a
/// write never has to read or rewrite what earlier batches stored.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Block {
    pub tag: String,
    pub start_ms: i64,
    pub seq: Vec<u64>,
    pub idx: Vec<u32>,
    pub ts: Vec<i64>,
    /// `None` for text and empty values.
    pub value: Vec<Option<f64>>,
    pub status: Vec<Status>,
    /// Whether each event was recorded after the fact (see `Reading::backfill`).
    pub backfill: Vec<bool>,
    /// The rare fields, only for the events that have them.
    pub extra: Vec<BlockExtra>,
}

impl Block {
    pub fn first_id(&self) -> EventId {
        EventId { seq: self.seq[0], idx: self.idx[0] }
    }

    pub fn len(&self) -> usize {
        self.seq.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seq.is_empty()
    }

    /// Appends the events of a later block of the same tag and hour (log
    /// order is kept: `other` holds later messages).
    fn append(&mut self, mut other: Block) {
        let offset = self.seq.len() as u32;
        self.seq.append(&mut other.seq);
        self.idx.append(&mut other.idx);
        self.ts.append(&mut other.ts);
        self.value.append(&mut other.value);
        self.status.append(&mut other.status);
        self.backfill.append(&mut other.backfill);
        self.extra.extend(other.extra.into_iter().map(|e| BlockExtra { i: e.i + offset, ..e }));
    }

    fn push(&mut self, event: &StoredEvent) {
        let r = &event.reading;
        let i = self.seq.len() as u32;
        self.seq.push(event.id.seq);
        self.idx.push(event.id.idx);
        self.ts.push(r.ts_ms);
        self.value.push(r.value.as_number());
        self.status.push(r.status);
        self.backfill.push(r.backfill);
        let text = match &r.value {
            Value::Text(t) => Some(t.clone()),
            _ => None,
        };
        if text.is_some() || r.unit.is_some() || r.reason.is_some() || r.raw.is_some() || !r.meta.is_empty() {
            self.extra.push(BlockExtra {
                i,
                text,
                unit: r.unit.clone(),
                reason: r.reason.clone(),
                raw: r.raw.clone(),
                meta: r.meta.clone(),
            });
        }
    }

    /// The events this block holds, rebuilt as readings.
    pub fn events(&self) -> Vec<StoredEvent> {
        let tag = Tag::parse(&self.tag).expect("blocks hold valid tags");
        let mut extras = self.extra.iter().peekable();
        (0..self.len())
            .map(|i| {
                let mut reading = Reading::number(tag.clone(), self.ts[i], 0.0);
                reading.status = self.status[i];
                reading.backfill = self.backfill[i];
                reading.value = self.value[i].map_or(Value::Empty, Value::Number);
                if let Some(extra) = extras.next_if(|e| e.i as usize == i) {
                    if let Some(t) = &extra.text {
                        reading.value = Value::Text(t.clone());
                    }
                    reading.unit = extra.unit.clone();
                    reading.reason = extra.reason.clone();
                    reading.raw = extra.raw.clone();
                    reading.meta = extra.meta.clone();
                }
                StoredEvent { id: EventId { seq: self.seq[i], idx: self.idx[i] }, reading }
            })
            .collect()
    }
}

/// Text value, unit, error reason, raw bytes and metadata of event `i` in a block.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BlockExtra {
    pub i: u32,
    pub text: Option<String>,
    pub unit: Option<String>,
    pub reason: Option<String>,
    pub raw: Option<Vec<u8>>,
    pub meta: BTreeMap<String, String>,
}

/// Increments of one hierarchical counter (a tag prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CounterDelta {
    pub depth: u32,
    pub ok: u64,
    pub error: u64,
}

/// Time grains of the rollups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RollupGrain {
    Minute,
    Hour,
    Day,
}

impl RollupGrain {
    pub const ALL: [RollupGrain; 3] = [RollupGrain::Minute, RollupGrain::Hour, RollupGrain::Day];

    pub fn millis(self) -> i64 {
        match self {
            RollupGrain::Minute => 60_000,
            RollupGrain::Hour => 3_600_000,
            RollupGrain::Day => 86_400_000,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RollupGrain::Minute => "m",
            RollupGrain::Hour => "h",
            RollupGrain::Day => "d",
        }
    }

    pub fn floor(self, ts_ms: i64) -> i64 {
        ts_ms.div_euclid(self.millis()) * self.millis()
    }
}

/// Count, sum, min and max of numeric ok values in one bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RollupDelta {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl RollupDelta {
    fn of(v: f64) -> Self {
        RollupDelta { count: 1, sum: v, min: v, max: v }
    }

    pub fn merge(&mut self, other: &RollupDelta) {
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }
}

/// What a batch tells the sensor registry about one tag.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorDelta {
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    /// The value of the latest reading (by timestamp, then id).
    pub last_value: Value,
    pub last_status: Status,
    pub last_id: EventId,
    pub count: u64,
    /// How many of `count` are errors: the sensor's own counter.
    pub errors: u64,
}

impl SensorDelta {
    pub fn merge(&mut self, other: &SensorDelta) {
        self.first_seen_ms = self.first_seen_ms.min(other.first_seen_ms);
        if (other.last_seen_ms, other.last_id) > (self.last_seen_ms, self.last_id) {
            self.last_seen_ms = other.last_seen_ms;
            self.last_value = other.last_value.clone();
            self.last_status = other.last_status;
            self.last_id = other.last_id;
        }
        self.count += other.count;
        self.errors += other.errors;
    }
}

/// Everything one batch changes: new blocks and increments to counters, rollups and registry.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Projection {
    pub blocks: Vec<Block>,
    pub counters: BTreeMap<String, CounterDelta>,
    pub rollups: BTreeMap<(String, RollupGrain, i64), RollupDelta>,
    pub sensors: BTreeMap<String, SensorDelta>,
    /// Events per root, minute and hour (ok and error alike): the ingest rate.
    pub traffic: BTreeMap<(String, RollupGrain, i64), CounterDelta>,
    pub events: u64,
}

impl Projection {
    /// Projects events (in log order) into the changes they make.
    ///
    /// The work that depends only on the tag (its prefixes, its root, its
    /// key strings) is done once per tag, not once per event: a batch holds
    /// many events of few tags, and this runs on the persister's hot path.
    pub fn of<'a>(events: impl IntoIterator<Item = &'a StoredEvent>) -> Projection {
        let mut by_tag: HashMap<&str, Vec<&StoredEvent>> = HashMap::new();
        let mut count = 0u64;
        for event in events {
            by_tag.entry(event.reading.tag.as_str()).or_default().push(event);
            count += 1;
        }
        let mut p = Projection { events: count, ..Projection::default() };
        for (tag, events) in by_tag {
            p.add_tag(tag, &events);
        }
        p.blocks.sort_by(|a, b| (&a.tag, a.start_ms).cmp(&(&b.tag, b.start_ms)));
        p
    }

    /// Adds the projection of the events that follow this one's in the log:
    /// the result equals the projection of both runs of events at once. This
    /// is what lets the persister project each pull while the previous
    /// flush commits, and commit the merged whole.
    pub fn merge(&mut self, other: Projection) {
        self.events += other.events;
        for (prefix, c) in other.counters {
            let mine =
                self.counters.entry(prefix).or_insert(CounterDelta { depth: c.depth, ..CounterDelta::default() });
            mine.ok += c.ok;
            mine.error += c.error;
        }
        for (key, d) in other.rollups {
            self.rollups.entry(key).and_modify(|r| r.merge(&d)).or_insert(d);
        }
        for (tag, s) in other.sensors {
            self.sensors.entry(tag).and_modify(|mine| mine.merge(&s)).or_insert(s);
        }
        for (key, t) in other.traffic {
            let mine = self.traffic.entry(key).or_insert(CounterDelta { depth: t.depth, ..CounterDelta::default() });
            mine.ok += t.ok;
            mine.error += t.error;
        }
        // Both are sorted by (tag, start): merge them, joining a tag's hour.
        let mine = std::mem::take(&mut self.blocks);
        let mut blocks = Vec::with_capacity(mine.len() + other.blocks.len());
        let (mut a, mut b) = (mine.into_iter().peekable(), other.blocks.into_iter().peekable());
        loop {
            let order = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) => (&x.tag, x.start_ms).cmp(&(&y.tag, y.start_ms)),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => break,
            };
            match order {
                std::cmp::Ordering::Less => blocks.extend(a.next()),
                std::cmp::Ordering::Greater => blocks.extend(b.next()),
                std::cmp::Ordering::Equal => {
                    let (mut x, y) = (a.next().expect("peeked"), b.next().expect("peeked"));
                    x.append(y);
                    blocks.push(x);
                }
            }
        }
        self.blocks = blocks;
    }

    /// Adds one tag's events (in log order).
    fn add_tag(&mut self, tag: &str, events: &[&StoredEvent]) {
        let (mut ok, mut error) = (0u64, 0u64);
        let mut blocks: BTreeMap<i64, Block> = BTreeMap::new();
        let mut rollups: BTreeMap<(RollupGrain, i64), RollupDelta> = BTreeMap::new();
        let mut traffic: BTreeMap<(RollupGrain, i64), CounterDelta> = BTreeMap::new();
        let mut sensor: Option<SensorDelta> = None;
        for event in events {
            let r = &event.reading;
            let start = r.ts_ms.div_euclid(BLOCK_SPAN_MS) * BLOCK_SPAN_MS;
            blocks
                .entry(start)
                .or_insert_with(|| Block { tag: tag.to_owned(), start_ms: start, ..Block::default() })
                .push(event);
            let is_ok = r.status == Status::Ok;
            if is_ok {
                ok += 1;
            } else {
                error += 1;
            }
            for grain in [RollupGrain::Minute, RollupGrain::Hour] {
                let t =
                    traffic.entry((grain, grain.floor(r.ts_ms))).or_insert(CounterDelta { depth: 1, ok: 0, error: 0 });
                if is_ok {
                    t.ok += 1;
                } else {
                    t.error += 1;
                }
            }
            if let (true, Some(v)) = (is_ok, r.value.as_number()) {
                for grain in RollupGrain::ALL {
                    rollups
                        .entry((grain, grain.floor(r.ts_ms)))
                        .and_modify(|d| d.merge(&RollupDelta::of(v)))
                        .or_insert(RollupDelta::of(v));
                }
            }
            let latest = (r.ts_ms, event.id);
            match &mut sensor {
                None => {
                    sensor = Some(SensorDelta {
                        first_seen_ms: r.ts_ms,
                        last_seen_ms: r.ts_ms,
                        last_value: r.value.clone(),
                        last_status: r.status,
                        last_id: event.id,
                        count: 1,
                        errors: u64::from(!is_ok),
                    })
                }
                Some(s) => {
                    s.first_seen_ms = s.first_seen_ms.min(r.ts_ms);
                    if latest > (s.last_seen_ms, s.last_id) {
                        s.last_seen_ms = r.ts_ms;
                        s.last_value = r.value.clone();
                        s.last_status = r.status;
                        s.last_id = event.id;
                    }
                    s.count += 1;
                    s.errors += u64::from(!is_ok);
                }
            }
        }
        let depth_of = |prefix: &str| prefix.bytes().filter(|b| *b == b'.').count() as u32 + 1;
        let prefixes = std::iter::once(tag)
            .chain(tag.match_indices('.').map(|(i, _)| &tag[..i]))
            .map(|prefix| (prefix, depth_of(prefix)));
        // Most tags of a batch share their regions: look a prefix up before
        // making an owned copy of it.
        for (prefix, depth) in prefixes {
            let c = match self.counters.get_mut(prefix) {
                Some(c) => c,
                None => {
                    self.counters.entry(prefix.to_owned()).or_insert(CounterDelta { depth, ..CounterDelta::default() })
                }
            };
            c.ok += ok;
            c.error += error;
        }
        let root = tag.split('.').next().unwrap_or(tag);
        for ((grain, bucket), delta) in traffic {
            let t = self
                .traffic
                .entry((root.to_owned(), grain, bucket))
                .or_insert(CounterDelta { depth: 1, ..CounterDelta::default() });
            t.ok += delta.ok;
            t.error += delta.error;
        }
        for ((grain, bucket), delta) in rollups {
            self.rollups.insert((tag.to_owned(), grain, bucket), delta);
        }
        if let Some(s) = sensor {
            self.sensors.insert(tag.to_owned(), s);
        }
        self.blocks.extend(blocks.into_values());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64, tag: &str, ts: i64, v: Option<f64>) -> StoredEvent {
        let tag = Tag::parse(tag).unwrap();
        let reading = match v {
            Some(v) => Reading::number(tag, ts, v),
            None => Reading::error(tag, ts, "empty", b"{}"),
        };
        StoredEvent { id: EventId { seq, idx: 0 }, reading }
    }

    #[test]
    fn counts_every_prefix_by_status() {
        let p = Projection::of(&[
            ev(1, "brasil.sudeste.s1", 0, Some(1.0)),
            ev(2, "brasil.sudeste.s2", 0, None),
            ev(3, "brasil.sul.s1", 0, Some(3.0)),
        ]);
        assert_eq!(p.counters["brasil"], CounterDelta { depth: 1, ok: 2, error: 1 });
        assert_eq!(p.counters["brasil.sudeste"], CounterDelta { depth: 2, ok: 1, error: 1 });
        assert_eq!(p.counters["brasil.sul.s1"], CounterDelta { depth: 3, ok: 1, error: 0 });
        assert_eq!(p.events, 3);
    }

    #[test]
    fn rollups_skip_errors_and_split_by_grain() {
        let p = Projection::of(&[
            ev(1, "brasil.sul.s1", 59_000, Some(2.0)),
            ev(2, "brasil.sul.s1", 61_000, Some(4.0)),
            ev(3, "brasil.sul.s1", 62_000, None),
        ]);
        let key = |g: RollupGrain, b: i64| ("brasil.sul.s1".to_string(), g, b);
        assert_eq!(p.rollups[&key(RollupGrain::Minute, 0)].count, 1);
        assert_eq!(p.rollups[&key(RollupGrain::Minute, 60_000)].sum, 4.0);
        let hour = p.rollups[&key(RollupGrain::Hour, 0)];
        assert_eq!((hour.count, hour.sum, hour.min, hour.max), (2, 6.0, 2.0, 4.0));
        let s = &p.sensors["brasil.sul.s1"];
        assert_eq!((s.count, s.first_seen_ms, s.last_seen_ms, s.last_status), (3, 59_000, 62_000, Status::Error));
    }

    #[test]
    fn merging_projections_equals_projecting_all_events() {
        let mut text = ev(4, "brasil.sul.s1", 7, Some(0.0));
        text.reading.value = Value::Text("ligado".into());
        let events = vec![
            ev(1, "brasil.sul.s1", 1, Some(1.0)),
            ev(2, "brasil.sul.s2", BLOCK_SPAN_MS + 5, None),
            ev(3, "brasil.sudeste.s1", 61_000, Some(7.0)),
            text,
            ev(5, "brasil.sul.s1", 2, Some(-3.0)),
            ev(6, "brasil.sul.s2", 3, Some(4.0)),
            ev(7, "argentina.s9", 3, Some(4.0)),
        ];
        let whole = Projection::of(&events);
        for cut in 0..=events.len() {
            let mut merged = Projection::of(&events[..cut]);
            merged.merge(Projection::of(&events[cut..]));
            assert_eq!(merged, whole, "cut after {cut} events");
        }
    }

    #[test]
    fn blocks_round_trip_events() {
        let mut text = ev(2, "brasil.sul.s1", 5, Some(0.0));
        text.reading.value = Value::Text("ligado".into());
        text.reading.unit = Some("kWh".into());
        let events = vec![
            ev(1, "brasil.sul.s1", 1, Some(1.0)),
            text,
            ev(3, "brasil.sul.s1", BLOCK_SPAN_MS + 1, None),
            ev(4, "brasil.sul.s2", 1, Some(9.0)),
        ];
        let p = Projection::of(&events);
        assert_eq!(p.blocks.len(), 3);
        let back: Vec<StoredEvent> = p.blocks.iter().flat_map(Block::events).collect();
        let mut back = back;
        back.sort_by_key(|e| e.id);
        assert_eq!(back, events);
    }
}
