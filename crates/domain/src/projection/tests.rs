//! Projections against their definition: counters, rollups, registry,
//! traffic and blocks, as one event at a time would make them.

use proptest::prelude::*;

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
    let counters = p.counters();
    assert_eq!(counters["brasil"], CounterDelta { depth: 1, ok: 2, error: 1 });
    assert_eq!(counters["brasil.sudeste"], CounterDelta { depth: 2, ok: 1, error: 1 });
    assert_eq!(counters["brasil.sul.s1"], CounterDelta { depth: 3, ok: 1, error: 0 });
    assert_eq!(counters.len(), 6, "brasil, two regions and three sensors: {counters:?}");
    assert_eq!(p.events, 3);
}

#[test]
fn rollups_skip_errors_and_split_by_grain() {
    let p = Projection::of(&[
        ev(1, "brasil.sul.s1", 59_000, Some(2.0)),
        ev(2, "brasil.sul.s1", 61_000, Some(4.0)),
        ev(3, "brasil.sul.s1", 62_000, None),
    ]);
    let rollup = |g: RollupGrain, b: i64| p.rollup("brasil.sul.s1", g, b).expect("a rollup");
    assert_eq!(rollup(RollupGrain::Minute, 0).count, 1);
    assert_eq!(rollup(RollupGrain::Minute, 60_000).sum, 4.0);
    let hour = rollup(RollupGrain::Hour, 0);
    assert_eq!((hour.count, hour.sum, hour.min, hour.max), (2, 6.0, 2.0, 4.0));
    assert_eq!(p.rollups().count(), 4, "two minutes, one hour, one day");
    let s = &p.tag("brasil.sul.s1").expect("the sensor").sensor;
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

/// The projection's outputs, computed one event at a time with sorted maps:
/// what `Projection::of` must equal however it groups the work.
#[derive(Debug, PartialEq)]
struct Reference {
    counters: BTreeMap<String, CounterDelta>,
    rollups: BTreeMap<(String, RollupGrain, i64), RollupDelta>,
    sensors: BTreeMap<String, SensorDelta>,
    traffic: BTreeMap<(String, RollupGrain, i64), CounterDelta>,
    blocks: BTreeMap<(String, i64), Vec<EventId>>,
}

impl Reference {
    fn of(events: &[StoredEvent]) -> Reference {
        let mut r = Reference {
            counters: BTreeMap::new(),
            rollups: BTreeMap::new(),
            sensors: BTreeMap::new(),
            traffic: BTreeMap::new(),
            blocks: BTreeMap::new(),
        };
        for e in events {
            let (tag, ts, ok) = (e.reading.tag.as_str(), e.reading.ts_ms, e.reading.status == Status::Ok);
            let parts: Vec<&str> = tag.split('.').collect();
            for depth in 1..=parts.len() {
                let c = r
                    .counters
                    .entry(parts[..depth].join("."))
                    .or_insert(CounterDelta { depth: depth as u32, ..CounterDelta::default() });
                if ok { c.ok += 1 } else { c.error += 1 }
            }
            for grain in [RollupGrain::Minute, RollupGrain::Hour] {
                let t = r
                    .traffic
                    .entry((parts[0].to_owned(), grain, grain.floor(ts)))
                    .or_insert(CounterDelta { depth: 1, ..CounterDelta::default() });
                if ok { t.ok += 1 } else { t.error += 1 }
            }
            if let (true, Some(v)) = (ok, e.reading.value.as_number()) {
                for grain in RollupGrain::ALL {
                    let d = RollupDelta::of(v);
                    r.rollups.entry((tag.to_owned(), grain, grain.floor(ts))).and_modify(|x| x.merge(&d)).or_insert(d);
                }
            }
            let s = SensorDelta::of(e);
            r.sensors.entry(tag.to_owned()).and_modify(|x| x.merge(&s)).or_insert(s);
            r.blocks.entry((tag.to_owned(), ts.div_euclid(BLOCK_SPAN_MS) * BLOCK_SPAN_MS)).or_default().push(e.id);
        }
        r
    }

    fn from(p: &Projection) -> Reference {
        Reference {
            counters: p.counters(),
            rollups: p.rollups().map(|(t, g, b, d)| ((t.to_owned(), g, b), *d)).collect(),
            sensors: p.tags.iter().map(|t| (t.tag.clone(), t.sensor.clone())).collect(),
            traffic: p.traffic.clone(),
            blocks: p
                .blocks
                .iter()
                .map(|b| ((b.tag.clone(), b.start_ms), b.events().iter().map(|e| e.id).collect()))
                .collect(),
        }
    }
}

fn arbitrary_events() -> impl Strategy<Value = Vec<StoredEvent>> {
    let tags = ["brasil.sul.s1", "brasil.sul.s2", "brasil.sudeste.s1", "argentina.s9", "brasil.sul"];
    let event = (0..tags.len(), 0..3 * BLOCK_SPAN_MS, prop::option::of(-50i32..50));
    prop::collection::vec(event, 0..200).prop_map(move |drawn| {
        drawn
            .into_iter()
            .enumerate()
            .map(|(seq, (t, ts, v))| ev(seq as u64 + 1, tags[t], ts - BLOCK_SPAN_MS, v.map(f64::from)))
            .collect()
    })
}

proptest! {
    /// Any events, in any order of tags and hours, project as one event at a
    /// time would, with every output sorted; and merging the projections of
    /// two halves gives the projection of the whole.
    #[test]
    fn projecting_equals_adding_one_event_at_a_time(events in arbitrary_events(), cut in 0usize..200) {
        let whole = Projection::of(&events);
        prop_assert_eq!(Reference::from(&whole), Reference::of(&events));
        prop_assert!(whole.tags.windows(2).all(|w| w[0].tag < w[1].tag));
        prop_assert!(whole.blocks.windows(2).all(|w| (&w[0].tag, w[0].start_ms) < (&w[1].tag, w[1].start_ms)));
        prop_assert_eq!(whole.events, events.len() as u64);
        let cut = cut.min(events.len());
        let mut merged = Projection::of(&events[..cut]);
        merged.merge(Projection::of(&events[cut..]));
        prop_assert_eq!(merged, whole);
    }
}

#[test]
fn retired_events_count_in_the_registry_and_the_counters() {
    let mut p = Projection::of(&[ev(1, "brasil.sul.s1", 0, Some(1.0))]);
    p.count_retired("brasil.sul.s1", 5, 2);
    p.count_retired("brasil.norte.s7", 3, 1);
    let s = &p.tag("brasil.sul.s1").expect("kept").sensor;
    assert_eq!((s.count, s.errors), (6, 2));
    assert_eq!(p.tag("brasil.norte.s7").expect("added").sensor.count, 3);
    assert!(p.tags.windows(2).all(|w| w[0].tag < w[1].tag), "still sorted");
    let counters = p.counters();
    assert_eq!(counters["brasil"], CounterDelta { depth: 1, ok: 6, error: 3 });
    assert_eq!(counters["brasil.norte"], CounterDelta { depth: 2, ok: 2, error: 1 });
}
