//! The query string of `GET /datasets/{name}`: `Fare=gt:7`, `Name=like:Braund`,
//! `sort=name:desc,Sex:asc`, `limit=0,2`.
//!
//! Column names match without regard to case. A value is `op:operand` when
//! the text before the first `:` is one of `eq, neq, like, lt, gt, lte, gte`,
//! otherwise the whole value is compared with `eq` (`time=12:30` works).
//! Ordering comparisons are numeric when both sides are numbers, otherwise
//! by text; an empty cell never satisfies `lt`, `gt`, `lte` or `gte` and
//! sorts last either way, as SQL treats NULL. `like` is a case-insensitive
//! substring test, or a SQL `LIKE` pattern when the operand has a `%`.

use std::cmp::Ordering;

use super::{Column, find_column};
use crate::query::like::LikePattern;
use crate::query::{FilterOp, SortDirection};

/// Rows one page may return.
pub(crate) const MAX_COUNT: u64 = 10_000;
const DEFAULT_COUNT: u64 = 100;

/// Why a dataset query is refused (a 400 naming `param`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatasetQueryError {
    #[error("unknown column `{name}`: filter or sort on one of {known}")]
    UnknownColumn { param: String, name: String, known: String },
    #[error("`{name}` is given more than once: give it once")]
    Repeated { param: String, name: String },
    #[error("`{param}={value}` is not a valid LIKE pattern: {reason}")]
    BadLike { param: String, value: String, reason: String },
    #[error("`sort={spec}` is not valid: {reason}; e.g. `sort=Name:desc,Sex:asc`")]
    BadSort { spec: String, reason: String },
    #[error(
        "`limit={limit}` is not valid: write `limit=<count>` or `limit=<offset>,<count>`, a count from 1 to {MAX_COUNT}, e.g. `limit=0,2`"
    )]
    BadLimit { limit: String },
}

impl DatasetQueryError {
    /// The query parameter to name in the problem.
    pub fn param(&self) -> &str {
        match self {
            DatasetQueryError::UnknownColumn { param, .. }
            | DatasetQueryError::Repeated { param, .. }
            | DatasetQueryError::BadLike { param, .. } => param,
            DatasetQueryError::BadSort { .. } => "sort",
            DatasetQueryError::BadLimit { .. } => "limit",
        }
    }
}

#[derive(Debug, Clone)]
enum Test {
    Eq(Operand),
    Neq(Operand),
    Order(FilterOp, Operand),
    Contains(String),
    Like(LikePattern),
}

/// A filter operand, with its number when it is one.
#[derive(Debug, Clone)]
struct Operand {
    text: String,
    number: Option<f64>,
}

impl Operand {
    fn new(text: &str) -> Operand {
        Operand { text: text.to_owned(), number: number(text) }
    }
}

/// A number as a CSV cell writes one: `7`, `-3.5`, `1e3`; never `inf` or `NaN`.
fn number(s: &str) -> Option<f64> {
    let s = s.trim();
    if !s.bytes().any(|b| b.is_ascii_digit()) || !s.bytes().all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) {
        return None;
    }
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// Numbers against numbers, otherwise text against text.
fn compare(cell: &str, operand: &Operand) -> Ordering {
    match (operand.number, number(cell)) {
        (Some(b), Some(a)) => a.total_cmp(&b),
        _ => cell.cmp(&operand.text),
    }
}

/// A parsed dataset query.
#[derive(Debug, Clone)]
pub struct DatasetQuery {
    filters: Vec<(usize, Test)>,
    sort: Vec<(usize, SortDirection)>,
    pub offset: u64,
    pub count: u64,
}

impl DatasetQuery {
    /// Parses percent-decoded query pairs against the dataset's columns.
    pub fn from_pairs(pairs: &[(String, String)], columns: &[Column]) -> Result<DatasetQuery, DatasetQueryError> {
        let known = || columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ");
        let mut query = DatasetQuery { filters: Vec::new(), sort: Vec::new(), offset: 0, count: DEFAULT_COUNT };
        let (mut sort, mut limit) = (None, None);
        for (name, value) in pairs {
            // An empty sort or limit is absent, as everywhere in the API.
            if (name == "sort" || name == "limit") && value.trim().is_empty() {
                continue;
            }
            let slot = match name.as_str() {
                "sort" => &mut sort,
                "limit" => &mut limit,
                _ => {
                    let column = find_column(columns, name).ok_or_else(|| DatasetQueryError::UnknownColumn {
                        param: name.clone(),
                        name: name.clone(),
                        known: known(),
                    })?;
                    query.filters.push((column, parse_test(name, value)?));
                    continue;
                }
            };
            if slot.replace(value.as_str()).is_some() {
                return Err(DatasetQueryError::Repeated { param: name.clone(), name: name.clone() });
            }
        }
        if let Some(spec) = sort {
            query.sort = parse_sort(spec, columns)?;
        }
        if let Some(l) = limit {
            let bad = || DatasetQueryError::BadLimit { limit: l.to_owned() };
            let (offset, count) = match l.split_once(',') {
                Some((o, c)) => (o.trim().parse().map_err(|_| bad())?, c.trim().parse().map_err(|_| bad())?),
                None => (0, l.trim().parse().map_err(|_| bad())?),
            };
            if !(1..=MAX_COUNT).contains(&count) {
                return Err(bad());
            }
            (query.offset, query.count) = (offset, count);
        }
        Ok(query)
    }

    /// Whether a row passes every filter.
    pub fn matches<S: AsRef<str>>(&self, row: &[S]) -> bool {
        self.filters.iter().all(|(column, test)| {
            let cell = row.get(*column).map_or("", AsRef::as_ref);
            match test {
                Test::Eq(o) => compare(cell, o).is_eq(),
                Test::Neq(o) => !compare(cell, o).is_eq(),
                Test::Order(_, _) if cell.is_empty() => false,
                Test::Order(op, o) => {
                    let ord = compare(cell, o);
                    match op {
                        FilterOp::Lt => ord.is_lt(),
                        FilterOp::Lte => ord.is_le(),
                        FilterOp::Gt => ord.is_gt(),
                        _ => ord.is_ge(),
                    }
                }
                Test::Contains(needle) => cell.to_lowercase().contains(needle.as_str()),
                Test::Like(p) => p.matches(&cell.to_lowercase()),
            }
        })
    }

    /// The order of two rows (`a` and `b` are their positions in the file,
    /// which break ties): the sort keys, numbers before text, empty last.
    pub fn compare<S: AsRef<str>>(&self, a: (usize, &[S]), b: (usize, &[S])) -> Ordering {
        for (column, direction) in &self.sort {
            let cell = |r: &[S]| r.get(*column).map_or(String::new(), |s| s.as_ref().to_owned());
            let (x, y) = (cell(a.1), cell(b.1));
            let ord = match (x.is_empty(), y.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => return Ordering::Greater,
                (false, true) => return Ordering::Less,
                _ => {
                    let ord = match (number(&x), number(&y)) {
                        (Some(p), Some(q)) => p.total_cmp(&q),
                        (Some(_), None) => Ordering::Less,
                        (None, Some(_)) => Ordering::Greater,
                        (None, None) => x.cmp(&y),
                    };
                    match direction {
                        SortDirection::Asc => ord,
                        SortDirection::Desc => ord.reverse(),
                    }
                }
            };
            if ord.is_ne() {
                return ord;
            }
        }
        a.0.cmp(&b.0)
    }

    /// Filters, sorts and pages `rows` (in file order): the total that
    /// matched, and the page as positions in `rows`.
    pub fn run<S: AsRef<str>, R: AsRef<[S]>>(&self, rows: &[R]) -> (u64, Vec<usize>) {
        let mut hits: Vec<usize> = (0..rows.len()).filter(|&i| self.matches(rows[i].as_ref())).collect();
        if !self.sort.is_empty() {
            hits.sort_by(|&a, &b| self.compare((a, rows[a].as_ref()), (b, rows[b].as_ref())));
        }
        let total = hits.len() as u64;
        let page = hits
            .into_iter()
            .skip(usize::try_from(self.offset).unwrap_or(usize::MAX))
            .take(self.count as usize)
            .collect();
        (total, page)
    }
}

fn parse_test(param: &str, value: &str) -> Result<Test, DatasetQueryError> {
    let (op, operand) = match value.split_once(':') {
        Some((op, rest)) => match FilterOp::parse(&op.to_ascii_lowercase()) {
            Some(op) => (op, rest),
            None => (FilterOp::Eq, value),
        },
        None => (FilterOp::Eq, value),
    };
    Ok(match op {
        FilterOp::Eq => Test::Eq(Operand::new(operand)),
        FilterOp::Neq => Test::Neq(Operand::new(operand)),
        FilterOp::Like if operand.contains('%') => {
            Test::Like(LikePattern::parse(&operand.to_lowercase()).map_err(|reason| DatasetQueryError::BadLike {
                param: param.to_owned(),
                value: value.to_owned(),
                reason,
            })?)
        }
        FilterOp::Like => Test::Contains(operand.to_lowercase()),
        op => Test::Order(op, Operand::new(operand)),
    })
}

fn parse_sort(spec: &str, columns: &[Column]) -> Result<Vec<(usize, SortDirection)>, DatasetQueryError> {
    let bad = |reason: String| DatasetQueryError::BadSort { spec: spec.to_owned(), reason };
    let mut keys: Vec<(usize, SortDirection)> = Vec::new();
    for part in spec.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(bad("a sort key is empty".into()));
        }
        let (name, direction) = match part.rsplit_once(':') {
            Some((n, d)) if ["asc", "desc"].contains(&d.trim().to_ascii_lowercase().as_str()) => (n, d),
            Some((_, d)) => return Err(bad(format!("unknown direction `{d}`: use asc or desc"))),
            None => (part, "asc"),
        };
        let column = find_column(columns, name).ok_or_else(|| {
            let known = columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ");
            bad(format!("unknown column `{name}` (columns: {known})"))
        })?;
        let direction =
            if direction.trim().eq_ignore_ascii_case("desc") { SortDirection::Desc } else { SortDirection::Asc };
        if keys.iter().any(|(c, _)| *c == column) {
            return Err(bad(format!("`{name}` appears twice")));
        }
        keys.push((column, direction));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::columns;

    fn rows() -> Vec<Vec<&'static str>> {
        vec![
            vec!["1", "Braund, Mr. Owen Harris", "male", "7.25", ""],
            vec!["2", "Cumings, Mrs. John Bradley", "female", "71.2833", "C85"],
            vec!["3", "Heikkinen, Miss. Laina", "female", "7.925", ""],
            vec!["4", "Futrelle, Mrs. Jacques Heath", "female", "53.1", "C123"],
            vec!["5", "Allen, Mr. William Henry", "male", "8.05", ""],
            vec!["6", "Moran, Mr. James", "male", "", ""],
            vec!["7", "Ödön, Mr. Ünal", "male", "10", "E46"],
        ]
    }

    fn run(query: &str) -> Result<(u64, Vec<String>), DatasetQueryError> {
        let cols = columns(&["PassengerId", "Name", "Sex", "Fare", "Cabin"]).unwrap();
        let pairs: Vec<(String, String)> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap();
                (k.to_owned(), v.to_owned())
            })
            .collect();
        let q = DatasetQuery::from_pairs(&pairs, &cols)?;
        let rows = rows();
        let (total, page) = q.run(&rows);
        Ok((total, page.into_iter().map(|i| rows[i][0].to_owned()).collect()))
    }

    fn ids(query: &str) -> Vec<String> {
        run(query).unwrap().1
    }

    #[test]
    fn every_operator_with_numbers_and_text() {
        assert_eq!(ids("sex=male"), ["1", "5", "6", "7"]);
        assert_eq!(ids("SEX=eq:male"), ["1", "5", "6", "7"], "column names ignore case");
        assert_eq!(ids("Sex=neq:male"), ["2", "3", "4"]);
        assert_eq!(ids("Name=like:braund"), ["1"], "a substring, ignoring case");
        assert_eq!(ids("Name=like:%mrs.%"), ["2", "4"]);
        assert_eq!(ids("Name=like:ödön%"), ["7"], "UTF-8 folds too");
        assert_eq!(ids("Fare=gt:7.925"), ["2", "4", "5", "7"], "numeric: 10 > 7.925 although '10' < '7.925' as text");
        assert_eq!(ids("Fare=gte:7.925"), ["2", "3", "4", "5", "7"]);
        assert_eq!(ids("Fare=lt:8"), ["1", "3"], "an empty fare is not less than anything");
        assert_eq!(ids("Fare=lte:7.25"), ["1"]);
        assert_eq!(ids("Fare=eq:7.2500"), ["1"], "numbers compare as numbers");
        assert_eq!(ids("Cabin=eq:"), ["1", "3", "5", "6"], "empty cells by eq");
        assert_eq!(ids("Cabin=gt:C2"), ["2", "7"], "text against text: C85 and E46, not C123");
        assert_eq!(ids("Sex=male&Fare=gt:8"), ["5", "7"], "filters combine with and");
        assert_eq!(ids("Name=Moran, Mr. James"), ["6"]);
    }

    #[test]
    fn sort_and_paging() {
        assert_eq!(ids("sort=fare:desc"), ["2", "4", "7", "5", "3", "1", "6"], "empty last");
        assert_eq!(ids("sort=Sex:asc,Fare:asc"), ["3", "4", "2", "1", "5", "7", "6"]);
        assert_eq!(ids("sort=name:desc,Sex:asc&limit=0,2"), ["7", "6"], "UTF-8 sorts after ASCII");
        assert_eq!(run("Sex=female&limit=1,1").unwrap(), (3, vec!["3".to_owned()]));
        assert_eq!(ids("limit=5"), ["1", "2", "3", "4", "5"]);
        assert_eq!(ids("sort=&limit=&Sex=female"), ["2", "3", "4"], "empty sort and limit are absent");
    }

    #[test]
    fn clear_errors_name_the_parameter() {
        let e = run("Age=gt:3").unwrap_err();
        assert_eq!(e.param(), "Age");
        assert!(e.to_string().contains("PassengerId, Name, Sex, Fare, Cabin"), "{e}");
        assert_eq!(run("sort=Age").unwrap_err().param(), "sort");
        assert_eq!(run("sort=Sex:up").unwrap_err().param(), "sort");
        assert_eq!(run("limit=0,0").unwrap_err().param(), "limit");
        assert_eq!(run("limit=x").unwrap_err().param(), "limit");
        assert_eq!(run("limit=1&limit=2").unwrap_err().param(), "limit");
        assert_eq!(run("Name=like:a%\\").unwrap_err().param(), "Name", "a trailing backslash in a % pattern");
    }
}
