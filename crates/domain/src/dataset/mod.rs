//! Datasets: arbitrary CSV files, not readings, kept as tables of text.
//!
//! What a dataset is called ([`DatasetName`]), which columns its header
//! gives once sanitised into field names a store accepts ([`columns`]), and
//! how a query string filters, sorts and pages its rows ([`DatasetQuery`]).
//! Values stay text; a comparison is numeric when both sides are numbers.
//! Pure: the API reads the rows and hands them in.

mod query;

use std::fmt;

pub use query::{DatasetQuery, DatasetQueryError};

/// The longest dataset name.
pub(crate) const MAX_NAME: usize = 48;

/// A dataset's name: `[a-z][a-z0-9_]*`, at most [`MAX_NAME`] long. Its table is `dataset_<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DatasetName(String);

/// Why a name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a dataset name: use a letter, then letters, digits or `_` (at most 48), e.g. `titanic` or `passengers_1912`"
)]
pub struct NameError(pub String);

impl DatasetName {
    /// Parses a name; upper case is folded to lower case, `-` and spaces to `_`.
    pub fn parse(s: &str) -> Result<DatasetName, NameError> {
        let folded: String =
            s.trim().chars().map(|c| if c == '-' || c == ' ' { '_' } else { c.to_ascii_lowercase() }).collect();
        let ok = folded.len() <= MAX_NAME
            && folded.starts_with(|c: char| c.is_ascii_lowercase())
            && folded.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if ok { Ok(DatasetName(folded)) } else { Err(NameError(s.to_owned())) }
    }

    /// A name from an uploaded file's name (`Titanic Passengers.csv` gives `titanic_passengers`).
    pub fn from_file_name(file: &str) -> Result<DatasetName, NameError> {
        let stem = file.rsplit(['/', '\\']).next().unwrap_or(file);
        let stem = stem.rsplit_once('.').map_or(stem, |(s, _)| s);
        let cleaned: String =
            stem.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
        let trimmed = cleaned.trim_matches('_');
        DatasetName::parse(&trimmed[..trimmed.len().min(MAX_NAME)]).map_err(|_| NameError(file.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The store table holding the rows.
    pub fn table(&self) -> String {
        format!("dataset_{}", self.0)
    }
}

impl fmt::Display for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A queued load, as the message on `jobs.datasets.load` carries it (v1).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LoadJob {
    pub v: u32,
    pub job: String,
    pub dataset: String,
    /// The object in the `datasets` bucket.
    pub object: String,
}

impl LoadJob {
    pub fn new(job: &str, dataset: &DatasetName, object: &str) -> LoadJob {
        LoadJob { v: 1, job: job.to_owned(), dataset: dataset.as_str().to_owned(), object: object.to_owned() }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a LoadJob always serialises")
    }

    pub fn decode(bytes: &[u8]) -> Result<LoadJob, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("not a load job: {e}"))
    }
}

/// A column: its field name in the store and the header text it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub header: String,
}

impl Column {
    /// Whether the sanitised name differs from the header.
    pub fn renamed(&self) -> bool {
        self.name != self.header
    }
}

/// Why a header cannot make a table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("the file has no header row: its first line must name the columns, e.g. `PassengerId,Name,Sex`")]
    Empty,
    #[error("the header has {0} columns, over the maximum of {MAX_COLUMNS}: split the file")]
    TooMany(usize),
}

/// The most columns a dataset may have.
pub const MAX_COLUMNS: usize = 1024;

/// Field names for a header: letters, digits and `_` only (other runs become
/// one `_`), not starting with a digit (`c_` is put before), never `id` (the
/// record's key; it becomes `id_`), unique regardless of case (`_2`, `_3`
/// are added), and `column_<n>` for an empty cell.
pub fn columns(header: &[&str]) -> Result<Vec<Column>, HeaderError> {
    if header.is_empty() || header.iter().all(|h| h.trim().trim_start_matches('\u{feff}').is_empty()) {
        return Err(HeaderError::Empty);
    }
    if header.len() > MAX_COLUMNS {
        return Err(HeaderError::TooMany(header.len()));
    }
    let mut taken = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(header.len());
    for (i, raw) in header.iter().enumerate() {
        let text = raw.trim_start_matches('\u{feff}').trim();
        let mut name = String::with_capacity(text.len());
        for c in text.chars() {
            if c.is_ascii_alphanumeric() {
                name.push(c);
            } else if !name.ends_with('_') {
                name.push('_');
            }
        }
        let mut name = name.trim_matches('_').chars().take(64).collect::<String>();
        if name.is_empty() {
            name = format!("column_{}", i + 1);
        } else if name.starts_with(|c: char| c.is_ascii_digit()) {
            name = format!("c_{name}");
        }
        if name.eq_ignore_ascii_case("id") {
            name.push('_');
        }
        let mut unique = name.clone();
        let mut n = 2;
        while !taken.insert(unique.to_ascii_lowercase()) {
            unique = format!("{name}_{n}");
            n += 1;
        }
        out.push(Column { name: unique, header: text.to_owned() });
    }
    Ok(out)
}

/// The column named `name`, ignoring case, by field name or header text.
pub fn find_column(columns: &[Column], name: &str) -> Option<usize> {
    let name = name.trim();
    columns
        .iter()
        .position(|c| c.name.eq_ignore_ascii_case(name))
        .or_else(|| columns.iter().position(|c| c.header.eq_ignore_ascii_case(name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fold_and_refuse_what_a_table_cannot_be() {
        assert_eq!(DatasetName::parse("Titanic").unwrap().table(), "dataset_titanic");
        assert_eq!(DatasetName::parse("my-data set").unwrap().as_str(), "my_data_set");
        for bad in ["", "1abc", "a.b", "ação", "a;DROP", &"x".repeat(49)] {
            assert!(DatasetName::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(DatasetName::from_file_name("/tmp/Titanic Passengers.csv").unwrap().as_str(), "titanic_passengers");
        assert!(DatasetName::from_file_name("123.csv").is_err());
    }

    #[test]
    fn headers_become_unique_safe_field_names() {
        let cols = columns(&["\u{feff}PassengerId", "Name", "name", "", "2nd class", "Fare ($)", "id", "Sex"]).unwrap();
        let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["PassengerId", "Name", "name_2", "column_4", "c_2nd_class", "Fare", "id_", "Sex"]);
        assert!(!cols[0].renamed(), "the byte-order mark is not part of the name");
        assert!(cols[5].renamed());
        assert_eq!(find_column(&cols, "FARE ($)"), Some(5), "by header text too");
        assert_eq!(find_column(&cols, "sex"), Some(7));
        assert_eq!(columns(&[" ", ""]), Err(HeaderError::Empty));
    }
}
