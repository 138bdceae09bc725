//! Whole messages of the readings stream: subject, `Vigia-Event` and
//! `Vigia-Version` headers and payload, as four newline-separated parts of the
//! input (an empty header part means the header is absent).
//!
//! Decoding never fails: every message becomes readings (error readings for
//! what cannot be understood) or one change of the subject's tag.

#![no_main]

mod common;

use common::{BROKER_MS, check_reading};
use libfuzzer_sys::fuzz_target;
use vigia_domain::{
    Change, LogEvent, READING_CORRECTED, READING_RETRACTED, READINGS_RECORDED, Status, Tag, decode_message,
    decode_payload,
};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(4, |b| *b == b'\n');
    let Ok(subject) = std::str::from_utf8(parts.next().unwrap_or_default()) else { return };
    let (Ok(event), Ok(version)) = (header(parts.next()), header(parts.next())) else { return };
    let payload = parts.next().unwrap_or_default();

    let decoded = decode_message(subject, event, version, payload, BROKER_MS);
    assert_eq!(decode_message(subject, event, version, payload, BROKER_MS), decoded, "decoding is deterministic");

    let Ok(tag) = Tag::parse(subject) else {
        let LogEvent::Readings(readings) = decoded else { panic!("a bad subject gives a change: {decoded:?}") };
        let [r] = &readings[..] else { panic!("a bad subject gives one reading: {readings:?}") };
        check_reading(r);
        assert_eq!(r.status, Status::Error);
        assert!(r.tag.as_str().ends_with("._invalid") && r.tag.depth() == 2, "{r:?}");
        assert_eq!(r.raw.as_deref(), Some(payload), "the payload is kept");
        assert!(r.meta.get("subject").is_some_and(|s| subject.starts_with(s.as_str())), "{r:?}");
        return;
    };
    match decoded {
        LogEvent::Readings(readings) => {
            if event.is_none() {
                assert_eq!(readings, [decode_payload(&tag, payload, BROKER_MS)], "a device payload");
            }
            let batch = event == Some(READINGS_RECORDED) && matches!(version, None | Some("1"));
            assert!(batch || readings.len() == 1, "only a batch has other than one reading: {readings:?}");
            for r in &readings {
                check_reading(r);
                assert_eq!(r.tag.root(), tag.root(), "readings stay under the subject's root: {r:?}");
                if r.status == Status::Error && r.raw.is_none() {
                    assert!(batch, "only a batch item's value error has no raw bytes: {r:?}");
                }
            }
        }
        LogEvent::Change(changed, change) => {
            assert_eq!(changed, tag, "a change is of the subject's tag");
            assert_eq!(version, Some("1"));
            assert_eq!(change.body().v, 1);
            match change {
                Change::Correct(_) => assert_eq!(event, Some(READING_CORRECTED)),
                Change::Retract(_) => assert_eq!(event, Some(READING_RETRACTED)),
            }
        }
    }
});

/// A header part: absent when empty, skipped (`Err`) when not UTF-8.
fn header(part: Option<&[u8]>) -> Result<Option<&str>, std::str::Utf8Error> {
    match part {
        None | Some([]) => Ok(None),
        Some(p) => std::str::from_utf8(p).map(|p| Some(header_value(p))),
    }
}

/// Short codes for the known events, so the fuzzer reaches them easily; anything else as written.
fn header_value(part: &str) -> &str {
    match part {
        "R" => READINGS_RECORDED,
        "C" => READING_CORRECTED,
        "X" => READING_RETRACTED,
        other => other,
    }
}
