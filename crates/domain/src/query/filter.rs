//! One filter of the query language: `field=op:operand`.
//!
//! The operand is parsed once, into the type the field compares with (a tag
//! pattern, a number, a status, unix milliseconds), so a bad value is refused
//! before any event is read and matching never parses text.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

use super::error::QueryError;
use super::like::LikePattern;
use crate::decode::{parse_number, parse_timestamp};
use crate::reading::{Reading, Status, Value};
use crate::tag::TagPattern;

/// A field of an event that filters and sort keys name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventField {
    Tag,
    Value,
    Status,
    Unit,
    Timestamp,
}

impl EventField {
    pub const ALL: [EventField; 5] =
        [EventField::Tag, EventField::Value, EventField::Status, EventField::Unit, EventField::Timestamp];

    pub fn as_str(self) -> &'static str {
        match self {
            EventField::Tag => "tag",
            EventField::Value => "value",
            EventField::Status => "status",
            EventField::Unit => "unit",
            EventField::Timestamp => "timestamp",
        }
    }

    pub fn parse(s: &str) -> Option<EventField> {
        EventField::ALL.into_iter().find(|f| f.as_str() == s)
    }

    /// The ops this field's filters accept.
    pub fn allowed_ops(self) -> &'static [FilterOp] {
        use FilterOp::*;
        match self {
            EventField::Tag | EventField::Value => &[Eq, Neq, Like, Lt, Gt, Lte, Gte],
            EventField::Status => &[Eq, Neq],
            EventField::Unit => &[Eq, Neq, Like],
            EventField::Timestamp => &[Eq, Neq, Lt, Gt, Lte, Gte],
        }
    }

    pub(crate) fn allowed_ops_text(self) -> String {
        let ops: Vec<&str> = self.allowed_ops().iter().map(|op| op.as_str()).collect();
        ops.join(", ")
    }

    /// For fields whose text may hold a colon, how to match such text rather than name an op.
    pub(crate) fn colon_hint(self, word: &str) -> String {
        match self {
            EventField::Value | EventField::Unit => {
                format!("; to match text that itself contains a colon, write `{self}=eq:{word}:…`")
            }
            _ => String::new(),
        }
    }

    /// A filter that works, shown in error messages; `op` picks the closest one.
    pub(crate) fn example(self, op: FilterOp) -> &'static str {
        match (self, op) {
            (EventField::Tag, FilterOp::Like) => "tag=like:brasil.%.sensor0_",
            (EventField::Tag, FilterOp::Eq | FilterOp::Neq) => "tag=eq:brasil.sudeste.*",
            (EventField::Tag, _) => "tag=gte:brasil.s",
            (EventField::Value, FilterOp::Like) => "value=like:lig%",
            (EventField::Value, _) => "value=gt:50",
            (EventField::Status, _) => "status=eq:error",
            (EventField::Unit, FilterOp::Like) => "unit=like:k%",
            (EventField::Unit, _) => "unit=eq:kWh",
            (EventField::Timestamp, _) => "timestamp=gte:2023-02-15T01:30:00-05:00",
        }
    }
}

impl fmt::Display for EventField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The comparison a filter makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FilterOp {
    Eq,
    Neq,
    Like,
    Lt,
    Gt,
    Lte,
    Gte,
}

impl FilterOp {
    pub const ALL: [FilterOp; 7] =
        [FilterOp::Eq, FilterOp::Neq, FilterOp::Like, FilterOp::Lt, FilterOp::Gt, FilterOp::Lte, FilterOp::Gte];

    pub fn as_str(self) -> &'static str {
        match self {
            FilterOp::Eq => "eq",
            FilterOp::Neq => "neq",
            FilterOp::Like => "like",
            FilterOp::Lt => "lt",
            FilterOp::Gt => "gt",
            FilterOp::Lte => "lte",
            FilterOp::Gte => "gte",
        }
    }

    pub fn parse(s: &str) -> Option<FilterOp> {
        FilterOp::ALL.into_iter().find(|op| op.as_str() == s)
    }

    /// Whether `event <op> operand` holds, given how the two compare. `like` never gets here.
    fn holds(self, ord: Ordering) -> bool {
        match self {
            FilterOp::Eq => ord.is_eq(),
            FilterOp::Neq => ord.is_ne(),
            FilterOp::Lt => ord.is_lt(),
            FilterOp::Gt => ord.is_gt(),
            FilterOp::Lte => ord.is_le(),
            FilterOp::Gte => ord.is_ge(),
            FilterOp::Like => false,
        }
    }
}

impl fmt::Display for FilterOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One parsed `field=op:operand` condition. Build it with [`Filter::parse`].
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    field: EventField,
    op: FilterOp,
    operand: String,
    test: Test,
}

/// The operand in the form the field compares with.
#[derive(Debug, Clone, PartialEq)]
enum Test {
    Pattern(TagPattern),
    Like(LikePattern),
    Text(String),
    Number(f64),
    Status(Status),
    Millis(i64),
}

impl Filter {
    /// Parses the value of a `field=` query parameter: `op:operand`, or a bare operand meaning `eq`.
    ///
    /// Only a known op name before the first colon is an op, so
    /// `timestamp=2023-02-15T01:30:00-05:00` is an `eq`. A word of letters
    /// that is not an op (`value=ge:50`) is refused rather than read as text,
    /// because silently matching the text `ge:50` would hide the typo.
    pub fn parse(field: EventField, raw: &str) -> Result<Filter, QueryError> {
        let raw = raw.trim();
        let (op, operand) = match raw.split_once(':') {
            Some((head, rest)) => match FilterOp::parse(head) {
                Some(op) => (op, rest),
                None if looks_like_op(head) => return Err(QueryError::UnknownOp { field, op: head.to_owned() }),
                None => (FilterOp::Eq, raw),
            },
            None => (FilterOp::Eq, raw),
        };
        if !field.allowed_ops().contains(&op) {
            return Err(QueryError::OpNotAllowed { field, op });
        }
        let operand = operand.trim();
        let bad =
            |reason: &str| QueryError::BadOperand { field, op, operand: operand.to_owned(), reason: reason.to_owned() };
        let test = match (field, op) {
            (EventField::Tag, _) if operand.is_empty() => return Err(bad("a tag filter needs a tag or a pattern")),
            (EventField::Tag, FilterOp::Eq | FilterOp::Neq) => TagPattern::parse(operand)
                .map(Test::Pattern)
                .map_err(|e| bad(&format!("not a tag or NATS pattern ({e})")))?,
            // Only tag, value and unit allow `like`: the op was checked above.
            (_, FilterOp::Like) => Test::Like(LikePattern::parse(operand).map_err(|e| bad(&e))?),
            (EventField::Tag, _) => Test::Text(operand.to_owned()),
            (EventField::Value, FilterOp::Eq | FilterOp::Neq) => {
                parse_number(operand).map_or_else(|| Test::Text(operand.to_owned()), Test::Number)
            }
            (EventField::Value, _) => {
                Test::Number(parse_number(operand).ok_or_else(|| bad(&format!("`{op}` compares numbers")))?)
            }
            (EventField::Status, _) => {
                Test::Status(Status::parse(operand).ok_or_else(|| bad("status is `ok` or `error`"))?)
            }
            (EventField::Unit, _) => Test::Text(operand.to_owned()),
            (EventField::Timestamp, _) => Test::Millis(parse_timestamp(operand).map_err(|e| bad(&e))?),
        };
        Ok(Filter { field, op, operand: operand.to_owned(), test })
    }

    pub fn field(&self) -> EventField {
        self.field
    }

    pub fn op(&self) -> FilterOp {
        self.op
    }

    /// The operand as given, trimmed.
    pub fn operand(&self) -> &str {
        &self.operand
    }

    /// Whether a reading satisfies this filter.
    ///
    /// Numeric operands only ever match numeric values, `neq` included, the
    /// way SQL treats NULL: `value=neq:5` does not return text readings.
    /// Text operands compare the field's text form (`42.5`, the text, or
    /// the empty string for no value or no unit), so `value=eq:` finds
    /// empty readings and `unit=eq:` readings without a unit.
    pub fn matches(&self, r: &Reading) -> bool {
        match &self.test {
            Test::Pattern(p) => p.matches(&r.tag) == (self.op == FilterOp::Eq),
            Test::Like(l) => l.matches(&self.text_of(r)),
            Test::Text(t) => self.op.holds(self.text_of(r).as_ref().cmp(t.as_str())),
            Test::Number(n) => r.value.as_number().and_then(|v| v.partial_cmp(n)).is_some_and(|o| self.op.holds(o)),
            Test::Status(s) => self.op.holds(r.status.cmp(s)),
            Test::Millis(ms) => self.op.holds(r.ts_ms.cmp(ms)),
        }
    }

    fn text_of<'r>(&self, r: &'r Reading) -> Cow<'r, str> {
        match self.field {
            EventField::Tag => Cow::Borrowed(r.tag.as_str()),
            EventField::Unit => Cow::Borrowed(r.unit.as_deref().unwrap_or("")),
            EventField::Status => Cow::Borrowed(r.status.as_str()),
            EventField::Timestamp => Cow::Owned(r.ts_ms.to_string()),
            EventField::Value => match &r.value {
                Value::Number(n) => Cow::Owned(n.to_string()),
                Value::Text(t) => Cow::Borrowed(t),
                Value::Empty => Cow::Borrowed(""),
            },
        }
    }

    /// The instant a timestamp filter compares with.
    pub(crate) fn millis(&self) -> Option<i64> {
        match self.test {
            Test::Millis(ms) => Some(ms),
            _ => None,
        }
    }

    /// Text every tag this filter accepts starts with, when it is not empty.
    pub(crate) fn tag_prefix(&self) -> Option<String> {
        let prefix = match (&self.test, self.op) {
            (Test::Pattern(p), FilterOp::Eq) => {
                let literal: Vec<&str> = p.as_str().split('.').take_while(|t| !matches!(*t, "*" | ">")).collect();
                let exact = literal.len() == p.as_str().split('.').count();
                if exact { p.as_str().to_owned() } else { literal.iter().map(|t| format!("{t}.")).collect() }
            }
            (Test::Like(l), _) if self.field == EventField::Tag => l.literal_prefix(),
            _ => return None,
        };
        (!prefix.is_empty()).then_some(prefix)
    }
}

/// A word that reads as an attempted op: letters only, as ops are.
fn looks_like_op(head: &str) -> bool {
    (1..=16).contains(&head.len()) && head.chars().all(|c| c.is_ascii_alphabetic())
}

impl fmt::Display for Filter {
    /// The canonical query form, which parses back to an equal filter.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}:{}", self.field, self.op, self.operand)
    }
}
