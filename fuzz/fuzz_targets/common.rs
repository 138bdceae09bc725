//! Invariants every decoded reading keeps, whatever path it was decoded by.

use vigia_domain::{Reading, Status, Value};

/// Longest unit, text value, metadata key or value a device payload keeps (`META_VALUE_LIMIT` in decode.rs).
pub const TEXT_LIMIT: usize = 256;
/// Most metadata entries a device payload keeps (`META_LIMIT` in decode.rs).
pub const META_LIMIT: usize = 16;

/// The tag device payloads are published on in these targets.
pub const TAG: &str = "brasil.sudeste.sensor01";
/// The broker's receive time passed to the decoders.
pub const BROKER_MS: i64 = 1_700_000_000_000;

/// An error says why and an ok reading does not; numbers are finite.
pub fn check_reading(r: &Reading) {
    match r.status {
        Status::Error => {
            assert!(r.reason.as_deref().is_some_and(|why| !why.is_empty()), "an error reading says why: {r:?}")
        }
        Status::Ok => assert!(r.reason.is_none(), "an ok reading has no reason: {r:?}"),
    }
    if let Value::Number(n) = r.value {
        assert!(n.is_finite(), "numbers are finite: {r:?}");
    }
}
