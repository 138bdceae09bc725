//! The query language at its boundary: query strings in, matches, orders and errors out.

mod props;

use super::*;
use crate::reading::{EventId, Reading, Status, Value};
use crate::tag::Tag;

/// Splits `a=b&c=d` into pairs, as the API hands them over (already percent-decoded).
pub(super) fn pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn parse(query: &str) -> EventQuery {
    EventQuery::from_pairs(&pairs(query)).unwrap_or_else(|e| panic!("{query}: {e}"))
}

fn event(seq: u64, tag: &str, ts_ms: i64, value: Value, unit: Option<&str>) -> StoredEvent {
    let mut reading = Reading::number(Tag::parse(tag).unwrap(), ts_ms, 0.0);
    reading.status = if value == Value::Empty { Status::Error } else { Status::Ok };
    reading.value = value;
    reading.unit = unit.map(str::to_owned);
    StoredEvent { id: EventId { seq, idx: 0 }, reading }
}

/// 2023-02-15T01:30:00-05:00.
const T0: i64 = 1_676_442_600_000;

fn sample() -> Vec<StoredEvent> {
    vec![
        event(1, "brasil.sudeste.sensor01", T0, Value::Number(78.42), Some("kWh")),
        event(2, "brasil.sudeste.sensor02", T0 + 1000, Value::Number(42.5), None),
        event(3, "brasil.sul.sensor01", T0 + 2000, Value::Text("ligado".into()), None),
        event(4, "brasil.sul.sensor_1", T0 + 3000, Value::Empty, Some("C")),
        event(5, "meters.lab.device_7", T0 + 4000, Value::Number(5.0), Some("kW")),
    ]
}

/// The ids of the sample events the query matches, in sample order.
fn check(query: &str, want: &[u64]) {
    let q = parse(query);
    let got: Vec<u64> = sample().iter().filter(|e| q.matches(e)).map(|e| e.id.seq).collect();
    assert_eq!(got, want, "{query}");
}

#[test]
fn defaults() {
    let q = parse("");
    assert_eq!(q, EventQuery::default());
    assert_eq!(format_sort(&q.sort), "timestamp:desc");
    assert_eq!((q.offset, q.count, q.cursor), (0, 100, None));
}

#[test]
fn filters_on_tags() {
    check("tag=brasil.sudeste.*", &[1, 2]);
    check("tag=eq:brasil.>", &[1, 2, 3, 4]);
    check("tag=brasil.sul.sensor01", &[3]);
    check("tag=neq:brasil.>", &[5]);
    check("tag=like:brasil.%.sensor0_", &[1, 2, 3]);
    check(r"tag=like:%sensor\_1", &[4]);
    check("tag=gte:brasil.sul&tag=lt:m", &[3, 4]);
}

#[test]
fn filters_on_values() {
    check("value=gt:50", &[1]);
    check("value=gte:5&value=lte:42.5", &[2, 5]);
    check("value=42,5", &[2]);
    // Numeric comparisons never match text or empty values, `neq` included.
    check("value=neq:5", &[1, 2]);
    check("value=ligado", &[3]);
    check("value=neq:ligado", &[1, 2, 4, 5]);
    check("value=like:lig%", &[3]);
    check("value=like:4_.5", &[2]);
    check("value=eq:", &[4]);
    check("value=eq:ge:50", &[]);
}

#[test]
fn filters_on_status_unit_and_time() {
    check("status=error", &[4]);
    check("status=neq:error", &[1, 2, 3, 5]);
    check("unit=kWh", &[1]);
    check("unit=like:k%", &[1, 5]);
    check("unit=eq:", &[2, 3]);
    check("timestamp=2023-02-15T01:30:00-05:00", &[1]);
    check("timestamp=eq:1676442600", &[1]);
    check(&format!("timestamp=gte:{}&timestamp=lt:{}", T0 + 1000, T0 + 3000), &[2, 3]);
    check(&format!("timestamp=neq:{T0}&status=ok&tag=brasil.>"), &[2, 3]);
}

#[test]
fn filters_print_in_canonical_form() {
    let q = parse("value= gt: 50 &value=eq:gt:50&timestamp=2023-02-15T01:30:00Z&tag=like:brasil.%");
    let text: Vec<String> = q.filters.iter().map(Filter::to_string).collect();
    assert_eq!(text, ["value=gt:50", "value=eq:gt:50", "timestamp=eq:2023-02-15T01:30:00Z", "tag=like:brasil.%"]);
    for filter in &q.filters {
        let (field, raw) = filter.to_string().split_once('=').map(|(f, r)| (f.to_owned(), r.to_owned())).unwrap();
        assert_eq!(&Filter::parse(EventField::parse(&field).unwrap(), &raw).unwrap(), filter);
    }
    assert_eq!(
        (q.filters[3].field(), q.filters[3].op(), q.filters[3].operand()),
        (EventField::Tag, FilterOp::Like, "brasil.%")
    );
}

#[test]
fn limits() {
    let q = parse("limit=20");
    assert_eq!((q.offset, q.count), (0, 20));
    let q = parse("limit= 40 , 20");
    assert_eq!((q.offset, q.count), (40, 20));
    let q = parse("limit=100000,10000");
    assert_eq!((q.offset, q.count), (EventQuery::MAX_OFFSET, EventQuery::MAX_COUNT));
}

#[test]
fn errors_name_the_parameter_and_the_fix() {
    let cursor = parse("").cursor_after(&sample()[0]);
    for (query, param, says) in [
        ("colour=red", "colour", "unknown query parameter `colour`: filter on tag, value"),
        ("value=ge:50", "value", "unknown op `ge` in `value`: use one of eq, neq, like, lt, gt, lte, gte"),
        ("value=ge:50", "value", "write `value=eq:ge:…`"),
        ("timestamp=GTE:5", "timestamp", "unknown op `GTE`"),
        (
            "timestamp=GTE:5",
            "timestamp",
            "use one of eq, neq, lt, gt, lte, gte, e.g. `timestamp=gte:2023-02-15T01:30:00-05:00`",
        ),
        ("status=is:ok", "status", "unknown op `is` in `status`: use one of eq, neq, e.g. `status=eq:error`"),
        ("status=like:ok", "status", "`status` does not support `like`: use eq, neq, e.g. `status=eq:error`"),
        ("unit=gt:k", "unit", "`unit` does not support `gt`: use eq, neq, like"),
        ("timestamp=like:1", "timestamp", "does not support `like`"),
        (
            "status=broken",
            "status",
            "`status=eq:broken` is not valid: status is `ok` or `error`; e.g. `status=eq:error`",
        ),
        ("value=lt:abc", "value", "`lt` compares numbers; e.g. `value=gt:50`"),
        ("timestamp=gte:yesterday", "timestamp", "e.g. `timestamp=gte:2023-02-15T01:30:00-05:00`"),
        ("timestamp=2023-02-15 01:30", "timestamp", "RFC 3339"),
        ("tag=brasil..x", "tag", "not a tag or NATS pattern (token 1 is empty"),
        ("tag=brasil.sul:x", "tag", "has `:`"),
        ("tag=", "tag", "needs a tag or a pattern; e.g. `tag=eq:brasil.sudeste.*`"),
        (r"tag=like:abc\", "tag", r"lone `\`: write `\\` for a backslash; e.g. `tag=like:brasil.%.sensor0_`"),
        ("sort=colour", "sort", "`sort=colour` is not valid: unknown field `colour`"),
        ("sort=tag&sort=value", "sort", "`sort` is given more than once"),
        ("limit=ten", "limit", "`limit=ten` is not valid: write `limit=<count>` or `limit=<offset>,<count>`"),
        ("limit=0", "limit", "a count of at least 1"),
        ("limit=1,2,3", "limit", "e.g. `limit=100` or `limit=200,100`"),
        ("limit=10001", "limit", "`limit` asks for 10001 events, over the maximum of 10000"),
        ("limit=100001,10", "limit", "offset 100001 is over the maximum of 100000: for deeper pages pass the `cursor`"),
        ("cursor=not-a-cursor!", "cursor", "`cursor` is not valid (not base64url)"),
        ("cursor=abc&cursor=abc", "cursor", "given more than once"),
        (&format!("cursor={cursor}&limit=5,10"), "cursor", "cannot be combined with offset 5"),
        (
            &format!("cursor={cursor}&sort=value"),
            "cursor",
            "made for `sort=timestamp:desc` but this request sorts by `sort=value:asc`",
        ),
    ] {
        let err = EventQuery::from_pairs(&pairs(query)).expect_err(query);
        assert_eq!(err.param(), param, "{query}");
        let message = err.to_string();
        assert!(message.contains(says), "{query}: {message}");
        assert!(message.contains(&format!("`{param}")), "{query}: message does not name `{param}`: {message}");
    }
}

#[test]
fn only_free_text_fields_hint_at_colons() {
    let message = |query: &str| EventQuery::from_pairs(&pairs(query)).unwrap_err().to_string();
    assert!(message("value=ERR:42").ends_with("to match text that itself contains a colon, write `value=eq:ERR:…`"));
    assert!(message("unit=per:h").contains("write `unit=eq:per:…`"));
    assert!(!message("status=is:ok").contains("colon"));
    check("value=eq:ERR:42", &[]);
}

#[test]
fn time_bounds_from_filters_and_cursor() {
    assert_eq!(parse("").time_bounds(), (None, None));
    assert_eq!(
        parse("timestamp=gte:1000000000000&timestamp=lt:1000000005000").time_bounds(),
        (Some(1_000_000_000_000), Some(1_000_000_004_999))
    );
    assert_eq!(parse("timestamp=gt:1000000000000&timestamp=neq:5").time_bounds(), (Some(1_000_000_000_001), None));
    assert_eq!(parse(&format!("timestamp={T0}&timestamp=lte:{}", T0 + 5)).time_bounds(), (Some(T0), Some(T0)));
    let (lo, hi) = parse("timestamp=gt:1e30").time_bounds();
    assert!(lo > hi, "nothing is after the end of time");

    let events = sample();
    let newest_first = parse("timestamp=gte:0");
    let cursor = newest_first.cursor_after(&events[2]);
    assert_eq!(parse(&format!("timestamp=gte:0&cursor={cursor}")).time_bounds(), (Some(0), Some(T0 + 2000)));
    let oldest_first = parse("sort=timestamp:asc,value");
    let cursor = oldest_first.cursor_after(&events[2]);
    assert_eq!(parse(&format!("sort=timestamp:asc,value&cursor={cursor}")).time_bounds(), (Some(T0 + 2000), None));
    let by_value = parse("sort=value,timestamp");
    let cursor = by_value.cursor_after(&events[2]);
    assert_eq!(parse(&format!("sort=value,timestamp&cursor={cursor}")).time_bounds(), (None, None));
}

#[test]
fn tag_prefixes() {
    let prefix = |query: &str| parse(query).tag_prefix();
    assert_eq!(prefix("tag=brasil.sudeste.*").as_deref(), Some("brasil.sudeste."));
    assert_eq!(prefix("tag=brasil.>").as_deref(), Some("brasil."));
    assert_eq!(prefix("tag=brasil.sul.sensor01").as_deref(), Some("brasil.sul.sensor01"));
    assert_eq!(prefix("tag=brasil.*.sensor01").as_deref(), Some("brasil."));
    assert_eq!(prefix("tag=brasil.>&tag=like:brasil.sul%").as_deref(), Some("brasil.sul"));
    for none in ["", "tag=>", "tag=*.sul.x", "tag=neq:brasil.>", "tag=gte:brasil", "tag=like:%x", "unit=brasil"] {
        assert_eq!(prefix(none), None, "{none}");
    }
}

#[test]
fn pages_by_cursor_and_offset() {
    let events = sample();
    let q = parse("sort=timestamp:asc&limit=2");
    let first = q.select(&events);
    assert_eq!(first.events.iter().map(|e| e.id.seq).collect::<Vec<_>>(), [1, 2]);
    let cursor = first.next_cursor.expect("more pages");
    assert!(cursor.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'), "{cursor}");
    let second = parse(&format!("sort=timestamp:asc&limit=2&cursor={cursor}")).select(&events);
    assert_eq!(second.events.iter().map(|e| e.id.seq).collect::<Vec<_>>(), [3, 4]);
    let cursor = second.next_cursor.expect("one more page");
    let last = parse(&format!("sort=timestamp:asc&limit=2&cursor={cursor}")).select(&events);
    assert_eq!((last.events.len(), last.events[0].id.seq, last.next_cursor), (1, 5, None));

    let by_offset = parse("limit=3,2").select(&events);
    assert_eq!(by_offset.events.iter().map(|e| e.id.seq).collect::<Vec<_>>(), [2, 1]);
    assert_eq!(by_offset.next_cursor, None);
    assert_eq!(parse("limit=9,2").select(&events).events, Vec::<&StoredEvent>::new());
}

#[test]
fn cursors_survive_text_units_and_empty_values() {
    let events = sample();
    let sort = "sort=value:desc,unit,status:desc,tag:desc,timestamp";
    let full: Vec<u64> = parse(sort).select(&events).events.iter().map(|e| e.id.seq).collect();
    assert_eq!(full, [4, 3, 1, 2, 5], "empty, then text, then numbers high to low");
    for (i, last) in full.iter().enumerate() {
        let last = events.iter().find(|e| e.id.seq == *last).unwrap();
        let cursor = parse(sort).cursor_after(last);
        let rest = parse(&format!("{sort}&cursor={cursor}")).select(&events);
        assert_eq!(rest.events.iter().map(|e| e.id.seq).collect::<Vec<_>>(), full[i + 1..]);
    }
}
