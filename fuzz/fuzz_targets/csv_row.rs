//! CSV import rows: the input is `<header>\n<row>` or `<header>\n<row>\n<root>`,
//! cells split at `,` (the API's CSV reader has already unquoted them).
//!
//! A header is accepted only with the columns the import knows. A row is a
//! `RowError` that names its line and says why, or a batch item whose tag,
//! time, value and message id are the row's own, which the persister then
//! decodes to a reading of the same tag and instant.

#![no_main]

mod common;

use common::check_reading;
use libfuzzer_sys::fuzz_target;
use vigia_domain::{
    ImportHeader, ItemValue, READINGS_RECORDED, Status, batch_subject, decode_message, encode_batch, parse_timestamp,
};

const LINE: u64 = 2;
const COLUMNS: [&str; 6] = ["tag", "equipmentId", "timestamp", "value", "unit", "root"];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut lines = text.splitn(3, '\n');
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let record: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let root = lines.next();

    let h = match ImportHeader::parse(&header) {
        Ok(h) => h,
        Err(e) => {
            assert!(e.to_string().contains("the accepted columns are"), "{e}");
            return;
        }
    };
    let column =
        |name: &str| header.iter().position(|c| c.trim_start_matches('\u{feff}').trim().eq_ignore_ascii_case(name));
    let (by_id, ts_col, value_col, unit_col) =
        (column("equipmentId"), column("timestamp"), column("value"), column("unit"));
    let (ts_col, value_col) = (ts_col.expect("a header has a timestamp"), value_col.expect("and a value"));
    assert!(column("tag").is_some() != by_id.is_some(), "exactly one id column");

    let root_ok = h.check_root(root);
    if let Err(e) = &root_ok {
        assert!(!e.to_string().is_empty());
    }
    let row = match h.row(LINE, &record, root) {
        Ok(row) => row,
        Err(e) => {
            assert_eq!(e.line, LINE);
            assert!(!e.reason.is_empty());
            assert!(e.to_string().starts_with(&format!("line {LINE}")), "{e}");
            assert!(e.column.is_none_or(|c| COLUMNS.contains(&c)), "{e:?}");
            return;
        }
    };
    assert!(root_ok.is_ok(), "a row is refused when its file's root is: {root:?}");
    assert_eq!(record.len(), header.len());
    assert_eq!(row.line, LINE);
    assert_eq!(row.item.tag, row.tag.as_str());
    assert_eq!(row.item.ts, Some(row.ts_ms));
    assert_eq!(Ok(row.ts_ms), parse_timestamp(record[ts_col]));
    assert_eq!(row.msg_id, format!("csv:{}:{}", row.tag, row.ts_ms));
    assert_eq!(row.item.value, Some(ItemValue::Text(record[value_col].to_owned())), "the value as written");
    let unit = unit_col.map(|i| record[i].trim()).filter(|u| !u.is_empty());
    assert_eq!(row.item.unit.as_deref(), unit);
    if let Some(root) = root {
        assert!(row.tag.as_str().starts_with(&format!("{}.", root.trim())), "{row:?} is under `{root}`");
    }
    if let Some(i) = by_id {
        let root = root.expect("equipment ids need a root").trim();
        assert_eq!(row.tag.as_str(), format!("{root}.{}", record[i].trim()));
        assert_eq!(row.item.meta.get("equipmentId").map(String::as_str), Some(record[i].trim()));
    } else {
        assert!(row.item.meta.is_empty());
    }

    // What the persister stores: one reading of the row's tag and instant.
    let subject = batch_subject([&row.tag]).expect("one tag makes a subject");
    let body = encode_batch(std::slice::from_ref(&row.item));
    let stored = decode_message(&subject, Some(READINGS_RECORDED), Some("1"), &body, 0).into_readings();
    let [r] = &stored[..] else { panic!("one row, one reading: {stored:?}") };
    check_reading(r);
    assert_eq!((&r.tag, r.ts_ms), (&row.tag, row.ts_ms), "{r:?}");
    let empty = record[value_col].trim().is_empty();
    assert_eq!(r.status == Status::Error, empty, "only an empty value is an error reading: {r:?}");
    assert_eq!(r.unit, row.item.unit);
});
