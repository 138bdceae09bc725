//! Properties of the query language over random events, filters, sorts and page sizes.
//!
//! Small vocabularies on purpose: few tags, timestamps and values make ties
//! on every sort key common, which is where paging goes wrong.

use proptest::prelude::*;

use super::super::*;
use super::pairs;
use crate::reading::{EventId, Reading, Status, Value};
use crate::tag::Tag;

const BASE: i64 = 1_700_000_000_000;
const TAGS: [&str; 5] = ["brasil.sul.s1", "brasil.sul.s2", "brasil.sudeste.s1", "brasil.sul_x.s1", "meters.lab.d7"];

fn arb_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        (-2i32..4).prop_map(|n| Value::Number(f64::from(n) / 2.0)),
        prop::sample::select(vec!["a", "b", "ligado"]).prop_map(|t| Value::Text(t.to_owned())),
        Just(Value::Empty),
    ]
}

fn arb_events() -> impl Strategy<Value = Vec<StoredEvent>> {
    let event = (
        prop::sample::select(TAGS.to_vec()),
        0i64..6,
        arb_value(),
        any::<bool>(),
        prop::sample::select(vec![None, Some("kWh"), Some("C")]),
    );
    prop::collection::vec(event, 0..40).prop_map(|events| {
        events
            .into_iter()
            .enumerate()
            .map(|(i, (tag, t, value, error, unit))| {
                let mut reading = Reading::number(Tag::parse(tag).unwrap(), BASE + t * 1000, 0.0);
                reading.value = value;
                reading.status = if error { Status::Error } else { Status::Ok };
                reading.unit = unit.map(str::to_owned);
                // Ids in shuffled order, so id order is not insertion order.
                let seq = (i as u64 * 7) % 41;
                StoredEvent { id: EventId { seq, idx: (i % 2) as u32 }, reading }
            })
            .collect()
    })
}

fn arb_timestamp_filter() -> impl Strategy<Value = String> {
    let op = prop::sample::select(vec!["eq", "neq", "lt", "gt", "lte", "gte"]);
    (op, -1i64..7).prop_map(|(op, t)| format!("timestamp={op}:{}", BASE + t * 1000))
}

fn arb_filter() -> impl Strategy<Value = String> {
    prop_oneof![
        (
            prop::sample::select(vec!["eq", "neq"]),
            prop::sample::select(vec!["brasil.>", "brasil.sul.*", "brasil.sul.s1", "*.*.s1", ">"])
        )
            .prop_map(|(op, p)| format!("tag={op}:{p}")),
        prop::sample::select(vec!["brasil.%", "%.s_", r"brasil.sul\_%", "brasil.su_.%", "meters%"])
            .prop_map(|p| format!("tag=like:{p}")),
        (prop::sample::select(vec!["lt", "gte"]), prop::sample::select(vec!["brasil.sul", "brasil.sul.s2", "m"]))
            .prop_map(|(op, t)| format!("tag={op}:{t}")),
        (prop::sample::select(vec!["eq", "neq", "lt", "gt", "lte", "gte"]), -2i32..4)
            .prop_map(|(op, n)| format!("value={op}:{}", f64::from(n) / 2.0)),
        prop::sample::select(vec!["value=a", "value=neq:ligado", "value=like:lig%", "value=eq:"])
            .prop_map(str::to_owned),
        prop::sample::select(vec!["status=ok", "status=neq:ok"]).prop_map(str::to_owned),
        prop::sample::select(vec!["unit=kWh", "unit=neq:C", "unit=like:k%", "unit=eq:"]).prop_map(str::to_owned),
        arb_timestamp_filter(),
    ]
}

fn arb_param() -> impl Strategy<Value = String> {
    let known = vec!["tag", "value", "status", "unit", "timestamp", "sort", "limit", "cursor"];
    prop_oneof![prop::sample::select(known).prop_map(str::to_owned), "[a-z]{0,9}"]
}

/// A `sort=` parameter (or none, for the default) with up to three distinct keys.
fn arb_sort() -> impl Strategy<Value = Option<String>> {
    let key = (prop::sample::select(EventField::ALL.to_vec()), prop::option::of(any::<bool>()));
    prop::option::of(prop::collection::vec(key, 1..4)).prop_map(|keys| {
        let mut seen = Vec::new();
        let parts: Vec<String> = keys?
            .into_iter()
            .filter(|(field, _)| {
                !seen.contains(field) && {
                    seen.push(*field);
                    true
                }
            })
            .map(|(field, desc)| match desc {
                None => field.to_string(),
                Some(desc) => format!("{field}:{}", if desc { "desc" } else { "asc" }),
            })
            .collect();
        Some(format!("sort={}", parts.join(",")))
    })
}

fn query(parts: &[String]) -> EventQuery {
    let text = parts.join("&");
    EventQuery::from_pairs(&pairs(&text)).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn ids(events: &[&StoredEvent]) -> Vec<EventId> {
    events.iter().map(|e| e.id).collect()
}

/// Every matching event in query order, by brute force.
fn expected<'a>(q: &EventQuery, events: &'a [StoredEvent]) -> Vec<&'a StoredEvent> {
    let mut hits: Vec<&StoredEvent> = events.iter().filter(|e| q.matches(e)).collect();
    hits.sort_by(|a, b| q.compare(a, b));
    hits
}

proptest! {
    #[test]
    fn the_order_is_total(events in arb_events(), sort in arb_sort()) {
        let q = query(&sort.into_iter().collect::<Vec<_>>());
        for a in &events {
            for b in &events {
                let ord = q.compare(a, b);
                prop_assert_eq!(ord, q.compare(b, a).reverse());
                prop_assert_eq!(ord.is_eq(), a.id == b.id);
            }
        }
        let mut sorted: Vec<&StoredEvent> = events.iter().collect();
        sorted.sort_by(|a, b| q.compare(a, b));
        for (i, a) in sorted.iter().enumerate() {
            for b in &sorted[i + 1..] {
                prop_assert!(q.compare(a, b).is_lt(), "not transitive");
            }
        }
    }

    #[test]
    fn cursor_pages_yield_every_match_once_in_order(
        events in arb_events(),
        filters in prop::collection::vec(arb_filter(), 0..3),
        sort in arb_sort(),
        sizes in prop::collection::vec(1u64..6, 1..5),
    ) {
        let mut base = filters;
        base.extend(sort);
        let want = ids(&expected(&query(&base), &events));
        let mut got = Vec::new();
        let mut cursor: Option<String> = None;
        for size in sizes.iter().cycle().take(events.len() + 2) {
            let mut parts = base.clone();
            parts.push(format!("limit={size}"));
            parts.extend(cursor.as_ref().map(|c| format!("cursor={c}")));
            let page = query(&parts).select(&events);
            prop_assert!(page.events.len() as u64 <= *size);
            if page.next_cursor.is_some() {
                prop_assert_eq!(page.events.len() as u64, *size, "only the last page is short");
            }
            got.extend(ids(&page.events));
            cursor = page.next_cursor;
            if cursor.is_none() {
                break;
            }
        }
        prop_assert!(cursor.is_none(), "paging did not finish");
        prop_assert_eq!(got, want);
    }

    #[test]
    fn offset_pages_are_slices_of_the_sorted_matches(
        events in arb_events(),
        filters in prop::collection::vec(arb_filter(), 0..3),
        sort in arb_sort(),
        offset in 0u64..45,
        count in 1u64..12,
    ) {
        let mut parts = filters;
        parts.extend(sort);
        parts.push(format!("limit={offset},{count}"));
        let q = query(&parts);
        let all = expected(&q, &events);
        let start = (offset as usize).min(all.len());
        let end = (start + count as usize).min(all.len());
        // Candidates in reverse, so `select` cannot lean on input order.
        let page = q.select(events.iter().rev());
        prop_assert_eq!(ids(&page.events), ids(&all[start..end]));
        prop_assert_eq!(page.next_cursor.is_some(), end < all.len());
        prop_assert_eq!(q.page(all.iter().copied()), page);
    }

    #[test]
    fn time_bounds_agree_with_timestamp_filters(
        events in arb_events(),
        filters in prop::collection::vec(arb_timestamp_filter(), 0..4),
        others in prop::collection::vec(arb_filter(), 0..2),
        cursor_at in any::<prop::sample::Index>(),
        sort in arb_sort(),
    ) {
        let mut parts = filters.clone();
        parts.extend(others);
        parts.extend(sort);
        let mut q = query(&parts);
        if !events.is_empty() {
            q.cursor = Some(Cursor::after(&q.sort, cursor_at.get(&events)));
        }
        let (lo, hi) = q.time_bounds();
        let within = |ts: i64| lo.is_none_or(|lo| lo <= ts) && hi.is_none_or(|hi| ts <= hi);
        for e in &events {
            if q.matches(e) && q.is_after_cursor(e) {
                prop_assert!(within(e.reading.ts_ms), "{:?} outside {:?}", e.reading.ts_ms, (lo, hi));
            }
        }
        // Without `neq` and without a cursor, the bounds are exact.
        let exact = query(&filters);
        if filters.iter().all(|f| !f.contains("neq")) {
            let (lo, hi) = exact.time_bounds();
            for e in &events {
                let ts = e.reading.ts_ms;
                let inside = lo.is_none_or(|lo| lo <= ts) && hi.is_none_or(|hi| ts <= hi);
                prop_assert_eq!(exact.matches(e), inside);
            }
        }
    }

    #[test]
    fn tag_prefix_starts_every_matching_tag(events in arb_events(), filters in prop::collection::vec(arb_filter(), 0..4)) {
        let q = query(&filters);
        if let Some(prefix) = q.tag_prefix() {
            for e in events.iter().filter(|e| q.matches(e)) {
                prop_assert!(e.reading.tag.as_str().starts_with(&prefix), "{} vs {prefix}", e.reading.tag);
            }
        }
    }

    #[test]
    fn filters_print_back_to_themselves(filters in prop::collection::vec(arb_filter(), 1..4)) {
        let q = query(&filters);
        let printed: Vec<String> = q.filters.iter().map(Filter::to_string).collect();
        prop_assert_eq!(query(&printed).filters, q.filters);
    }

    #[test]
    fn any_query_string_parses_or_explains(pairs in prop::collection::vec((arb_param(), "\\PC{0,24}"), 0..5)) {
        if let Err(e) = EventQuery::from_pairs(&pairs) {
            let param = e.param();
            prop_assert!(pairs.iter().any(|(name, _)| name == param), "{param} was not asked for");
            prop_assert!(e.to_string().contains(&format!("`{param}")), "{e}");
        }
    }
}
