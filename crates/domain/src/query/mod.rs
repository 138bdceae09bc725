//! The event query language of `GET /api/v1/events`, parsed and evaluated.
//!
//! ```text
//! tag=brasil.sudeste.*&value=gt:50&timestamp=gte:2023-02-15T01:30:00-05:00
//!     &sort=timestamp:desc,value:asc&limit=100&cursor=eyJ2Ijox…
//! ```
//!
//! Filters are `field=op:operand` and AND together; `sort` orders, `limit`
//! is `count` or `offset,count`, and `cursor` continues after the previous
//! page. The rules live here, not in the API or the store, so that the HTTP
//! handler, the store and the tests agree on one meaning. The store may
//! narrow its scan with [`EventQuery::time_bounds`] and
//! [`EventQuery::tag_prefix`], but [`EventQuery::matches`] has the final word.
//!
//! This module must never do I/O, and parsing must refuse anything it does
//! not understand with an error that says how to fix the URL: a query that
//! silently ignores a typo returns plausible, wrong data.

mod cursor;
mod error;
mod filter;
pub(crate) mod like;
mod sort;
#[cfg(test)]
mod tests;

use std::cmp::Ordering;

pub use cursor::Cursor;
pub use error::QueryError;
pub use filter::{EventField, Filter, FilterOp};
pub use sort::{SortDirection, SortKey};

use crate::projection::StoredEvent;
use sort::{KeyRef, default_sort, format_sort, order, parse_sort};

/// Events per page when `limit` does not say.
pub(crate) const DEFAULT_COUNT: u64 = 100;
/// Most events per page: bounds the response and the store's sort.
pub(crate) const MAX_COUNT: u64 = 10_000;
/// Deepest offset: past it the store would sort and discard too much, and cursors do it better.
pub(crate) const MAX_OFFSET: u64 = 100_000;

/// A parsed events query: what to return, in which order, which page.
#[derive(Debug, Clone, PartialEq)]
pub struct EventQuery {
    /// All must hold.
    pub filters: Vec<Filter>,
    /// Never empty after parsing; ties are broken by event id.
    pub sort: Vec<SortKey>,
    pub offset: u64,
    pub count: u64,
    /// Set only with a sort equal to its own and a zero offset.
    pub cursor: Option<Cursor>,
}

impl Default for EventQuery {
    /// Every event, newest first, the first page of the default size.
    fn default() -> Self {
        EventQuery { filters: Vec::new(), sort: default_sort(), offset: 0, count: DEFAULT_COUNT, cursor: None }
    }
}

/// One page of results.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<'a> {
    pub events: Vec<&'a StoredEvent>,
    /// Present when more events follow the page.
    pub next_cursor: Option<String>,
}

impl EventQuery {
    pub const DEFAULT_COUNT: u64 = DEFAULT_COUNT;
    pub const MAX_COUNT: u64 = MAX_COUNT;
    pub const MAX_OFFSET: u64 = MAX_OFFSET;

    /// Parses percent-decoded query pairs. Filters may repeat; `sort`, `limit` and `cursor` may not.
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<EventQuery, QueryError> {
        let mut query = EventQuery::default();
        let (mut sort, mut limit, mut cursor) = (None, None, None);
        for (name, value) in pairs {
            if let Some(field) = EventField::parse(name) {
                query.filters.push(Filter::parse(field, value)?);
                continue;
            }
            let (name, slot) = match name.as_str() {
                "sort" => ("sort", &mut sort),
                "limit" => ("limit", &mut limit),
                "cursor" => ("cursor", &mut cursor),
                _ => return Err(QueryError::UnknownParam { name: name.clone() }),
            };
            if slot.replace(value.as_str()).is_some() {
                return Err(QueryError::Repeated { name });
            }
        }
        if let Some(spec) = sort {
            query.sort = parse_sort(spec)?;
        }
        if let Some(limit) = limit {
            (query.offset, query.count) = parse_limit(limit)?;
        }
        if let Some(encoded) = cursor {
            if query.offset != 0 {
                return Err(QueryError::CursorWithOffset { offset: query.offset });
            }
            let cursor = Cursor::decode(encoded.trim())?;
            if cursor.sort() != query.sort.as_slice() {
                return Err(QueryError::CursorSortMismatch {
                    cursor_sort: format_sort(cursor.sort()),
                    query_sort: format_sort(&query.sort),
                });
            }
            query.cursor = Some(cursor);
        }
        Ok(query)
    }

    /// Whether the event passes every filter. The cursor is not consulted.
    pub fn matches(&self, e: &StoredEvent) -> bool {
        self.filters.iter().all(|f| f.matches(&e.reading))
    }

    /// The total order of results: the sort keys, then the event id.
    pub fn compare(&self, a: &StoredEvent, b: &StoredEvent) -> Ordering {
        let by_key = |_, field| KeyRef::of(field, &a.reading).cmp(KeyRef::of(field, &b.reading));
        order(&self.sort, by_key, a.id.cmp(&b.id))
    }

    /// Whether the event comes strictly after the cursor; always true without one.
    pub fn is_after_cursor(&self, e: &StoredEvent) -> bool {
        let Some(cursor) = &self.cursor else { return true };
        let by_key = |i, field| KeyRef::of(field, &e.reading).cmp(cursor.key(i));
        order(cursor.sort(), by_key, e.id.cmp(&cursor.last_id())).is_gt()
    }

    /// The cursor that continues after `last`, the final event of a page.
    pub fn cursor_after(&self, last: &StoredEvent) -> String {
        Cursor::after(&self.sort, last).encode()
    }

    /// The inclusive millisecond range every event of this page lies in,
    /// from the timestamp filters and, when the first sort key is the
    /// timestamp, the cursor. `lo > hi` means nothing can match.
    pub fn time_bounds(&self) -> (Option<i64>, Option<i64>) {
        let (mut lo, mut hi) = (None, None);
        fn raise(lo: &mut Option<i64>, ms: i64) {
            *lo = Some(lo.map_or(ms, |l| l.max(ms)));
        }
        fn lower(hi: &mut Option<i64>, ms: i64) {
            *hi = Some(hi.map_or(ms, |h| h.min(ms)));
        }
        for filter in self.filters.iter().filter(|f| f.field() == EventField::Timestamp) {
            let Some(ms) = filter.millis() else { continue };
            match filter.op() {
                FilterOp::Eq => {
                    raise(&mut lo, ms);
                    lower(&mut hi, ms);
                }
                FilterOp::Gte => raise(&mut lo, ms),
                FilterOp::Lte => lower(&mut hi, ms),
                // Past the end of time: nothing is greater, or smaller.
                FilterOp::Gt => match ms.checked_add(1) {
                    Some(ms) => raise(&mut lo, ms),
                    None => return (Some(i64::MAX), Some(i64::MIN)),
                },
                FilterOp::Lt => match ms.checked_sub(1) {
                    Some(ms) => lower(&mut hi, ms),
                    None => return (Some(i64::MAX), Some(i64::MIN)),
                },
                FilterOp::Neq | FilterOp::Like => {}
            }
        }
        if let Some(cursor) = &self.cursor
            && let (Some(first), KeyRef::Millis(ms)) = (cursor.sort().first(), cursor.key(0))
        {
            match first.direction {
                SortDirection::Asc => raise(&mut lo, ms),
                SortDirection::Desc => lower(&mut hi, ms),
            }
        }
        (lo, hi)
    }

    /// Text every matching tag starts with, from the `tag` eq and like
    /// filters: `brasil.sudeste.*` gives `brasil.sudeste.`, an exact tag
    /// itself. `None` when the filters allow any tag.
    pub fn tag_prefix(&self) -> Option<String> {
        self.filters.iter().filter_map(Filter::tag_prefix).max_by_key(String::len)
    }

    /// Cuts the page out of events already filtered with `matches` and
    /// sorted with `compare`: after the cursor, past the offset, `count` long.
    pub fn page<'a>(&self, sorted_matching: impl IntoIterator<Item = &'a StoredEvent>) -> Page<'a> {
        let offset = usize::try_from(self.offset).unwrap_or(usize::MAX);
        let count = usize::try_from(self.count).unwrap_or(usize::MAX);
        let mut rest = sorted_matching.into_iter().filter(|e| self.is_after_cursor(e)).skip(offset);
        let events: Vec<&StoredEvent> = rest.by_ref().take(count).collect();
        let next_cursor = match (events.last(), rest.next()) {
            (Some(last), Some(_)) => Some(self.cursor_after(last)),
            _ => None,
        };
        Page { events, next_cursor }
    }

    /// Runs the whole query over candidate events in any order (for example
    /// what the store found within `time_bounds` and `tag_prefix`). Sorts
    /// only what the page can reach, not every match.
    pub fn select<'a>(&self, candidates: impl IntoIterator<Item = &'a StoredEvent>) -> Page<'a> {
        let mut hits: Vec<&StoredEvent> =
            candidates.into_iter().filter(|e| self.matches(e) && self.is_after_cursor(e)).collect();
        // One more than the page shows, to know whether a next page exists.
        let reach = usize::try_from(self.offset.saturating_add(self.count).saturating_add(1)).unwrap_or(usize::MAX);
        if hits.len() > reach {
            hits.select_nth_unstable_by(reach, |a, b| self.compare(a, b));
            hits.truncate(reach);
        }
        hits.sort_unstable_by(|a, b| self.compare(a, b));
        self.page(hits)
    }
}

/// `count` or `offset,count`.
fn parse_limit(limit: &str) -> Result<(u64, u64), QueryError> {
    let bad = || QueryError::BadLimit { limit: limit.to_owned() };
    let number = |s: &str| s.trim().parse::<u64>().map_err(|_| bad());
    let (offset, count) = match limit.split_once(',') {
        Some((offset, count)) => (number(offset)?, number(count)?),
        None => (0, number(limit)?),
    };
    if count == 0 {
        return Err(bad());
    }
    if count > MAX_COUNT {
        return Err(QueryError::CountTooLarge { count });
    }
    if offset > MAX_OFFSET {
        return Err(QueryError::OffsetTooLarge { offset });
    }
    Ok((offset, count))
}
