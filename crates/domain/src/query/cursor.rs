//! Page cursors: where the previous page ended, as an opaque URL-safe string.
//!
//! A cursor holds the sort spec and the last event's sort-key values and id,
//! so the next page starts strictly after that event whatever was written
//! meanwhile; an offset would skip or repeat events when new ones arrive.
//! The body is compact JSON in unpadded base64url (hand-written: no new
//! dependency for forty lines). It is not signed: a forged cursor can only
//! move the start of a page the caller could have asked for anyway.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::error::QueryError;
use super::filter::EventField;
use super::sort::{KeyRef, SortKey, format_sort, parse_sort};
use crate::projection::StoredEvent;
use crate::reading::{EventId, Status, Value};

/// Longest cursor we decode; generous for text sort keys, small enough to bound the work.
const MAX_CURSOR_LEN: usize = 16 * 1024;
/// Bumped if the body changes; old cursors are then refused, never misread.
const CURSOR_VERSION: u32 = 1;

/// The position after the last event of a page.
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    sort: Vec<SortKey>,
    keys: Vec<Key>,
    id: EventId,
}

/// An owned sort-key value, one per key of the sort.
#[derive(Debug, Clone, PartialEq)]
enum Key {
    Text(String),
    Millis(i64),
    Status(Status),
    Unit(Option<String>),
    Value(Value),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    v: u32,
    /// The sort spec, canonical.
    s: String,
    /// Sort-key values of the last event, in sort order.
    k: Vec<Json>,
    /// The last event's id: (stream sequence, index).
    id: (u64, u32),
}

impl Cursor {
    /// The cursor just after `last` under `sort`.
    pub(crate) fn after(sort: &[SortKey], last: &StoredEvent) -> Cursor {
        let keys = sort
            .iter()
            .map(|k| match KeyRef::of(k.field, &last.reading) {
                KeyRef::Text(t) => Key::Text(t.to_owned()),
                KeyRef::Millis(ms) => Key::Millis(ms),
                KeyRef::Status(s) => Key::Status(s),
                KeyRef::Unit(u) => Key::Unit(u.map(str::to_owned)),
                KeyRef::Value(v) => Key::Value(v.clone()),
            })
            .collect();
        Cursor { sort: sort.to_vec(), keys, id: last.id }
    }

    /// The sort the cursor was made for.
    pub fn sort(&self) -> &[SortKey] {
        &self.sort
    }

    /// The id of the last event of the previous page.
    pub fn last_id(&self) -> EventId {
        self.id
    }

    /// The value of sort key `i` of the last event.
    pub(crate) fn key(&self, i: usize) -> KeyRef<'_> {
        match &self.keys[i] {
            Key::Text(t) => KeyRef::Text(t),
            Key::Millis(ms) => KeyRef::Millis(*ms),
            Key::Status(s) => KeyRef::Status(*s),
            Key::Unit(u) => KeyRef::Unit(u.as_deref()),
            Key::Value(v) => KeyRef::Value(v),
        }
    }

    pub(crate) fn encode(&self) -> String {
        let k = self
            .keys
            .iter()
            .map(|key| match key {
                Key::Text(t) | Key::Unit(Some(t)) | Key::Value(Value::Text(t)) => Json::from(t.as_str()),
                Key::Millis(ms) => Json::from(*ms),
                Key::Status(s) => Json::from(s.as_str()),
                // A non-finite number becomes null and the cursor is then refused: readings never hold one.
                Key::Value(Value::Number(n)) => Json::from(*n),
                Key::Unit(None) | Key::Value(Value::Empty) => Json::Null,
            })
            .collect();
        let wire = Wire { v: CURSOR_VERSION, s: format_sort(&self.sort), k, id: (self.id.seq, self.id.idx) };
        base64url_encode(&serde_json::to_vec(&wire).expect("cursor bodies always serialise"))
    }

    pub(crate) fn decode(s: &str) -> Result<Cursor, QueryError> {
        let bad = |reason: &str| QueryError::BadCursor { reason: reason.to_owned() };
        if s.len() > MAX_CURSOR_LEN {
            return Err(bad("too long"));
        }
        let bytes = base64url_decode(s).ok_or_else(|| bad("not base64url"))?;
        let wire: Wire = serde_json::from_slice(&bytes).map_err(|_| bad("unreadable body"))?;
        if wire.v != CURSOR_VERSION {
            return Err(bad("made by another version of the API"));
        }
        let sort = parse_sort(&wire.s).map_err(|_| bad("unknown sort"))?;
        if sort.len() != wire.k.len() {
            return Err(bad("sort keys and values differ in number"));
        }
        let keys = sort
            .iter()
            .zip(wire.k)
            .map(|(key, json)| key_from_json(key.field, json).ok_or_else(|| bad("a sort value has the wrong type")))
            .collect::<Result<_, _>>()?;
        Ok(Cursor { sort, keys, id: EventId { seq: wire.id.0, idx: wire.id.1 } })
    }
}

fn key_from_json(field: EventField, json: Json) -> Option<Key> {
    Some(match (field, json) {
        (EventField::Tag, Json::String(t)) => Key::Text(t),
        (EventField::Timestamp, json) => Key::Millis(json.as_i64()?),
        (EventField::Status, Json::String(s)) => Key::Status(Status::parse(&s)?),
        (EventField::Unit, Json::String(u)) => Key::Unit(Some(u)),
        (EventField::Unit, Json::Null) => Key::Unit(None),
        (EventField::Value, Json::Number(n)) => Key::Value(Value::Number(n.as_f64()?)),
        (EventField::Value, Json::String(t)) => Key::Value(Value::Text(t)),
        (EventField::Value, Json::Null) => Key::Value(Value::Empty),
        _ => return None,
    })
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// RFC 4648 §5 base64url without padding.
fn base64url_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// Decodes unpadded base64url; `None` on any other character or a
/// non-canonical ending, so each cursor has exactly one spelling.
fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3 + 2);
    let (mut bits, mut nbits) = (0u32, 0u32);
    for c in s.bytes() {
        let sextet = ALPHABET.iter().position(|a| *a == c)? as u32;
        bits = (bits << 6) | sextet;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            out.push((bits >> nbits) as u8);
            bits &= (1 << nbits) - 1;
        }
    }
    // Six leftover bits cannot end a byte string; other leftovers must be zero padding.
    (nbits < 6 && bits == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn base64url_matches_rfc_4648_vectors() {
        for (plain, encoded) in
            [("", ""), ("f", "Zg"), ("fo", "Zm8"), ("foo", "Zm9v"), ("foob", "Zm9vYg"), ("fooba", "Zm9vYmE")]
        {
            assert_eq!(base64url_encode(plain.as_bytes()), encoded);
            assert_eq!(base64url_decode(encoded).as_deref(), Some(plain.as_bytes()));
        }
        assert_eq!(base64url_encode(&[0xfb, 0xff]), "-_8");
        for bad in ["Z", "Zh", "Zm9v+", "Zm9v=", "Zm 9"] {
            assert_eq!(base64url_decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn refuses_what_it_did_not_make() {
        let reason = |s: &str| match Cursor::decode(s) {
            Err(QueryError::BadCursor { reason }) => reason,
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(reason("not a cursor!"), "not base64url");
        assert_eq!(reason(&base64url_encode(b"{\"v\":1}")), "unreadable body");
        let body = |json: &str| base64url_encode(json.as_bytes());
        assert_eq!(
            reason(&body(r#"{"v":2,"s":"tag:asc","k":["a.b"],"id":[1,0]}"#)),
            "made by another version of the API"
        );
        assert_eq!(reason(&body(r#"{"v":1,"s":"colour:asc","k":["a.b"],"id":[1,0]}"#)), "unknown sort");
        assert_eq!(
            reason(&body(r#"{"v":1,"s":"tag:asc","k":[],"id":[1,0]}"#)),
            "sort keys and values differ in number"
        );
        assert_eq!(reason(&body(r#"{"v":1,"s":"tag:asc","k":[5],"id":[1,0]}"#)), "a sort value has the wrong type");
        assert_eq!(reason(&"A".repeat(MAX_CURSOR_LEN + 4)), "too long");
    }

    proptest! {
        #[test]
        fn base64url_round_trips(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let encoded = base64url_encode(&bytes);
            prop_assert!(encoded.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
            prop_assert_eq!(base64url_decode(&encoded), Some(bytes));
        }

        #[test]
        fn decoding_never_panics(s in "\\PC{0,80}") {
            let _ = Cursor::decode(&s);
            let _ = base64url_decode(&s);
        }
    }
}
