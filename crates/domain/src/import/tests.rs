//! CSV rows at their boundary: header and cells in, batch items or errors out.

use proptest::prelude::*;

use super::*;
use crate::decode::decode_payload;
use crate::envelope::{READINGS_RECORDED, batch_subject, decode_message, encode_batch};
use crate::reading::{Reading, Status, Value};

fn header(cells: &str) -> Result<ImportHeader, ImportError> {
    ImportHeader::parse(&cells.split(',').collect::<Vec<_>>())
}

fn row(h: &ImportHeader, record: &str, root: Option<&str>) -> Result<ImportRow, RowError> {
    h.row(7, &record.split(',').collect::<Vec<_>>(), root)
}

/// What the persister makes of rows: publish them as one batch and decode it.
fn persisted(rows: &[ImportRow]) -> Vec<Reading> {
    let items: Vec<BatchItem> = rows.iter().map(|r| r.item.clone()).collect();
    let subject = batch_subject(rows.iter().map(|r| &r.tag)).unwrap();
    decode_message(&subject, Some(READINGS_RECORDED), Some("1"), &encode_batch(&items), 0).into_readings()
}

#[test]
fn headers_in_any_order_and_case() {
    let h = header("equipmentId,timestamp,value").unwrap();
    assert_eq!((h.id, h.timestamp, h.value, h.unit, h.width), (IdColumn::EquipmentId(0), 1, 2, None, 3));
    let h = header(" Value ,UNIT,\u{feff}tag,TimeStamp").unwrap();
    assert_eq!((h.id, h.timestamp, h.value, h.unit, h.width), (IdColumn::Tag(2), 3, 0, Some(1), 4));
    let h = header("\u{feff}EquipmentID,timestamp,value").unwrap();
    assert_eq!(h.id, IdColumn::EquipmentId(0));
}

#[test]
fn header_errors_name_the_accepted_columns() {
    for (cells, want, says) in [
        (
            "tag,timestamp,value,site",
            ImportError::UnknownColumn { position: 4, name: "site".into() },
            "column 4 is named `site`",
        ),
        ("tag,,value,timestamp", ImportError::UnknownColumn { position: 2, name: "".into() }, "column 2 is named ``"),
        ("tag,timestamp,value,Tag", ImportError::DuplicateColumn { name: "tag" }, "`tag` appears twice"),
        ("tag,value", ImportError::MissingColumn { name: "timestamp" }, "no `timestamp` column"),
        ("tag,timestamp", ImportError::MissingColumn { name: "value" }, "no `value` column"),
        ("timestamp,value", ImportError::MissingColumn { name: "tag" }, "no `tag` column"),
        ("tag,equipmentId,timestamp,value", ImportError::BothIdColumns, "both `tag` and `equipmentId`"),
    ] {
        let err = header(cells).unwrap_err();
        assert_eq!(err, want, "{cells}");
        assert!(err.to_string().contains(says), "{err}");
        assert!(err.to_string().ends_with(ACCEPTED), "{err}");
    }
}

#[test]
fn roots() {
    let by_id = header("equipmentId,timestamp,value").unwrap();
    let by_tag = header("tag,timestamp,value").unwrap();
    assert_eq!(by_id.check_root(None), Err(ImportError::RootRequired));
    assert!(ImportError::RootRequired.to_string().contains("`root` query parameter, e.g. `root=plant1.area3`"));
    assert_eq!(by_tag.check_root(None), Ok(()));
    assert_eq!(by_id.check_root(Some("plant1")), Ok(()));
    assert_eq!(by_id.check_root(Some("plant1.area3")), Ok(()));
    assert_eq!(by_tag.check_root(Some("a.b.c.d.e.f.g")), Ok(()));
    for (root, says) in [
        ("a.b.c.d.e.f.g.h", "it has 8 tokens and a tag at most 8"),
        ("plant 1", "has ` `"),
        ("plant1.", "token 1 is empty"),
        ("", "token 0 is empty"),
    ] {
        let err = by_id.check_root(Some(root)).unwrap_err();
        assert!(err.to_string().starts_with(&format!("`root={root}` is not valid")), "{err}");
        assert!(err.to_string().contains(says), "{root}: {err}");
        assert!(err.to_string().contains("e.g. `root=plant1.area3`"), "{err}");
    }
}

#[test]
fn equipment_rows_become_tags_under_the_root() {
    let h = header("equipmentId,timestamp,value,unit").unwrap();
    let r = row(&h, "EQ-12495,2023-02-15T01:30:00.000-05:00, 78.42 ,kWh", Some("plant1.area3")).unwrap();
    assert_eq!((r.line, r.tag.as_str(), r.ts_ms), (7, "plant1.area3.EQ-12495", 1_676_442_600_000));
    assert_eq!(r.msg_id, "csv:plant1.area3.EQ-12495:1676442600000");
    assert_eq!(r.item.value, Some(ItemValue::Text(" 78.42 ".into())));
    assert_eq!((r.item.ts, r.item.unit.as_deref()), (Some(1_676_442_600_000), Some("kWh")));
    assert_eq!(r.item.meta["equipmentId"], "EQ-12495");
    let readings = persisted(&[r]);
    assert_eq!((&readings[0].value, readings[0].status), (&Value::Number(78.42), Status::Ok));
    assert_eq!(readings[0].meta["equipmentId"], "EQ-12495");
}

#[test]
fn tag_rows_and_values_decode_like_devices() {
    let h = header("tag,timestamp,value").unwrap();
    let rows: Vec<ImportRow> =
        ["brasil.sul.s1,1539112021,42,5", "brasil.sul.s2,1539112021301,ligado", "brasil.sul.s1,1539112022000,"]
            .iter()
            .map(|line| h.row(2, &line.splitn(3, ',').collect::<Vec<_>>(), None).unwrap())
            .collect();
    assert_eq!(rows[0].ts_ms, 1_539_112_021_000);
    assert_eq!(rows[0].item.unit, None);
    assert!(rows[0].item.meta.is_empty());
    let readings = persisted(&rows);
    assert_eq!((&readings[0].value, readings[0].status), (&Value::Number(42.5), Status::Ok));
    assert_eq!((&readings[1].value, readings[1].status), (&Value::Text("ligado".into()), Status::Ok));
    assert_eq!((&readings[2].value, readings[2].status), (&Value::Empty, Status::Error));
    assert_eq!(readings[2].tag.as_str(), "brasil.sul.s1");
    assert_eq!(readings[2].ts_ms, 1_539_112_022_000);
}

#[test]
fn row_errors_say_line_column_and_fix() {
    let by_tag = header("tag,timestamp,value").unwrap();
    let by_id = header("equipmentId,timestamp,value").unwrap();
    for (h, record, root, column, says) in [
        (&by_tag, "brasil.sul.s1,1", None, None, "line 7: the row has 2 fields but the header has 3"),
        (&by_tag, "brasil.sul.s1,1,2,3", None, None, "give every row the header's columns"),
        (&by_tag, "brasil,1,2", None, Some("tag"), "line 7, column `tag`: `brasil` is not a tag: a tag needs 2 to 8"),
        (
            &by_tag,
            "brasil.sul.s1,1,2",
            Some("meters"),
            Some("tag"),
            "tag `brasil.sul.s1` is outside `root=meters`: use tags that start with `meters.`",
        ),
        (&by_tag, "brasil.sulista.s1,1,2", Some("brasil.sul"), Some("tag"), "outside `root=brasil.sul`"),
        (&by_tag, "brasil.sul.s1,1,2", Some("bad root"), Some("tag"), "`root=bad root` is not valid"),
        (&by_id, "EQ-1,1,2", None, Some("equipmentId"), "need the `root` query parameter"),
        (&by_id, " ,1,2", Some("plant1"), Some("equipmentId"), "the equipment id is empty"),
        (
            &by_id,
            "EQ 1,1,2",
            Some("plant1"),
            Some("equipmentId"),
            "`EQ 1` does not make a tag under `plant1`: token 1 has ` `",
        ),
        (
            &by_tag,
            "brasil.sul.s1, ,2",
            None,
            Some("timestamp"),
            "line 7, column `timestamp`: the timestamp is empty: a backfill needs the time",
        ),
        (&by_tag, "brasil.sul.s1,yesterday,2", None, Some("timestamp"), "`yesterday` is not a timestamp"),
        (&by_tag, "brasil.sul.s1,2023-02-15 01:30:00,2", None, Some("timestamp"), "RFC 3339 with an offset"),
        (&by_tag, "brasil.sul.s1,-5,2", None, Some("timestamp"), "`-5` is not a unix time"),
    ] {
        let err = row(h, record, root).unwrap_err();
        assert_eq!((err.line, err.column), (7, column), "{record}");
        assert!(err.to_string().contains(says), "{record}: {err}");
    }
    let long = format!("brasil.sul.s1,1,{}", "x".repeat(META_VALUE_LIMIT + 1));
    let err = row(&by_tag, &long, None).unwrap_err();
    assert_eq!((err.column, err.reason.as_str()), (Some("value"), "the value is longer than 256 bytes: shorten it"));
}

#[test]
fn the_same_reading_gets_the_same_message_id() {
    let h = header("tag,timestamp,value").unwrap();
    let a = row(&h, "brasil.sul.s1,2023-02-15T06:30:00Z,1", None).unwrap();
    let b = row(&h, "brasil.sul.s1,1676442600000,2", None).unwrap();
    let c = row(&h, "brasil.sul.s2,1676442600000,1", None).unwrap();
    assert_eq!(a.msg_id, b.msg_id, "same tag and instant, whatever the spelling");
    assert_ne!(a.msg_id, c.msg_id);
}

proptest! {
    #[test]
    fn rows_decode_like_the_same_device_payload(
        tokens in prop::collection::vec("[A-Za-z0-9_-]{1,8}", 1..4),
        ts_ms in 1_000_000_000_000i64..4_000_000_000_000,
        value in prop_oneof!["-?[0-9]{1,5}([.,][0-9]{1,3})?", "[a-z ]{0,10}", Just(String::new())],
    ) {
        let root = "plant1";
        let id = tokens.join(".");
        let h = header("equipmentId,timestamp,value").unwrap();
        let r = h.row(1, &[&id, &ts_ms.to_string(), &value], Some(root)).unwrap();
        prop_assert_eq!(r.tag.as_str(), format!("{root}.{id}"));
        prop_assert_eq!(&r.msg_id, &format!("csv:{root}.{id}:{ts_ms}"));
        let stored = persisted(std::slice::from_ref(&r)).remove(0);
        let payload = serde_json::json!({ "value": value, "timestamp": ts_ms }).to_string();
        let device = decode_payload(&r.tag, payload.as_bytes(), 0);
        prop_assert_eq!((&stored.tag, stored.ts_ms), (&r.tag, ts_ms));
        prop_assert_eq!((&stored.value, stored.status), (&device.value, device.status));
    }

    #[test]
    fn any_record_is_a_row_or_a_located_error(
        line in any::<u64>(),
        cells in prop::collection::vec("\\PC{0,20}", 0..5),
        root in prop::option::of("[a-z.]{0,12}"),
    ) {
        let h = header("tag,timestamp,value,unit").unwrap();
        let record: Vec<&str> = cells.iter().map(String::as_str).collect();
        match h.row(line, &record, root.as_deref()) {
            Ok(r) => {
                prop_assert_eq!(r.line, line);
                prop_assert_eq!(r.item.tag, r.tag.to_string());
            }
            Err(e) => {
                prop_assert_eq!(e.line, line);
                let located = format!("line {line}");
                prop_assert!(e.to_string().starts_with(&located));
            }
        }
    }
}
