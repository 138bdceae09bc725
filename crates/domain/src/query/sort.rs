//! Sort specs (`sort=timestamp:desc,value:asc`) and the total order they define.
//!
//! Cursor paging is only correct if the order is total: ties on every key
//! are broken by event id, in the direction of the first key, so no two
//! events ever compare equal and "after the cursor" is well defined. The
//! order of each field is fixed here once, for sorting and cursors alike.

use std::cmp::Ordering;
use std::fmt;

use super::error::QueryError;
use super::filter::EventField;
use crate::reading::{Reading, Status, Value};

/// Which way a key sorts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SortDirection {
    Asc,
    Desc,
}

impl SortDirection {
    pub fn as_str(self) -> &'static str {
        match self {
            SortDirection::Asc => "asc",
            SortDirection::Desc => "desc",
        }
    }

    fn apply(self, ord: Ordering) -> Ordering {
        match self {
            SortDirection::Asc => ord,
            SortDirection::Desc => ord.reverse(),
        }
    }
}

/// One key of a sort spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SortKey {
    pub field: EventField,
    pub direction: SortDirection,
}

impl fmt::Display for SortKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.field, self.direction.as_str())
    }
}

/// Newest first: what someone looking at events wants to see.
pub(crate) fn default_sort() -> Vec<SortKey> {
    vec![SortKey { field: EventField::Timestamp, direction: SortDirection::Desc }]
}

/// Parses `field[:asc|:desc],...`; each field at most once.
pub(crate) fn parse_sort(spec: &str) -> Result<Vec<SortKey>, QueryError> {
    let bad = |reason: String| QueryError::BadSort { spec: spec.to_owned(), reason };
    let mut keys: Vec<SortKey> = Vec::new();
    for part in spec.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(bad("a sort key is empty".into()));
        }
        let (name, direction) = part.split_once(':').unwrap_or((part, "asc"));
        let field = EventField::parse(name.trim()).ok_or_else(|| bad(format!("unknown field `{name}`")))?;
        let direction = match direction.trim() {
            "asc" => SortDirection::Asc,
            "desc" => SortDirection::Desc,
            other => return Err(bad(format!("unknown direction `{other}`"))),
        };
        if keys.iter().any(|k| k.field == field) {
            return Err(bad(format!("`{field}` appears twice")));
        }
        keys.push(SortKey { field, direction });
    }
    Ok(keys)
}

/// The canonical text of a sort spec, as cursors record it.
pub(crate) fn format_sort(keys: &[SortKey]) -> String {
    keys.iter().map(SortKey::to_string).collect::<Vec<_>>().join(",")
}

/// Orders two events by `sort`: `by_key(i, field)` compares their values
/// of key `i` ascending; `by_id` compares their ids ascending.
pub(crate) fn order(
    sort: &[SortKey],
    mut by_key: impl FnMut(usize, EventField) -> Ordering,
    by_id: Ordering,
) -> Ordering {
    for (i, key) in sort.iter().enumerate() {
        let ord = key.direction.apply(by_key(i, key.field));
        if ord.is_ne() {
            return ord;
        }
    }
    sort.first().map_or(by_id, |key| key.direction.apply(by_id))
}

/// A reading's value for one sort field, borrowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum KeyRef<'a> {
    Text(&'a str),
    Millis(i64),
    Status(Status),
    /// `None` (no unit) sorts after every unit.
    Unit(Option<&'a str>),
    /// Numbers, then text, then no value.
    Value(&'a Value),
}

impl<'a> KeyRef<'a> {
    pub(crate) fn of(field: EventField, r: &'a Reading) -> KeyRef<'a> {
        match field {
            EventField::Tag => KeyRef::Text(r.tag.as_str()),
            EventField::Timestamp => KeyRef::Millis(r.ts_ms),
            EventField::Status => KeyRef::Status(r.status),
            EventField::Unit => KeyRef::Unit(r.unit.as_deref()),
            EventField::Value => KeyRef::Value(&r.value),
        }
    }

    /// Ascending comparison of two values of the same field.
    pub(crate) fn cmp(self, other: KeyRef<'_>) -> Ordering {
        match (self, other) {
            (KeyRef::Text(a), KeyRef::Text(b)) => a.cmp(b),
            (KeyRef::Millis(a), KeyRef::Millis(b)) => a.cmp(&b),
            (KeyRef::Status(a), KeyRef::Status(b)) => a.cmp(&b),
            (KeyRef::Unit(a), KeyRef::Unit(b)) => a.is_none().cmp(&b.is_none()).then(a.cmp(&b)),
            (KeyRef::Value(a), KeyRef::Value(b)) => cmp_values(a, b),
            // Keys of different fields never meet: a cursor's keys are checked against its sort.
            (a, b) => a.rank().cmp(&b.rank()),
        }
    }

    fn rank(self) -> u8 {
        match self {
            KeyRef::Text(_) => 0,
            KeyRef::Millis(_) => 1,
            KeyRef::Status(_) => 2,
            KeyRef::Unit(_) => 3,
            KeyRef::Value(_) => 4,
        }
    }
}

fn cmp_values(a: &Value, b: &Value) -> Ordering {
    let rank = |v: &Value| match v {
        Value::Number(_) => 0,
        Value::Text(_) => 1,
        Value::Empty => 2,
    };
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.total_cmp(y),
        (Value::Text(x), Value::Text(y)) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_sort_specs() {
        let keys = parse_sort("timestamp:desc, value").unwrap();
        assert_eq!(format_sort(&keys), "timestamp:desc,value:asc");
        assert_eq!(parse_sort(&format_sort(&keys)).unwrap(), keys);
        for (spec, why) in [
            ("", "empty"),
            ("timestamp:desc,", "empty"),
            ("time", "unknown field `time`"),
            ("value:down", "unknown direction `down`"),
            ("value,value:desc", "`value` appears twice"),
        ] {
            let err = parse_sort(spec).unwrap_err();
            assert_eq!(err.param(), "sort");
            assert!(err.to_string().contains(why), "{spec}: {err}");
            assert!(err.to_string().contains("e.g. `sort=timestamp:desc,value:asc`"), "{err}");
        }
    }

    #[test]
    fn values_sort_numbers_then_text_then_nothing() {
        let mut values = [Value::Empty, Value::Text("b".into()), Value::Number(2.0), Value::Text("a".into())];
        values.sort_by(cmp_values);
        let want = [Value::Number(2.0), Value::Text("a".into()), Value::Text("b".into()), Value::Empty];
        assert_eq!(values, want);
        assert_eq!(KeyRef::Unit(Some("kWh")).cmp(KeyRef::Unit(None)), Ordering::Less);
        assert_eq!(KeyRef::Unit(Some("A")).cmp(KeyRef::Unit(Some("B"))), Ordering::Less);
    }

    #[test]
    fn ties_follow_the_first_key_direction() {
        let desc = [SortKey { field: EventField::Value, direction: SortDirection::Desc }];
        assert_eq!(order(&desc, |_, _| Ordering::Equal, Ordering::Less), Ordering::Greater);
        assert_eq!(order(&desc, |_, _| Ordering::Less, Ordering::Less), Ordering::Greater);
        assert_eq!(order(&[], |_, _| Ordering::Equal, Ordering::Less), Ordering::Less);
    }
}
