//! Payload decoding: every shape devices in the field send becomes a `Reading`.
//!
//! Decoding never fails. A payload we cannot understand becomes an error
//! reading that carries the reason and the raw bytes, because a message that
//! reached the stream must be stored (design: nothing is lost).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value as Json;

use crate::reading::{Reading, Status, Value};
use crate::tag::Tag;

/// Fields that name the device; kept as metadata, never trusted over the subject.
const META_LIMIT: usize = 16;
/// Longest metadata value or text value kept; the CSV import refuses longer cells.
pub(crate) const META_VALUE_LIMIT: usize = 256;

/// Decodes one device payload published on `tag`'s subject.
/// `broker_ms` is the stream's receive time, used when the payload has none.
pub fn decode_payload(tag: &Tag, payload: &[u8], broker_ms: i64) -> Reading {
    decode_with(tag, payload, broker_ms, Detail::All)
}

/// [`decode_payload`] without the unit and the metadata: what the alerter
/// judges. Tag, time, value and status are always those `decode_payload`
/// gives, because the fields it drops can never make a reading an error;
/// it only checks them as JSON instead of keeping them (the metadata's keys
/// and strings were most of a device reading's decoding).
pub(crate) fn decode_judged(tag: &Tag, payload: &[u8], broker_ms: i64) -> Reading {
    decode_with(tag, payload, broker_ms, Detail::Judged)
}

/// What of a payload object a decode keeps.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Detail {
    All,
    /// Value and time only.
    Judged,
}

fn decode_with(tag: &Tag, payload: &[u8], broker_ms: i64, detail: Detail) -> Reading {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Reading::error(tag.clone(), broker_ms, "empty payload", payload);
    }
    let parsed = {
        // As `serde_json::from_slice`, with the detail to keep.
        let mut de = serde_json::Deserializer::from_slice(payload);
        de.deserialize_any(ParsedVisitor(detail)).and_then(|parsed| de.end().map(|()| parsed))
    };
    let parsed = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            let reason = format!("payload is not JSON: {e}");
            return Reading::error(tag.clone(), broker_ms, reason, payload);
        }
    };
    match parsed {
        Parsed::Object(fields) => decode_object(tag, fields, broker_ms, payload),
        // `nats pub brasil.sul.s1 42.5` and `nats pub brasil.sul.s1 '"42"'`.
        Parsed::Other(bare @ (Json::Number(_) | Json::String(_))) => {
            let mut reading = Reading::number(tag.clone(), broker_ms, 0.0);
            apply_value(&mut reading, Some(&bare), "value");
            if reading.status == Status::Error {
                reading.raw = Some(payload.to_vec());
            }
            reading
        }
        Parsed::Other(other) => {
            let reason = format!("payload must be a JSON object like {{\"value\": 42.5}}, got {}", kind(&other));
            Reading::error(tag.clone(), broker_ms, reason, payload)
        }
    }
}

fn decode_object(tag: &Tag, fields: Fields, broker_ms: i64, payload: &[u8]) -> Reading {
    let mut reading = Reading::number(tag.clone(), broker_ms, 0.0);
    let (value_field, value) = match (&fields.value, &fields.valor) {
        (Some(v), _) => ("value", Some(v)),
        (None, Some(v)) => ("valor", Some(v)),
        (None, None) => ("value", None),
    };
    apply_value(&mut reading, value, value_field);

    let ts = [("timestamp", &fields.timestamp), ("ts", &fields.ts), ("time", &fields.time)]
        .into_iter()
        .find_map(|(k, v)| v.as_ref().map(|v| (k, v)));
    if let Some((field, ts)) = ts {
        match timestamp_of(ts) {
            Ok(ms) => reading.ts_ms = ms,
            Err(why) => fail(&mut reading, format!("`{field}` {why}")),
        }
    }
    if let Some(unit) = &fields.unit {
        match unit {
            Json::String(u) if !u.trim().is_empty() => reading.unit = Some(clip(u.trim())),
            Json::String(_) | Json::Null => {}
            other => reading.unit = Some(clip(&other.to_string())),
        }
    }
    reading.meta = fields.meta.into();
    if reading.status == Status::Error {
        reading.raw = Some(payload.to_vec());
    }
    reading
}

/// A payload as read in one pass: an object's fields, or any other JSON value.
enum Parsed {
    Object(Fields),
    /// Not an object (an array stands for itself only by its kind).
    Other(Json),
}

/// A payload object's fields: those a reading is made of, and the rest as
/// metadata. Read straight from the bytes rather than through a
/// `serde_json::Map`, whose owned keys and tree nodes were most of the
/// decoding of a device reading (docs/performance.md). As in a map, a
/// repeated key takes its last value.
#[derive(Default)]
struct Fields {
    value: Option<Json>,
    valor: Option<Json>,
    timestamp: Option<Json>,
    ts: Option<Json>,
    time: Option<Json>,
    unit: Option<Json>,
    /// Strings, numbers and booleans of the other keys, cut to
    /// [`META_VALUE_LIMIT`]; the [`META_LIMIT`] first keys in key order.
    meta: BTreeMap<String, String>,
}

impl Fields {
    fn other(&mut self, key: Cow<'_, str>, v: Json) {
        let text = match v {
            Json::String(s) => s,
            n @ (Json::Number(_) | Json::Bool(_)) => n.to_string(),
            _ => {
                self.meta.remove(key.as_ref());
                return;
            }
        };
        self.meta.insert(clipped(key.into_owned()), clipped(text));
        if self.meta.len() > META_LIMIT {
            self.meta.pop_last();
        }
    }
}

struct ParsedVisitor(Detail);

impl<'de> Visitor<'de> for ParsedVisitor {
    type Value = Parsed;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Parsed, A::Error> {
        let mut fields = Fields::default();
        while let Some(Key(key)) = map.next_key()? {
            let slot = match key.as_ref() {
                "value" => &mut fields.value,
                "valor" => &mut fields.valor,
                "timestamp" => &mut fields.timestamp,
                "ts" => &mut fields.ts,
                "time" => &mut fields.time,
                "unit" if self.0 == Detail::All => &mut fields.unit,
                _ if self.0 == Detail::Judged => {
                    map.next_value::<Skim>()?;
                    continue;
                }
                _ => {
                    let v = map.next_value()?;
                    fields.other(key, v);
                    continue;
                }
            };
            *slot = Some(map.next_value()?);
        }
        Ok(Parsed::Object(fields))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Parsed, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Parsed::Other(Json::Array(Vec::new())))
    }

    fn visit_bool<E>(self, b: bool) -> Result<Parsed, E> {
        Ok(Parsed::Other(Json::Bool(b)))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Parsed, E> {
        Ok(Parsed::Other(Json::from(n)))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Parsed, E> {
        Ok(Parsed::Other(Json::from(n)))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Parsed, E> {
        Ok(Parsed::Other(Json::from(n)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Parsed, E> {
        Ok(Parsed::Other(Json::String(s.to_owned())))
    }

    fn visit_string<E>(self, s: String) -> Result<Parsed, E> {
        Ok(Parsed::Other(Json::String(s)))
    }

    fn visit_unit<E>(self) -> Result<Parsed, E> {
        Ok(Parsed::Other(Json::Null))
    }
}

/// Any JSON value, read and checked as a `serde_json::Value` is (numbers in
/// range, strings valid), and kept nowhere.
struct Skim;

impl<'de> Deserialize<'de> for Skim {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Skim, D::Error> {
        d.deserialize_any(SkimVisitor)
    }
}

struct SkimVisitor;

impl<'de> Visitor<'de> for SkimVisitor {
    type Value = Skim;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Skim, E> {
        Ok(Skim)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Skim, E> {
        Ok(Skim)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Skim, E> {
        Ok(Skim)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Skim, E> {
        Ok(Skim)
    }

    fn visit_str<E>(self, _: &str) -> Result<Skim, E> {
        Ok(Skim)
    }

    fn visit_unit<E>(self) -> Result<Skim, E> {
        Ok(Skim)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skim, A::Error> {
        while seq.next_element::<Skim>()?.is_some() {}
        Ok(Skim)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skim, A::Error> {
        while map.next_entry::<Skim, Skim>()?.is_some() {}
        Ok(Skim)
    }
}

/// An object key, borrowed from the payload unless it holds escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key<'de>, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }

            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }

            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }

            fn visit_string<E>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

fn apply_value(reading: &mut Reading, value: Option<&Json>, field: &str) {
    match value {
        None => {
            reading.value = Value::Empty;
            fail(reading, "no `value` or `valor` field: send {\"value\": 42.5}".into());
        }
        Some(Json::Null) => {
            reading.value = Value::Empty;
            fail(reading, format!("`{field}` is null"));
        }
        Some(Json::Number(n)) => match n.as_f64().filter(|f| f.is_finite()) {
            Some(f) => reading.value = Value::Number(f),
            None => {
                reading.value = Value::Text(n.to_string());
                fail(reading, format!("`{field}` is not a finite number"));
            }
        },
        Some(Json::String(s)) => {
            let s = s.trim();
            if s.is_empty() {
                reading.value = Value::Empty;
                fail(reading, format!("`{field}` is empty"));
            } else if let Some(f) = parse_number(s) {
                reading.value = Value::Number(f);
            } else {
                reading.value = Value::Text(clip(s));
            }
        }
        Some(Json::Bool(b)) => reading.value = Value::Text(b.to_string()),
        Some(other) => {
            reading.value = Value::Empty;
            fail(reading, format!("`{field}` must be a number or a string, got {}", kind(other)));
        }
    }
}

/// Numbers as devices write them in strings: `42`, `-3.5e2`, and the decimal comma `42,5`.
pub(crate) fn parse_number(s: &str) -> Option<f64> {
    let looks_numeric = s.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | ',' | '-' | '+' | 'e' | 'E'));
    if !looks_numeric || !s.chars().any(|c| c.is_ascii_digit()) {
        return None;
    }
    let parsed = match (s.contains('.'), s.matches(',').count()) {
        (false, 1) => s.replace(',', ".").parse::<f64>().ok(),
        (_, 0) => s.parse::<f64>().ok(),
        _ => None,
    };
    parsed.filter(|f| f.is_finite())
}

fn timestamp_of(ts: &Json) -> Result<i64, String> {
    match ts {
        Json::Number(n) => n.as_f64().and_then(epoch_to_ms).ok_or_else(|| format!("{n} is not a unix time")),
        Json::String(s) => parse_timestamp(s),
        other => Err(format!("must be unix milliseconds, unix seconds or RFC 3339, got {}", kind(other))),
    }
}

/// Parses the timestamp forms we accept: unix seconds, milliseconds,
/// microseconds or nanoseconds (by magnitude), or RFC 3339 with an offset.
pub fn parse_timestamp(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(n) = s.parse::<f64>() {
        return epoch_to_ms(n).ok_or_else(|| format!("`{s}` is not a unix time"));
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|dt| dt.timestamp_millis())
        .map_err(|e| {
            format!("`{s}` is not a timestamp ({e}): use unix milliseconds or RFC 3339 with an offset, e.g. 2023-02-15T01:30:00.000-05:00")
        })
}

/// Unix time of unknown unit to milliseconds, judged by magnitude: seconds
/// until the year 5138, then milliseconds, microseconds, nanoseconds.
fn epoch_to_ms(n: f64) -> Option<i64> {
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    let ms = if n < 1e11 {
        n * 1e3
    } else if n < 1e14 {
        n
    } else if n < 1e17 {
        n / 1e3
    } else {
        n / 1e6
    };
    Some(ms.round() as i64)
}

fn fail(reading: &mut Reading, reason: String) {
    reading.status = Status::Error;
    reading.reason = Some(match reading.reason.take() {
        Some(prev) => format!("{prev}; {reason}"),
        None => reason,
    });
}

/// `s` cut to [`META_VALUE_LIMIT`] bytes, at a character boundary.
fn clipped(mut s: String) -> String {
    if s.len() > META_VALUE_LIMIT {
        let mut end = META_VALUE_LIMIT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

fn clip(s: &str) -> String {
    clipped(s.to_owned())
}

fn kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BROKER: i64 = 1_700_000_000_000;

    fn tag() -> Tag {
        Tag::parse("brasil.sudeste.sensor01").unwrap()
    }

    fn check(payload: &str, value: Value, status: Status, ts: i64) -> Reading {
        let r = decode_payload(&tag(), payload.as_bytes(), BROKER);
        assert_eq!((&r.value, r.status, r.ts_ms), (&value, status, ts), "{payload}: {r:?}");
        r
    }

    #[test]
    fn shapes_from_the_design() {
        let r = check(
            r#"{"timestamp": 1539112021301, "tag": "brasil.sudeste.sensor01", "valor": "42"}"#,
            Value::Number(42.0),
            Status::Ok,
            1_539_112_021_301,
        );
        assert_eq!(r.meta["tag"], "brasil.sudeste.sensor01");
        let r = check(
            r#"{"equipmentId": "EQ-12495", "value": 78.42, "timestamp": "2023-02-15T01:30:00.000-05:00"}"#,
            Value::Number(78.42),
            Status::Ok,
            1_676_442_600_000,
        );
        assert_eq!(r.meta["equipmentId"], "EQ-12495");
        let r = check(
            r#"{"device_id": "device-7", "value": 55, "unit": "kWh", "timestamp": 1700000001}"#,
            Value::Number(55.0),
            Status::Ok,
            1_700_000_001_000,
        );
        assert_eq!(r.unit.as_deref(), Some("kWh"));
        assert_eq!(r.meta["device_id"], "device-7");
        assert!(r.raw.is_none());
    }

    #[test]
    fn metadata_is_kept_cut_at_a_character_boundary() {
        let tag = Tag::parse("brasil.sul.s1").unwrap();
        let long = "é".repeat(200); // 400 bytes
        let payload = format!(r#"{{"value": 1, "note": "{long}", "batch": 7, "ok": true, "nested": {{}}}}"#);
        let r = decode_payload(&tag, payload.as_bytes(), 0);
        assert_eq!(r.status, Status::Ok);
        assert_eq!(r.meta["note"], "é".repeat(128), "256 bytes, whole characters");
        assert_eq!(r.meta["batch"], "7");
        assert_eq!(r.meta["ok"], "true");
        assert!(!r.meta.contains_key("nested"), "objects are not metadata");
    }

    #[test]
    fn repeated_keys_take_their_last_value_and_metadata_keeps_the_first_keys_in_order() {
        let tag = Tag::parse("brasil.sul.s1").unwrap();
        let keys: Vec<String> = (0..20).rev().map(|i| format!(r#""k{i:02}": "v{i}""#)).collect();
        let payload = format!(
            r#"{{"value": 1, "id": "a", "id": "b", "gone": "x", "gone": {{}}, "value": 2, {}}}"#,
            keys.join(", ")
        );
        let r = decode_payload(&tag, payload.as_bytes(), 0);
        assert_eq!((r.value, r.status), (Value::Number(2.0), Status::Ok));
        assert_eq!(r.meta.len(), META_LIMIT);
        assert_eq!(r.meta["id"], "b");
        assert!(!r.meta.contains_key("gone"), "its last value is an object");
        let kept: Vec<&str> = r.meta.keys().map(String::as_str).collect();
        let mut expected: Vec<String> = (0..15).map(|i| format!("k{i:02}")).collect();
        expected.push("id".into());
        expected.sort();
        assert_eq!(kept, expected, "the first keys in key order, wherever they stood");
        let escaped = decode_payload(&tag, br#"{"value": 1, "caf\u00e9": "ok"}"#, 0);
        assert_eq!(escaped.meta["caf\u{e9}"], "ok", "a key with escapes");
    }

    #[test]
    fn values_of_every_kind() {
        check(r#"{"valor": "ligado"}"#, Value::Text("ligado".into()), Status::Ok, BROKER);
        check(r#"{"valor": "42,5"}"#, Value::Number(42.5), Status::Ok, BROKER);
        check(r#"{"value": " -3.5e2 "}"#, Value::Number(-350.0), Status::Ok, BROKER);
        check("42.5", Value::Number(42.5), Status::Ok, BROKER);
        check(r#""17""#, Value::Number(17.0), Status::Ok, BROKER);
        let r = check(r#"{"valor": ""}"#, Value::Empty, Status::Error, BROKER);
        assert_eq!(r.reason.as_deref(), Some("`valor` is empty"));
        assert!(r.raw.is_some());
        check(r#"{"value": null}"#, Value::Empty, Status::Error, BROKER);
        check(r#"{"timestamp": 1}"#, Value::Empty, Status::Error, 1000);
        check(r#"{"value": [1]}"#, Value::Empty, Status::Error, BROKER);
    }

    #[test]
    fn garbage_keeps_reason_and_bytes() {
        for payload in [&b"\xff\xfe garbage"[..], b"", b"   ", b"[1,2]", b"{\"value\": 1"] {
            let r = decode_payload(&tag(), payload, BROKER);
            assert_eq!(r.status, Status::Error);
            assert_eq!(r.raw.as_deref(), Some(payload));
            assert!(r.reason.is_some());
            assert_eq!(r.ts_ms, BROKER);
        }
    }

    #[test]
    fn blank_bare_strings_keep_their_bytes() {
        // Found by the `decode_payload` fuzz target: a bare blank JSON string was an error without its bytes.
        for payload in [&b"\"\""[..], b" \r \"\"", b"\"   \""] {
            let r = decode_payload(&tag(), payload, BROKER);
            assert_eq!((r.status, r.reason.as_deref()), (Status::Error, Some("`value` is empty")));
            assert_eq!(r.raw.as_deref(), Some(payload));
        }
    }

    #[test]
    fn timestamps_by_magnitude_and_format() {
        assert_eq!(parse_timestamp("1539112021").unwrap(), 1_539_112_021_000);
        assert_eq!(parse_timestamp("1539112021301").unwrap(), 1_539_112_021_301);
        assert_eq!(parse_timestamp("1539112021301000").unwrap(), 1_539_112_021_301);
        assert_eq!(parse_timestamp("2018-10-09T19:07:01.301Z").unwrap(), 1_539_112_021_301);
        assert!(parse_timestamp("2018-10-09 19:07:01").unwrap_err().contains("RFC 3339"));
        let r = check(r#"{"value": 1, "timestamp": "yesterday"}"#, Value::Number(1.0), Status::Error, BROKER);
        assert!(r.reason.unwrap().contains("`timestamp`"));
    }

    proptest! {
        #[test]
        fn any_bytes_decode_without_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let r = decode_payload(&tag(), &bytes, BROKER);
            // An error always explains itself and keeps what was sent.
            if r.status == Status::Error {
                prop_assert!(r.reason.is_some());
                prop_assert_eq!(r.raw.as_deref(), Some(&bytes[..]));
            }
        }

        #[test]
        fn numbers_survive_any_shape(v in -1e9f64..1e9, ms in 1_000_000_000_000i64..4_000_000_000_000) {
            for payload in [
                format!(r#"{{"value": {v}, "timestamp": {ms}}}"#),
                format!(r#"{{"valor": "{v}", "timestamp": "{ms}"}}"#),
            ] {
                let r = decode_payload(&tag(), payload.as_bytes(), BROKER);
                prop_assert_eq!(r.status, Status::Ok);
                prop_assert_eq!(r.value, Value::Number(v));
                prop_assert_eq!(r.ts_ms, ms);
            }
        }
    }
}
