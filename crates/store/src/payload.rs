//! The byte formats of rollup shards, registry shards and retention's
//! account (blocks have theirs in `blocks.rs`).
//!
//! A rollup shard maps tags to one bucket's count, sum, min and max (format
//! version 2 is written, version 1 still read); a registry shard maps tags
//! to what the registry knows of them. Each starts with a version byte.
//! Decoding checks every length, so a damaged record is an error, never a
//! panic or a huge allocation.

use std::collections::BTreeMap;

use vigia_domain::{EventId, RollupDelta, SensorDelta, Status, Value};

use crate::codec::{CodecError, Dec, Enc, milli_f64, thousandths};

const V1: u8 = 1;

const ERROR: u8 = 1;
const NUMBER: u8 = 2;

/// Tags to one bucket's rollup.
pub(crate) type RollupShard = BTreeMap<String, RollupDelta>;
/// Tags to the registry's knowledge of them.
pub(crate) type RegistryShard = BTreeMap<String, SensorDelta>;
/// Tags to the events retention removed: (count, errors).
pub(crate) type RetiredShard = BTreeMap<String, (u64, u64)>;

fn version(d: &mut Dec<'_>) -> Result<(), CodecError> {
    match d.u8()? {
        V1 => Ok(()),
        _ => Err(CodecError("written by a newer version of Vigia")),
    }
}

/// Rollup shards in version 2: each tag as the length it shares with the
/// tag before it and the rest (a shard's tags are sorted and mostly share a
/// long prefix), then a header of its count and three flags, then its
/// numbers. A bucket of one reading (most minute buckets of a backfill) has
/// one value for its sum, min and max; a number with at most three decimals
/// is a whole number of thousandths. A minute record of a backfill went
/// from 52 to under 10 bytes a tag (test `a_minute_of_single_readings_takes_a_few_bytes_a_tag`).
const ROLLUPS_V2: u8 = 2;
/// One value stands for sum, min and max.
const ONE: u64 = 1;
/// Min and max (or the one value) are thousandths.
const EXTREMES_MILLI: u64 = 2;
/// The sum is thousandths.
const SUM_MILLI: u64 = 4;

/// Encodes a rollup shard in the current version. A count must stay under
/// 2^61 (it shares its varint with the flags).
pub(crate) fn encode_rollups(shard: &RollupShard) -> Vec<u8> {
    let mut e = Enc::with_capacity(1 + shard.len() * 16);
    e.u8(ROLLUPS_V2);
    e.uv(shard.len() as u64);
    let mut last = "";
    for (tag, r) in shard {
        e.after(last, tag);
        last = tag;
        let (min, max) = (thousandths(r.min), thousandths(r.max));
        if r.count == 1 && r.sum.to_bits() == r.min.to_bits() && r.min.to_bits() == r.max.to_bits() {
            match min {
                Some(t) => {
                    e.uv(r.count << 3 | ONE | EXTREMES_MILLI);
                    e.iv(t);
                }
                None => {
                    e.uv(r.count << 3 | ONE);
                    e.f64(r.min);
                }
            }
            continue;
        }
        let sum = thousandths(r.sum);
        let extremes = min.zip(max);
        let flags = if extremes.is_some() { EXTREMES_MILLI } else { 0 } | if sum.is_some() { SUM_MILLI } else { 0 };
        e.uv(r.count << 3 | flags);
        match sum {
            Some(t) => e.iv(t),
            None => e.f64(r.sum),
        }
        match extremes {
            Some((lo, hi)) => {
                e.iv(lo);
                e.iv(hi.wrapping_sub(lo));
            }
            None => {
                e.f64(r.min);
                e.f64(r.max);
            }
        }
    }
    e.buf
}

pub(crate) fn decode_rollups(bytes: &[u8]) -> Result<RollupShard, CodecError> {
    let mut shard = RollupShard::new();
    visit_rollups(bytes, |tag, r| {
        shard.insert(tag.to_owned(), r);
    })?;
    Ok(shard)
}

/// Calls `f` with each tag's rollup of an encoded shard, in either version,
/// allocating only the one tag buffer: the month averages fold ~150,000 of
/// these per request.
pub(crate) fn visit_rollups(bytes: &[u8], mut f: impl FnMut(&str, RollupDelta)) -> Result<(), CodecError> {
    let mut d = Dec::new(bytes);
    let v2 = match d.u8()? {
        V1 => false,
        ROLLUPS_V2 => true,
        _ => return Err(CodecError("written by a newer version of Vigia")),
    };
    let mut tag = String::new();
    for _ in 0..d.count()? {
        if !v2 {
            let tag = d.str()?;
            f(tag, RollupDelta { count: d.uv()?, sum: d.f64()?, min: d.f64()?, max: d.f64()? });
            continue;
        }
        d.after(&mut tag)?;
        let header = d.uv()?;
        let (count, milli) = (header >> 3, header & EXTREMES_MILLI != 0);
        if header & ONE != 0 {
            let v = if milli { milli_f64(d.iv()?) } else { d.f64()? };
            f(&tag, RollupDelta { count, sum: v, min: v, max: v });
            continue;
        }
        let sum = if header & SUM_MILLI != 0 { milli_f64(d.iv()?) } else { d.f64()? };
        let (min, max) = if milli {
            let lo = d.iv()?;
            (milli_f64(lo), milli_f64(lo.wrapping_add(d.iv()?)))
        } else {
            (d.f64()?, d.f64()?)
        };
        f(&tag, RollupDelta { count, sum, min, max });
    }
    Ok(())
}

pub(crate) fn encode_retired(shard: &RetiredShard) -> Vec<u8> {
    let mut e = Enc::with_capacity(1 + shard.len() * 32);
    e.u8(V1);
    e.uv(shard.len() as u64);
    for (tag, (count, errors)) in shard {
        e.str(tag);
        e.uv(*count);
        e.uv(*errors);
    }
    e.buf
}

pub(crate) fn decode_retired(bytes: &[u8]) -> Result<RetiredShard, CodecError> {
    let mut d = Dec::new(bytes);
    version(&mut d)?;
    let mut shard = RetiredShard::new();
    for _ in 0..d.count()? {
        let tag = d.str()?.to_owned();
        shard.insert(tag, (d.uv()?, d.uv()?));
    }
    Ok(shard)
}

const EMPTY: u8 = 0;
const TEXT: u8 = 3;

pub(crate) fn encode_registry(shard: &RegistryShard) -> Vec<u8> {
    let mut e = Enc::with_capacity(1 + shard.len() * 64);
    e.u8(V1);
    e.uv(shard.len() as u64);
    for (tag, s) in shard {
        e.str(tag);
        e.iv(s.first_seen_ms);
        e.iv(s.last_seen_ms);
        e.uv(s.count);
        e.uv(s.errors);
        e.uv(s.last_id.seq);
        e.uv(u64::from(s.last_id.idx));
        e.u8(if s.last_status == Status::Error { ERROR } else { 0 });
        match &s.last_value {
            Value::Empty => e.u8(EMPTY),
            Value::Number(v) => {
                e.u8(NUMBER);
                e.f64(*v);
            }
            Value::Text(t) => {
                e.u8(TEXT);
                e.str(t);
            }
        }
    }
    e.buf
}

pub(crate) fn decode_registry(bytes: &[u8]) -> Result<RegistryShard, CodecError> {
    let mut d = Dec::new(bytes);
    version(&mut d)?;
    let mut shard = RegistryShard::new();
    for _ in 0..d.count()? {
        let tag = d.str()?.to_owned();
        let first_seen_ms = d.iv()?;
        let last_seen_ms = d.iv()?;
        let count = d.uv()?;
        let errors = d.uv()?;
        let seq = d.uv()?;
        let idx = u32::try_from(d.uv()?).map_err(|_| CodecError("index"))?;
        let last_status = if d.u8()? == ERROR { Status::Error } else { Status::Ok };
        let last_value = match d.u8()? {
            EMPTY => Value::Empty,
            NUMBER => Value::Number(d.f64()?),
            TEXT => Value::Text(d.str()?.to_owned()),
            _ => return Err(CodecError("value kind")),
        };
        let s = SensorDelta {
            first_seen_ms,
            last_seen_ms,
            last_value,
            last_status,
            last_id: EventId { seq, idx },
            count,
            errors,
        };
        shard.insert(tag, s);
    }
    Ok(shard)
}

#[cfg(test)]
mod tests {
    use vigia_domain::Projection;

    use super::*;

    #[test]
    fn shards_round_trip() {
        let p = Projection::of(&crate::blocks::tests::events());
        let registry: RegistryShard = p.tags.iter().map(|t| (t.tag.clone(), t.sensor.clone())).collect();
        assert_eq!(decode_registry(&encode_registry(&registry)).unwrap(), registry);
        let rollups: RollupShard = p.rollups().map(|(t, _, b, r)| (format!("{t}@{b}"), *r)).collect();
        assert_eq!(bits(&decode_rollups(&encode_rollups(&rollups)).unwrap()), bits(&rollups));
        assert!(decode_rollups(&[9, 0]).is_err(), "an unknown version is refused");
        let retired: RetiredShard = [("brasil.a.b".to_owned(), (7, 2))].into();
        assert_eq!(decode_retired(&encode_retired(&retired)).unwrap(), retired);
    }

    fn delta(count: u64, sum: f64, min: f64, max: f64) -> RollupDelta {
        RollupDelta { count, sum, min, max }
    }

    /// Numbers compared by their bits, so NaN equals itself and -0.0 is not 0.0.
    fn bits(shard: &RollupShard) -> Vec<(String, u64, [u64; 3])> {
        shard.iter().map(|(t, r)| (t.clone(), r.count, [r.sum, r.min, r.max].map(f64::to_bits))).collect()
    }

    /// Every kind of entry: one reading or many, numbers that are thousandths
    /// or not, and tags sharing a prefix that ends inside a character.
    fn awkward() -> RollupShard {
        [
            ("brasil.sudeste.s1", delta(1, 21.5, 21.5, 21.5)),
            ("brasil.sudeste.s2", delta(1, -0.0, -0.0, -0.0)),
            ("brasil.sudeste.s3", delta(1, f64::NAN, f64::NAN, f64::NAN)),
            ("brasil.sudeste.s4", delta(3, 0.1 + 0.2 + 0.4, 0.1, 0.4)),
            ("brasil.sudeste.s5", delta(2, 44.5, 22.25, 22.25)),
            ("brasil.sudeste.s6", delta(2, 1e300, -1e300, f64::INFINITY)),
            ("brasil.sudeste.s7", delta(1, 5.0, 4.0, 6.0)),
            ("brasil.são", delta(4, 4.0, 1.0, 1.0)),
            ("brasil.sä", delta(u64::MAX >> 3, 1.0, 1.0, 1.0)),
            ("z", delta(0, 0.0, 0.0, 0.0)),
        ]
        .into_iter()
        .map(|(t, r)| (t.to_owned(), r))
        .collect()
    }

    #[test]
    fn rollups_keep_every_bit_of_every_entry() {
        let shard = awkward();
        let bytes = encode_rollups(&shard);
        assert_eq!(bytes[0], ROLLUPS_V2);
        assert_eq!(bits(&decode_rollups(&bytes).unwrap()), bits(&shard));
        for cut in 0..bytes.len() {
            assert!(decode_rollups(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        // A prefix longer than the tag before it is refused, not sliced.
        let mut bad = vec![ROLLUPS_V2, 1];
        bad.extend([3, 1, b'x', 9]);
        bad.extend(1.0f64.to_le_bytes());
        assert!(decode_rollups(&bad).is_err());
    }

    #[test]
    fn version_1_rollups_still_decode() {
        let shard = awkward();
        let mut e = Enc::default();
        e.u8(V1);
        e.uv(shard.len() as u64);
        for (tag, r) in &shard {
            e.str(tag);
            e.uv(r.count);
            e.f64(r.sum);
            e.f64(r.min);
            e.f64(r.max);
        }
        assert_eq!(bits(&decode_rollups(&e.buf).unwrap()), bits(&shard));
    }

    /// A backfill's minute record: a reading each from the shard's sensors,
    /// two decimals. Version 1 took 52 bytes a tag.
    #[test]
    fn a_minute_of_single_readings_takes_a_few_bytes_a_tag() {
        let shard: RollupShard = (0..30)
            .map(|i| {
                let v = f64::from(2_000 + i * 37) / 100.0;
                (format!("brasil.sudeste.sensor{:04}", i * 8 + 3), delta(1, v, v, v))
            })
            .collect();
        let bytes = encode_rollups(&shard);
        assert_eq!(bits(&decode_rollups(&bytes).unwrap()), bits(&shard));
        let per_tag = bytes.len() as f64 / 30.0;
        assert!(per_tag < 10.0, "{per_tag} bytes a tag");
    }
}
