//! CSV backfill rows for `POST /api/v1/events/import`, checked and turned
//! into the batch items devices' readings travel as.
//!
//! The API parses the CSV bytes; this module decides what a row means. A
//! row becomes a `ReadingsRecorded` batch item with its value kept as the
//! text in the cell, so the persister decodes it exactly like a device's
//! (`42,5` is a number, an empty cell an error reading) and there is one
//! decoding path, not two. Rows are refused here only when they cannot be
//! stored at all (no tag, no time); a bad value is stored as an error, as
//! from a device. Each row gets a message id from its tag and time, so a
//! file uploaded twice is deduplicated by JetStream rather than doubled.

use std::collections::BTreeMap;

use crate::decode::{META_VALUE_LIMIT, parse_timestamp};
use crate::envelope::{BatchItem, ItemValue};
use crate::tag::{MAX_TOKENS, Tag};

/// What every import error message ends with.
const ACCEPTED: &str = "the accepted columns are `tag` or `equipmentId`, `timestamp`, `value` and optionally `unit`";

/// The columns of an import file, found once from its header row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportHeader {
    id: IdColumn,
    timestamp: usize,
    value: usize,
    unit: Option<usize>,
    width: usize,
}

/// Where a row's sensor comes from: a full tag, or an equipment id under `root`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdColumn {
    Tag(usize),
    EquipmentId(usize),
}

/// One checked row, ready to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportRow {
    /// The CSV line it came from, for reporting.
    pub line: u64,
    pub tag: Tag,
    pub ts_ms: i64,
    /// The batch item to publish: the value as written, like a device's.
    pub item: BatchItem,
    /// `csv:<tag>:<ts_ms>`: the same reading uploaded twice has the same id.
    pub msg_id: String,
}

/// Why the header or the `root` parameter is refused (the whole file is: 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("column {position} is named `{name}`, which is not accepted: {ACCEPTED}")]
    UnknownColumn { position: usize, name: String },
    #[error("column `{name}` appears twice in the header: keep one; {ACCEPTED}")]
    DuplicateColumn { name: &'static str },
    #[error("the header has no `{name}` column: {ACCEPTED}")]
    MissingColumn { name: &'static str },
    #[error("the header has both `tag` and `equipmentId`: keep one; {ACCEPTED}")]
    BothIdColumns,
    #[error(
        "files with an `equipmentId` column need the `root` query parameter, e.g. `root=plant1.area3`, \
         to name sensors `<root>.<equipmentId>`"
    )]
    RootRequired,
    #[error("`root={root}` is not valid: {reason}; write one to {} tag tokens, e.g. `root=plant1.area3`", MAX_TOKENS - 1)]
    BadRoot { root: String, reason: String },
}

/// Why one row is refused; the other rows of the file are unaffected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}{}: {reason}", .column.map(|c| format!(", column `{c}`")).unwrap_or_default())]
pub struct RowError {
    pub line: u64,
    /// The column at fault, by its canonical name; `None` for the row as a whole.
    pub column: Option<&'static str>,
    pub reason: String,
}

impl ImportHeader {
    /// Reads the header row: `tag` or `equipmentId`, `timestamp`, `value`,
    /// optionally `unit`, in any order, names trimmed and case-insensitive.
    pub fn parse(header: &[&str]) -> Result<ImportHeader, ImportError> {
        let (mut tag, mut equipment, mut timestamp, mut value, mut unit) = (None, None, None, None, None);
        for (i, raw) in header.iter().enumerate() {
            // Spreadsheets start UTF-8 files with a byte-order mark.
            let name = raw.trim_start_matches('\u{feff}').trim();
            let (slot, canonical) = match name.to_ascii_lowercase().as_str() {
                "tag" => (&mut tag, "tag"),
                "equipmentid" => (&mut equipment, "equipmentId"),
                "timestamp" => (&mut timestamp, "timestamp"),
                "value" => (&mut value, "value"),
                "unit" => (&mut unit, "unit"),
                _ => return Err(ImportError::UnknownColumn { position: i + 1, name: name.to_owned() }),
            };
            if slot.replace(i).is_some() {
                return Err(ImportError::DuplicateColumn { name: canonical });
            }
        }
        let id = match (tag, equipment) {
            (Some(_), Some(_)) => return Err(ImportError::BothIdColumns),
            (Some(i), None) => IdColumn::Tag(i),
            (None, Some(i)) => IdColumn::EquipmentId(i),
            (None, None) => return Err(ImportError::MissingColumn { name: "tag" }),
        };
        Ok(ImportHeader {
            id,
            timestamp: timestamp.ok_or(ImportError::MissingColumn { name: "timestamp" })?,
            value: value.ok_or(ImportError::MissingColumn { name: "value" })?,
            unit,
            width: header.len(),
        })
    }

    /// Checks the `root` parameter against this file once, before any row:
    /// required with `equipmentId`, optional with `tag`, and a valid tag prefix.
    pub fn check_root(&self, root: Option<&str>) -> Result<(), ImportError> {
        match (root, self.id) {
            (None, IdColumn::EquipmentId(_)) => Err(ImportError::RootRequired),
            (None, IdColumn::Tag(_)) => Ok(()),
            (Some(root), _) => validate_root(root).map(|_| ()),
        }
    }

    /// Checks one record and builds its batch item. `line` is the CSV line
    /// number, echoed in errors. `root` prefixes equipment ids
    /// (`<root>.<equipmentId>`) and, for tag files, bounds the tags allowed.
    pub fn row(&self, line: u64, record: &[&str], root: Option<&str>) -> Result<ImportRow, RowError> {
        let fail = |column: Option<&'static str>, reason: String| RowError { line, column, reason };
        if record.len() != self.width {
            let reason = format!(
                "the row has {} fields but the header has {}: give every row the header's columns",
                record.len(),
                self.width
            );
            return Err(fail(None, reason));
        }
        let tag = match self.id {
            IdColumn::Tag(i) => {
                let col = Some("tag");
                let text = record[i].trim();
                let tag = Tag::parse(text).map_err(|e| fail(col, format!("`{text}` is not a tag: {e}")))?;
                if let Some(root) = root {
                    let root = validate_root(root).map_err(|e| fail(col, e.to_string()))?;
                    if !tag.as_str().strip_prefix(root).is_some_and(|rest| rest.starts_with('.')) {
                        let reason =
                            format!("tag `{tag}` is outside `root={root}`: use tags that start with `{root}.`");
                        return Err(fail(col, reason));
                    }
                }
                tag
            }
            IdColumn::EquipmentId(i) => {
                let col = Some("equipmentId");
                let id = record[i].trim();
                let root = root.ok_or_else(|| fail(col, ImportError::RootRequired.to_string()))?;
                let root = validate_root(root).map_err(|e| fail(col, e.to_string()))?;
                if id.is_empty() {
                    return Err(fail(col, "the equipment id is empty: every row needs one, e.g. `EQ-12495`".into()));
                }
                Tag::parse(&format!("{root}.{id}")).map_err(|e| {
                    fail(col, format!("`{id}` does not make a tag under `{root}`: {e}; ids look like `EQ-12495`"))
                })?
            }
        };

        let col = Some("timestamp");
        let ts_text = record[self.timestamp].trim();
        if ts_text.is_empty() {
            let reason = "the timestamp is empty: a backfill needs the time of each reading, \
                          as unix milliseconds or RFC 3339, e.g. `2023-02-15T01:30:00.000-05:00`";
            return Err(fail(col, reason.into()));
        }
        let ts_ms = parse_timestamp(ts_text).map_err(|e| fail(col, e))?;

        let value = record[self.value];
        if value.len() > META_VALUE_LIMIT {
            return Err(fail(Some("value"), format!("the value is longer than {META_VALUE_LIMIT} bytes: shorten it")));
        }
        let unit = self.unit.map(|i| record[i].trim()).filter(|u| !u.is_empty());
        if unit.is_some_and(|u| u.len() > META_VALUE_LIMIT) {
            return Err(fail(Some("unit"), format!("the unit is longer than {META_VALUE_LIMIT} bytes: shorten it")));
        }

        let mut meta = BTreeMap::new();
        if let IdColumn::EquipmentId(i) = self.id {
            // Devices that send `equipmentId` keep it in metadata; imported rows do the same.
            meta.insert("equipmentId".to_owned(), record[i].trim().to_owned());
        }
        let item = BatchItem {
            tag: tag.to_string(),
            ts: Some(ts_ms),
            // As text, the way a device sends it: the persister turns `42,5` into a number and `` into an error.
            value: Some(ItemValue::Text(value.to_owned())),
            unit: unit.map(str::to_owned),
            meta,
        };
        let msg_id = format!("csv:{tag}:{ts_ms}");
        Ok(ImportRow { line, tag, ts_ms, item, msg_id })
    }
}

/// A root is a tag prefix with room for one more token: `plant1` or `plant1.area3`.
fn validate_root(root: &str) -> Result<&str, ImportError> {
    let root = root.trim();
    let bad = |reason: String| ImportError::BadRoot { root: root.to_owned(), reason };
    let tokens = root.split('.').count();
    if tokens >= MAX_TOKENS {
        return Err(bad(format!("it has {tokens} tokens and a tag at most {MAX_TOKENS}")));
    }
    // Any last token will do to check the prefix's own tokens.
    Tag::parse(&format!("{root}.x")).map_err(|e| bad(e.to_string()))?;
    Ok(root)
}

#[cfg(test)]
mod tests;
