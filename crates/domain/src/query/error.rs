//! Why a query string is refused.
//!
//! People type these URLs by hand, so every message names the parameter,
//! says what is wrong and shows a value that would work. `param()` gives the
//! parameter alone, for the `invalid-params` member of an RFC 9457 problem.

use super::filter::{EventField, FilterOp};
use super::{MAX_COUNT, MAX_OFFSET};

/// A query string the events endpoint cannot run; every variant is a client error (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error(
        "unknown query parameter `{name}`: filter on tag, value, status, unit or timestamp \
         (e.g. `value=gt:50`) and page with sort, limit and cursor"
    )]
    UnknownParam { name: String },

    #[error("`{name}` is given more than once: give it once")]
    Repeated { name: &'static str },

    #[error(
        "unknown op `{op}` in `{field}`: use one of {}, e.g. `{}`{}",
        .field.allowed_ops_text(),
        .field.example(FilterOp::Eq),
        .field.colon_hint(op)
    )]
    UnknownOp { field: EventField, op: String },

    #[error("`{field}` does not support `{op}`: use {}, e.g. `{}`", .field.allowed_ops_text(), .field.example(FilterOp::Eq))]
    OpNotAllowed { field: EventField, op: FilterOp },

    #[error("`{field}={op}:{operand}` is not valid: {reason}; e.g. `{}`", .field.example(*.op))]
    BadOperand { field: EventField, op: FilterOp, operand: String, reason: String },

    #[error(
        "`sort={spec}` is not valid: {reason}; sort by tag, value, status, unit or timestamp, \
         each with an optional `:asc` or `:desc`, e.g. `sort=timestamp:desc,value:asc`"
    )]
    BadSort { spec: String, reason: String },

    #[error(
        "`limit={limit}` is not valid: write `limit=<count>` or `limit=<offset>,<count>` with whole numbers \
         and a count of at least 1, e.g. `limit=100` or `limit=200,100`"
    )]
    BadLimit { limit: String },

    #[error(
        "`limit` asks for {count} events, over the maximum of {MAX_COUNT}: ask for at most {MAX_COUNT} and follow `cursor` for more"
    )]
    CountTooLarge { count: u64 },

    #[error(
        "`limit` offset {offset} is over the maximum of {MAX_OFFSET}: for deeper pages pass the `cursor` \
         returned with the previous page instead of an offset"
    )]
    OffsetTooLarge { offset: u64 },

    #[error(
        "`cursor` cannot be combined with offset {offset} in `limit`: the cursor already says where the page \
         starts, so write `limit=<count>`"
    )]
    CursorWithOffset { offset: u64 },

    #[error(
        "`cursor` is not valid ({reason}): pass the `cursor` of the previous page unchanged, or drop it to \
         start from the first page"
    )]
    BadCursor { reason: String },

    #[error(
        "`cursor` was made for `sort={cursor_sort}` but this request sorts by `sort={query_sort}`: \
         repeat the sort of the first page, or drop the cursor to start over"
    )]
    CursorSortMismatch { cursor_sort: String, query_sort: String },
}

impl QueryError {
    /// The query parameter at fault: a filter field, `sort`, `limit`, `cursor`, or the unknown name.
    pub fn param(&self) -> &str {
        match self {
            QueryError::UnknownParam { name } => name,
            QueryError::Repeated { name } => name,
            QueryError::UnknownOp { field, .. }
            | QueryError::OpNotAllowed { field, .. }
            | QueryError::BadOperand { field, .. } => field.as_str(),
            QueryError::BadSort { .. } => "sort",
            QueryError::BadLimit { .. } | QueryError::CountTooLarge { .. } | QueryError::OffsetTooLarge { .. } => {
                "limit"
            }
            QueryError::CursorWithOffset { .. }
            | QueryError::BadCursor { .. }
            | QueryError::CursorSortMismatch { .. } => "cursor",
        }
    }
}
