//! What a batch of events changes in the projections, as plain values.
//!
//! The store applies a `Projection` in one transaction; tests and the
//! consistency check build one from a full scan and compare. Keeping this a
//! pure function (events in, changes out) is what lets us prove that counters
//! and rollups equal a scan without a broker or a database.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use crate::reading::{EventId, Meta, Reading, Status, Value};
use crate::tag::Tag;
use keyed::Keyed;

mod keyed;

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

    /// An empty block with room for `n` events.
    pub fn with_capacity(tag: &str, start_ms: i64, n: usize) -> Block {
        Block {
            tag: tag.to_owned(),
            start_ms,
            seq: Vec::with_capacity(n),
            idx: Vec::with_capacity(n),
            ts: Vec::with_capacity(n),
            value: Vec::with_capacity(n),
            status: Vec::with_capacity(n),
            backfill: Vec::with_capacity(n),
            extra: Vec::new(),
        }
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
    pub meta: Meta,
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
    /// Nothing counted: merging a delta into it gives that delta.
    const EMPTY: RollupDelta = RollupDelta { count: 0, sum: 0.0, min: f64::INFINITY, max: f64::NEG_INFINITY };

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
    fn of(event: &StoredEvent) -> SensorDelta {
        let r = &event.reading;
        SensorDelta {
            first_seen_ms: r.ts_ms,
            last_seen_ms: r.ts_ms,
            last_value: r.value.clone(),
            last_status: r.status,
            last_id: event.id,
            count: 1,
            errors: u64::from(r.status != Status::Ok),
        }
    }

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

/// What one batch adds to one tag: its registry entry and its rollups.
#[derive(Debug, Clone, PartialEq)]
pub struct TagDelta {
    pub tag: String,
    pub sensor: SensorDelta,
    /// Sorted by grain, then bucket.
    pub rollups: Vec<(RollupGrain, i64, RollupDelta)>,
}

/// Everything one batch changes: new blocks and increments to rollups,
/// registry and traffic. The hierarchical counters follow from the registry
/// deltas ([`Projection::counters`]), so the hot path does not build them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Projection {
    /// Sorted by tag, one per tag.
    pub tags: Vec<TagDelta>,
    /// Sorted by tag, then start.
    pub blocks: Vec<Block>,
    /// Events per root, minute and hour (ok and error alike): the ingest rate.
    pub traffic: BTreeMap<(String, RollupGrain, i64), CounterDelta>,
    pub events: u64,
}

impl Projection {
    /// Projects events (in log order) into the changes they make.
    ///
    /// A pull holds a few readings of each of thousands of tags, so the work
    /// per tag is what costs: each tag's events are gathered into one run
    /// without a vector of their own, the tag is copied once per run, and
    /// the runs are projected in tag order, so every output comes out sorted
    /// without a sorted map (docs/performance.md).
    pub fn of<'a>(events: impl IntoIterator<Item = &'a StoredEvent>) -> Projection {
        let mut index: HashMap<&str, u32> = HashMap::new();
        // Each tag's name and number of events, in order of first appearance.
        let mut runs: Vec<(&str, usize)> = Vec::new();
        let mut tagged: Vec<(u32, &StoredEvent)> = Vec::new();
        for event in events {
            let tag = event.reading.tag.as_str();
            let run = *index.entry(tag).or_insert_with(|| {
                runs.push((tag, 0));
                (runs.len() - 1) as u32
            });
            runs[run as usize].1 += 1;
            tagged.push((run, event));
        }
        let Some(&(_, first)) = tagged.first() else { return Projection::default() };
        // Counting sort: each tag's events side by side, in log order.
        let mut starts: Vec<usize> = runs
            .iter()
            .scan(0, |at, (_, n)| {
                *at += n;
                Some(*at - n)
            })
            .collect();
        let bounds: Vec<(usize, usize)> = starts.iter().zip(&runs).map(|(s, (_, n))| (*s, s + n)).collect();
        let mut grouped = vec![first; tagged.len()];
        for (run, event) in &tagged {
            grouped[starts[*run as usize]] = event;
            starts[*run as usize] += 1;
        }
        let mut order: Vec<usize> = (0..runs.len()).collect();
        order.sort_unstable_by_key(|&i| runs[i].0);
        let mut p = Projection { events: tagged.len() as u64, ..Projection::default() };
        p.tags.reserve(runs.len());
        p.blocks.reserve(runs.len());
        let mut traffic: HashMap<(&str, RollupGrain, i64), CounterDelta> = HashMap::new();
        for i in order {
            let (from, to) = bounds[i];
            p.add_tag(runs[i].0, &grouped[from..to], &mut traffic);
        }
        p.traffic = traffic.into_iter().map(|((root, g, b), c)| ((root.to_owned(), g, b), c)).collect();
        p
    }

    /// Adds one tag's events (in log order), after every tag before it.
    fn add_tag<'a>(
        &mut self,
        tag: &'a str,
        events: &[&StoredEvent],
        traffic: &mut HashMap<(&'a str, RollupGrain, i64), CounterDelta>,
    ) {
        let mut blocks: Keyed<i64, Block> = Keyed::new();
        let mut rollups: Keyed<(RollupGrain, i64), RollupDelta> = Keyed::new();
        // This tag's share of its root's traffic: ok and errors per bucket.
        let mut rate: Keyed<(RollupGrain, i64), (u64, u64)> = Keyed::new();
        let mut sensor = SensorDelta::of(events[0]);
        for (n, event) in events.iter().enumerate() {
            let r = &event.reading;
            if n > 0 {
                sensor.merge(&SensorDelta::of(event));
            }
            let start = r.ts_ms.div_euclid(BLOCK_SPAN_MS) * BLOCK_SPAN_MS;
            // Sized for the common case, every event of the pull in one hour.
            let room = if n == 0 { events.len() } else { 0 };
            blocks.entry(start, || Block::with_capacity(tag, start, room)).push(event);
            let is_ok = r.status == Status::Ok;
            for grain in [RollupGrain::Minute, RollupGrain::Hour] {
                let (ok, error) = rate.entry((grain, grain.floor(r.ts_ms)), || (0, 0));
                if is_ok {
                    *ok += 1;
                } else {
                    *error += 1;
                }
            }
            if let (true, Some(v)) = (is_ok, r.value.as_number()) {
                for grain in RollupGrain::ALL {
                    let d = rollups.entry((grain, grain.floor(r.ts_ms)), || RollupDelta::EMPTY);
                    d.merge(&RollupDelta::of(v));
                }
            }
        }
        let mut blocks = blocks.into_entries();
        blocks.sort_unstable_by_key(|(start, _)| *start);
        let mut rollups: Vec<(RollupGrain, i64, RollupDelta)> =
            rollups.into_entries().into_iter().map(|((g, b), d)| (g, b, d)).collect();
        rollups.sort_unstable_by_key(|(g, b, _)| (*g, *b));
        let root = tag.split('.').next().unwrap_or(tag);
        for ((grain, bucket), (ok, error)) in rate.into_entries() {
            let t =
                traffic.entry((root, grain, bucket)).or_insert(CounterDelta { depth: 1, ..CounterDelta::default() });
            t.ok += ok;
            t.error += error;
        }
        self.tags.push(TagDelta { tag: tag.to_owned(), sensor, rollups });
        self.blocks.extend(blocks.into_iter().map(|(_, b)| b));
    }

    /// Adds the projection of the events that follow this one's in the log:
    /// the result equals the projection of both runs of events at once. This
    /// is what lets the persister project each pull while the previous
    /// flush commits, and commit the merged whole.
    pub fn merge(&mut self, other: Projection) {
        self.events += other.events;
        for (key, t) in other.traffic {
            let mine = self.traffic.entry(key).or_insert(CounterDelta { depth: t.depth, ..CounterDelta::default() });
            mine.ok += t.ok;
            mine.error += t.error;
        }
        merge_sorted(
            &mut self.tags,
            other.tags,
            |a, b| a.tag.cmp(&b.tag),
            |mine, theirs| {
                mine.sensor.merge(&theirs.sensor);
                let key = |(g, b, _): &(RollupGrain, i64, RollupDelta)| (*g, *b);
                merge_sorted(&mut mine.rollups, theirs.rollups, |x, y| key(x).cmp(&key(y)), |x, y| x.2.merge(&y.2));
            },
        );
        let order = |x: &Block, y: &Block| (&x.tag, x.start_ms).cmp(&(&y.tag, y.start_ms));
        merge_sorted(&mut self.blocks, other.blocks, order, Block::append);
    }

    /// Every rollup delta, by tag, grain and bucket.
    pub fn rollups(&self) -> impl Iterator<Item = (&str, RollupGrain, i64, &RollupDelta)> {
        self.tags.iter().flat_map(|t| t.rollups.iter().map(|(g, b, d)| (t.tag.as_str(), *g, *b, d)))
    }

    /// The rollup delta of one tag's bucket, if the batch has one.
    pub fn rollup(&self, tag: &str, grain: RollupGrain, bucket: i64) -> Option<RollupDelta> {
        let t = self.tag(tag)?;
        t.rollups.iter().find(|(g, b, _)| (*g, *b) == (grain, bucket)).map(|(.., d)| *d)
    }

    /// What the batch tells the registry about `tag`.
    pub fn tag(&self, tag: &str) -> Option<&TagDelta> {
        self.tags.binary_search_by(|t| t.tag.as_str().cmp(tag)).ok().map(|i| &self.tags[i])
    }

    /// Counts `count` events of `tag` (`errors` of them errors) that are no
    /// longer stored (retention removed them) in its registry delta, and so
    /// in the counters.
    pub fn count_retired(&mut self, tag: &str, count: u64, errors: u64) {
        match self.tags.binary_search_by(|t| t.tag.as_str().cmp(tag)) {
            Ok(i) => {
                self.tags[i].sensor.count += count;
                self.tags[i].sensor.errors += errors;
            }
            Err(i) => {
                let sensor = SensorDelta {
                    first_seen_ms: 0,
                    last_seen_ms: 0,
                    last_value: Value::Empty,
                    last_status: Status::Ok,
                    last_id: EventId { seq: 0, idx: 0 },
                    count,
                    errors,
                };
                self.tags.insert(i, TagDelta { tag: tag.to_owned(), sensor, rollups: Vec::new() });
            }
        }
    }

    /// Increments of every hierarchical counter: each tag and each of its
    /// prefixes, by status.
    pub fn counters(&self) -> BTreeMap<String, CounterDelta> {
        let mut counters: BTreeMap<String, CounterDelta> = BTreeMap::new();
        for t in &self.tags {
            let tag = t.tag.as_str();
            let ends = tag.match_indices('.').map(|(i, _)| i).chain(std::iter::once(tag.len()));
            for (depth, end) in ends.enumerate() {
                let prefix = &tag[..end];
                let c = match counters.get_mut(prefix) {
                    Some(c) => c,
                    None => counters
                        .entry(prefix.to_owned())
                        .or_insert(CounterDelta { depth: depth as u32 + 1, ..CounterDelta::default() }),
                };
                c.ok += t.sensor.count - t.sensor.errors;
                c.error += t.sensor.errors;
            }
        }
        counters
    }
}

/// Merges `theirs` into `mine`, both sorted by `order` with unique keys,
/// joining the two entries of a key with `join` (mine first in the log).
fn merge_sorted<T>(mine: &mut Vec<T>, theirs: Vec<T>, order: impl Fn(&T, &T) -> Ordering, join: impl Fn(&mut T, T)) {
    if theirs.is_empty() {
        return;
    }
    if mine.is_empty() {
        *mine = theirs;
        return;
    }
    let ours = std::mem::take(mine);
    let mut merged = Vec::with_capacity(ours.len() + theirs.len());
    let (mut a, mut b) = (ours.into_iter().peekable(), theirs.into_iter().peekable());
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => order(x, y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => break,
        };
        match next {
            Ordering::Less => merged.extend(a.next()),
            Ordering::Greater => merged.extend(b.next()),
            Ordering::Equal => {
                let mut x = a.next().expect("peeked");
                join(&mut x, b.next().expect("peeked"));
                merged.push(x);
            }
        }
    }
    *mine = merged;
}

#[cfg(test)]
mod tests;
