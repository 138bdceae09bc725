//! Any bytes published on a valid tag decode to one reading of that tag; an
//! error reading says why and keeps the payload byte for byte.

#![no_main]

mod common;

use common::{BROKER_MS, META_LIMIT, TAG, TEXT_LIMIT, check_reading};
use libfuzzer_sys::fuzz_target;
use vigia_domain::{Status, Tag, Value, decode_payload};

fuzz_target!(|data: &[u8]| {
    let tag = Tag::parse(TAG).unwrap();
    let r = decode_payload(&tag, data, BROKER_MS);
    check_reading(&r);
    assert_eq!(r.tag, tag, "the reading is for the subject's tag");
    match r.status {
        Status::Error => assert_eq!(r.raw.as_deref(), Some(data), "an error reading keeps the payload: {r:?}"),
        Status::Ok => assert!(r.raw.is_none(), "an ok reading needs no raw bytes: {r:?}"),
    }
    if std::str::from_utf8(data).is_err() || data.iter().all(u8::is_ascii_whitespace) {
        assert_eq!((r.status, r.ts_ms), (Status::Error, BROKER_MS), "not JSON: {r:?}");
    }
    if let Value::Text(t) = &r.value {
        assert!(!t.is_empty() && t.len() <= TEXT_LIMIT, "text values are clipped and not empty: {r:?}");
    }
    assert!(r.unit.as_ref().is_none_or(|u| !u.is_empty() && u.len() <= TEXT_LIMIT), "unit: {r:?}");
    assert!(r.meta.len() <= META_LIMIT, "at most {META_LIMIT} metadata entries: {r:?}");
    for (k, v) in &r.meta {
        assert!(k.len() <= TEXT_LIMIT && v.len() <= TEXT_LIMIT, "metadata is clipped: {r:?}");
    }
    assert_eq!(decode_payload(&tag, data, BROKER_MS), r, "decoding is deterministic");
});
