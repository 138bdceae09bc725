//! Event queries from any percent-decoded pairs. The input is one pair per
//! line, `key=value` split at the first `=` (a line without one is a key with
//! an empty value), so `tag=brasil.*\nlimit=10` is `?tag=brasil.*&limit=10`.
//!
//! An error names one of the given keys and says so in its message. A parsed
//! query is within its limits, prints back to pairs that parse to the same
//! query, and pages a fixed set of events consistently with its own filters,
//! order, time bounds and tag prefix.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vigia_domain::{
    EventField, EventId, EventQuery, Filter, Reading, SortKey, Status, StoredEvent, Tag, Value, parse_timestamp,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let pairs: Vec<(String, String)> = text
        .split('\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (k, v) = line.split_once('=').unwrap_or((line, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();

    let query = match EventQuery::from_pairs(&pairs) {
        Ok(query) => query,
        Err(e) => {
            assert!(pairs.iter().any(|(k, _)| k == e.param()), "`{}` is not a given key: {e:?}", e.param());
            assert!(e.to_string().contains(e.param()), "the message names the parameter: {e}");
            return;
        }
    };

    let fields = pairs.iter().filter(|(k, _)| EventField::parse(k).is_some()).count();
    assert_eq!(query.filters.len(), fields, "one filter per field pair");
    assert!(!query.sort.is_empty());
    assert!((1..=EventQuery::MAX_COUNT).contains(&query.count));
    assert!(query.offset <= EventQuery::MAX_OFFSET);
    if let Some(cursor) = &query.cursor {
        assert_eq!(query.offset, 0);
        assert_eq!(cursor.sort(), query.sort.as_slice());
    }

    // The canonical form parses back to the same query.
    for f in &query.filters {
        let again = Filter::parse(f.field(), &format!("{}:{}", f.op(), f.operand()));
        assert_eq!(again.as_ref(), Ok(f), "`{f}` prints back to itself");
        assert_eq!(f.to_string(), format!("{}={}:{}", f.field(), f.op(), f.operand()));
    }
    let mut canonical: Vec<(String, String)> =
        query.filters.iter().map(|f| (f.field().to_string(), format!("{}:{}", f.op(), f.operand()))).collect();
    let sort: Vec<String> = query.sort.iter().map(SortKey::to_string).collect();
    canonical.push(("sort".into(), sort.join(",")));
    canonical.push(("limit".into(), format!("{},{}", query.offset, query.count)));
    if query.cursor.is_some() {
        let cursor = pairs.iter().find(|(k, _)| k == "cursor").unwrap();
        canonical.push(cursor.clone());
        canonical.retain(|(k, _)| k != "limit");
        canonical.push(("limit".into(), query.count.to_string()));
    }
    assert_eq!(EventQuery::from_pairs(&canonical).as_ref(), Ok(&query), "canonical pairs {canonical:?}");

    // Evaluation over events placed around the filters' own operands.
    let events = events_for(&query);
    let (lo, hi) = query.time_bounds();
    let prefix = query.tag_prefix();
    for e in events.iter().filter(|e| query.matches(e)) {
        if query.is_after_cursor(e) {
            assert!(lo.is_none_or(|lo| e.reading.ts_ms >= lo) && hi.is_none_or(|hi| e.reading.ts_ms <= hi), "{e:?}");
        }
        assert!(prefix.as_ref().is_none_or(|p| e.reading.tag.as_str().starts_with(p.as_str())), "{prefix:?} {e:?}");
    }
    let page = query.select(&events);
    assert!(page.events.len() as u64 <= query.count);
    for e in &page.events {
        assert!(query.matches(e) && query.is_after_cursor(e));
    }
    for pair in page.events.windows(2) {
        assert!(query.compare(pair[0], pair[1]).is_lt(), "the page is in strict order");
    }
    if let Some(next) = &page.next_cursor {
        let last = page.events.last().expect("a next cursor follows a non-empty page");
        assert_eq!(&query.cursor_after(last), next);
        let mut pairs = canonical.clone();
        pairs.retain(|(k, _)| k != "cursor" && k != "limit");
        pairs.push(("cursor".into(), next.clone()));
        pairs.push(("limit".into(), query.count.to_string()));
        let following = EventQuery::from_pairs(&pairs).expect("the next cursor is accepted");
        assert!(!following.is_after_cursor(last) && following.cursor.is_some());
    }
});

/// A few readings at and beside every timestamp operand, on tags near every tag operand.
fn events_for(query: &EventQuery) -> Vec<StoredEvent> {
    let mut times = vec![0, 1_700_000_000_000];
    let mut tags = vec![Tag::parse("brasil.sul.s1").unwrap(), Tag::parse("meters.lab.d7").unwrap()];
    for f in &query.filters {
        match f.field() {
            EventField::Timestamp => {
                if let Ok(ms) = parse_timestamp(f.operand()) {
                    times.extend([ms.saturating_sub(1), ms, ms.saturating_add(1)]);
                }
            }
            EventField::Tag => {
                let concrete = f.operand().replace('*', "x").replace('>', "y.z").replace(['%', '_'], "");
                tags.extend(Tag::parse(f.operand()).ok());
                tags.extend(Tag::parse(&concrete).ok());
            }
            _ => {}
        }
    }
    let values = [Value::Number(1.5), Value::Text("ligado".into()), Value::Empty];
    let mut events = Vec::new();
    for (i, tag) in tags.iter().enumerate() {
        for (j, ts) in times.iter().enumerate() {
            let mut reading = Reading::number(tag.clone(), *ts, 0.0);
            reading.value = values[(i + j) % values.len()].clone();
            reading.status = if (i + j) % 2 == 0 { Status::Ok } else { Status::Error };
            reading.unit = ((i + j) % 3 == 0).then(|| "kWh".to_owned());
            // Distinct ids (an odd multiplier is a bijection) in an order unlike insertion order.
            let seq = (events.len() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            events.push(StoredEvent { id: EventId { seq, idx: (i % 2) as u32 }, reading });
        }
    }
    events
}
