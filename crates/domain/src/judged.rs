//! What the alerter reads of a log message: its fresh, ok readings, and no
//! more than it needs of them.
//!
//! The alerter sees every message of `READINGS`, as the persister does, but
//! judges only readings that are fresh (backfill is history) and ok (errors
//! have no value to judge), and never looks at their unit or metadata.
//! Decoding every message in full only to drop most of it cost the alerter
//! as much as the persister's own decoding: a backfill of ten million
//! readings through HTTP was decoded twice (docs/performance.md). Whatever
//! is read here is checked as [`crate::decode_message`] checks it, so a
//! reading is judged exactly when the full decode makes it fresh and ok.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};

use crate::decode::decode_judged;
use crate::envelope::{BatchItem, BatchV1, ItemValue, READINGS_RECORDED, item_to_reading};
use crate::reading::{Reading, Status};
use crate::tag::Tag;

/// The readings of one message the alerter judges, with their index in the
/// message: those [`crate::decode_message`] gives that are fresh and ok,
/// without unit or metadata. `flagged` is the message's
/// [`crate::BACKFILL_HEADER`]; a reading is backfill when it reached the log
/// more than `freshness_ms` after its time ([`crate::mark_backfill`]).
///
/// A flagged message is not read at all, and a batch's items are read with
/// their tag borrowed and only the fresh ones made readings.
pub fn readings_to_judge(
    subject: &str,
    event: Option<&str>,
    version: Option<&str>,
    payload: &[u8],
    broker_ms: i64,
    flagged: bool,
    freshness_ms: i64,
) -> Vec<(u32, Reading)> {
    if flagged {
        return Vec::new();
    }
    // An invalid subject makes an error reading; changes and unknown events hold no readings.
    let Ok(tag) = Tag::parse(subject) else { return Vec::new() };
    let fresh = |ts: i64| broker_ms.saturating_sub(ts) <= freshness_ms;
    let judged = |r: &Reading| r.status == Status::Ok && fresh(r.ts_ms);
    match (event, version) {
        (None, _) => {
            let reading = decode_judged(&tag, payload, broker_ms);
            if judged(&reading) { vec![(0, reading)] } else { Vec::new() }
        }
        (Some(READINGS_RECORDED), Some("1") | None) => {
            let Ok(batch) = serde_json::from_slice::<BatchV1<Vec<GlancedItem>>>(payload) else { return Vec::new() };
            if batch.v != 1 {
                return Vec::new();
            }
            let is_fresh = |item: &GlancedItem| fresh(item.ts.unwrap_or(broker_ms));
            let mut readings = Vec::with_capacity(batch.readings.iter().filter(|item| is_fresh(item)).count());
            for (i, item) in (0u32..).zip(batch.readings) {
                if is_fresh(&item) {
                    let reading = item_to_reading(&tag, item.into(), broker_ms);
                    if reading.status == Status::Ok {
                        readings.push((i, reading));
                    }
                }
            }
            readings
        }
        (Some(_), _) => Vec::new(),
    }
}

/// A batch item as the alerter reads it: checked as a [`BatchItem`] is, so
/// a batch one refuses the other refuses too, but with its tag borrowed and
/// its unit and metadata only checked (hence never read).
#[derive(Deserialize)]
#[allow(dead_code)]
struct GlancedItem<'a> {
    #[serde(borrow)]
    tag: Cow<'a, str>,
    #[serde(default)]
    ts: Option<i64>,
    #[serde(default)]
    value: Option<Value>,
    #[serde(default)]
    unit: Option<Text>,
    #[serde(default)]
    meta: Texts,
}

impl From<GlancedItem<'_>> for BatchItem {
    fn from(item: GlancedItem<'_>) -> BatchItem {
        let value = item.value.map(|v| v.0);
        BatchItem { tag: item.tag.into_owned(), ts: item.ts, value, unit: None, meta: BTreeMap::new() }
    }
}

/// An [`ItemValue`] read straight from the bytes: any number, or a string.
/// `ItemValue` is an untagged enum, which serde reads by buffering every
/// value first; the values it takes and refuses are the same.
struct Value(ItemValue);

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        struct ValueVisitor;
        impl Visitor<'_> for ValueVisitor {
            type Value = Value;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number or a string")
            }

            fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
                Ok(Value(ItemValue::Number(n as f64)))
            }

            fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
                Ok(Value(ItemValue::Number(n as f64)))
            }

            fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
                Ok(Value(ItemValue::Number(n)))
            }

            fn visit_str<E>(self, s: &str) -> Result<Value, E> {
                Ok(Value(ItemValue::Text(s.to_owned())))
            }
        }
        d.deserialize_any(ValueVisitor)
    }
}

/// A JSON string, checked and not kept.
struct Text;

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Text, D::Error> {
        struct TextVisitor;
        impl Visitor<'_> for TextVisitor {
            type Value = Text;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_str<E>(self, _: &str) -> Result<Text, E> {
                Ok(Text)
            }
        }
        d.deserialize_str(TextVisitor)
    }
}

/// A JSON object of strings, checked and not kept.
#[derive(Default)]
struct Texts;

impl<'de> Deserialize<'de> for Texts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Texts, D::Error> {
        struct TextsVisitor;
        impl<'de> Visitor<'de> for TextsVisitor {
            type Value = Texts;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of strings")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Texts, A::Error> {
                while map.next_entry::<Text, Text>()?.is_some() {}
                Ok(Texts)
            }
        }
        d.deserialize_map(TextsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{READING_CORRECTED, decode_message, mark_backfill};

    const NOW: i64 = 1_700_000_000_000;
    const FRESH_MS: i64 = 60_000;

    /// What the alerter judges of a message, from the full decode: its fresh, ok readings.
    fn judged_in_full(subject: &str, event: Option<&str>, body: &[u8], flagged: bool) -> Vec<(u32, Reading)> {
        let mut readings = decode_message(subject, event, Some("1"), body, NOW).into_readings();
        mark_backfill(&mut readings, flagged, NOW, FRESH_MS);
        (0u32..).zip(readings).filter(|(_, r)| !r.backfill && r.status == Status::Ok).collect()
    }

    /// `readings_to_judge` gives what the full decode gives, reading for
    /// reading, but for the unit and metadata it does not keep.
    fn assert_judged_as_in_full(subject: &str, event: Option<&str>, body: &str, flagged: bool) {
        let full = judged_in_full(subject, event, body.as_bytes(), flagged);
        let light = readings_to_judge(subject, event, Some("1"), body.as_bytes(), NOW, flagged, FRESH_MS);
        let strip = |v: Vec<(u32, Reading)>| -> Vec<_> {
            v.into_iter().map(|(i, r)| (i, r.tag, r.ts_ms, r.value, r.status, r.backfill)).collect()
        };
        assert_eq!(strip(light), strip(full), "{subject} {event:?} {body}");
    }

    #[test]
    fn device_payloads_are_judged_as_in_full() {
        let (fresh, old, edge) = (NOW - 1_000, NOW - 3_600_000, NOW - FRESH_MS);
        let payloads = [
            format!(
                r#"{{"value":1.5,"ts":{fresh},"unit":"C","fw":"1.2","battery":87,"deep":{{"a":[1,{{"b":null}}]}}}}"#
            ),
            format!(r#"{{"value":1.5,"ts":{old},"fw":"1.2"}}"#),
            format!(r#"{{"value":1.5,"ts":{edge},"fw":"1.2"}}"#),
            format!(r#"{{"value":1.5,"ts":{},"fw":"1.2"}}"#, edge - 1),
            r#"{"valor":"3,5","unit":5,"tipo":true}"#.into(),
            r#"{"value":true}"#.into(),
            r#"{"value":1,"x":1e999}"#.into(),
            r#"{"value":1,"x":"\ud800"}"#.into(),
            r#"{"value":1,"x":"\q"}"#.into(),
            r#"{"value":1,"k\u0041y":"a\nb"}"#.into(),
            r#"{"value":1} x"#.into(),
            "{\"value\":1}\n ".into(),
            r#"{"value":1,"ts":"yesterday"}"#.into(),
            r#"{"value":"","unit":"C"}"#.into(),
            "42.5".into(),
            r#""42""#.into(),
            "[1]".into(),
            "{".into(),
            "".into(),
        ];
        for body in &payloads {
            assert_judged_as_in_full("brasil.sul.s1", None, body, false);
            assert_judged_as_in_full("brasil.sul.s1", None, body, true);
            assert_judged_as_in_full("brasil sul", None, body, false);
        }
        // Fresh, at the edge, a decimal comma, a boolean, an escaped key,
        // trailing whitespace, a bare number and a bare string are judged.
        let judged = payloads.iter().filter(|b| !judged_in_full("brasil.sul.s1", None, b.as_bytes(), false).is_empty());
        assert_eq!(judged.count(), 8);
    }

    #[test]
    fn batches_are_judged_as_in_full() {
        let (fresh, old) = (NOW - 1_000, NOW - 3_600_000);
        let batches = [
            format!(
                r#"{{"v":1,"readings":[{{"tag":"brasil.sul.s1","value":1,"ts":{fresh},"unit":"C","meta":{{"a":"b"}}}},{{"tag":"brasil.sul.s2","value":2,"ts":{old}}},{{"tag":"brasil.sul.s3","value":"7"}},{{"tag":"bad tag","value":1}},{{"tag":"meters.x.y","value":1}},{{"tag":"brasil.sul.s4","value":""}},{{"tag":"brasil.sul.s5"}}]}}"#
            ),
            r#"{"v":1,"readings":[{"tag":"brasil.sul.s1","value":1,"meta":{"a":1}}]}"#.into(),
            r#"{"v":1,"readings":[{"tag":"brasil.sul.s1","value":1,"meta":null}]}"#.into(),
            r#"{"v":1,"readings":[{"tag":"brasil.sul.s1","value":1,"unit":5}]}"#.into(),
            r#"{"v":1,"readings":[{"tag":"brasil.sul.s1","value":1,"unit":null}]}"#.into(),
            r#"{"v":1,"readings":[{"tag":"brasil.sul.s1","value":true}]}"#.into(),
            r#"{"v":1,"readings":[{"tag":"brasil.sul.s1","value":1,"tag":"brasil.sul.s2"}]}"#.into(),
            r#"{"v":1,"readings":[{"tag":"brasil.sul.s\u0031","value":1,"extra":[1]}]}"#.into(),
            r#"{"v":1,"readings":[{"value":1}]}"#.into(),
            r#"{"v":2,"readings":[{"tag":"brasil.sul.s1","value":1}]}"#.into(),
            r#"{"v":1,"readings":[{"tag":"brasil.sul.s1","value":1,"ts":1.5}]}"#.into(),
            r#"{"v":1,"readings":[]}"#.into(),
            "nope".into(),
        ];
        for body in &batches {
            for event in [Some(READINGS_RECORDED), Some(READING_CORRECTED), Some("Nope")] {
                assert_judged_as_in_full("brasil.sul", event, body, false);
                assert_judged_as_in_full("brasil.sul", event, body, true);
            }
        }
        let first = readings_to_judge(
            "brasil.sul",
            Some(READINGS_RECORDED),
            Some("1"),
            batches[0].as_bytes(),
            NOW,
            false,
            FRESH_MS,
        );
        assert_eq!(first.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0, 2]);
        assert_eq!(
            readings_to_judge("brasil.sul", Some(READINGS_RECORDED), None, batches[7].as_bytes(), NOW, false, 1).len(),
            1
        );
    }

    proptest::proptest! {
        #[test]
        fn batches_of_any_items_are_judged_as_in_full(items in proptest::collection::vec(
            (0..4usize, 0..5usize, 0..10usize, 0..4usize, 0..4usize), 0..12)
        ) {
            let tags = [r#""brasil.sul.s1""#, r#""brasil.norte.s2""#, r#""bad tag""#, r#""meters.x.y""#];
            let ts = ["", r#","ts":1699999999000"#, r#","ts":1699999940000"#, r#","ts":1699999939999"#, r#","ts":"x""#];
            let values = [
                "", r#","value":1.5"#, r#","value":"2,5""#, r#","value":"on""#, r#","value":"""#, r#","value":null"#,
                r#","value":-3"#, r#","value":18446744073709551615"#, r#","value":true"#, r#","value":{}"#,
            ];
            let metas = ["", r#","meta":{"a":"b"}"#, r#","meta":{"a":1}"#, r#","unit":5"#];
            let units = ["", r#","unit":"C""#, r#","unit":null"#, r#","other":[{}]"#];
            let items: Vec<String> = items
                .iter()
                .map(|&(t, s, v, m, u)| format!(r#"{{"tag":{}{}{}{}{}}}"#, tags[t], ts[s], values[v], metas[m], units[u]))
                .collect();
            let body = format!(r#"{{"v":1,"readings":[{}]}}"#, items.join(","));
            assert_judged_as_in_full("brasil", Some(READINGS_RECORDED), &body, false);
        }
    }
}
