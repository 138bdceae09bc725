//! The byte formats of rollup shards, registry shards and retention's
//! account (blocks have theirs in `blocks.rs`).
//!
//! A rollup shard maps tags to one bucket's count, sum, min and max; a
//! registry shard maps tags to what the registry knows of them. Each starts
//! with a version byte. Decoding checks every length, so a damaged record is
//! an error, never a panic or a huge allocation.

use std::collections::BTreeMap;

use vigia_domain::{EventId, RollupDelta, SensorDelta, Status, Value};

use crate::codec::{CodecError, Dec, Enc};

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

pub(crate) fn encode_rollups(shard: &RollupShard) -> Vec<u8> {
    let mut e = Enc::with_capacity(1 + shard.len() * 48);
    e.u8(V1);
    e.uv(shard.len() as u64);
    for (tag, r) in shard {
        e.str(tag);
        e.uv(r.count);
        e.f64(r.sum);
        e.f64(r.min);
        e.f64(r.max);
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

/// Calls `f` with each tag's rollup of an encoded shard, allocating nothing:
/// the month averages fold ~150,000 of these per request.
pub(crate) fn visit_rollups<'a>(bytes: &'a [u8], mut f: impl FnMut(&'a str, RollupDelta)) -> Result<(), CodecError> {
    let mut d = Dec::new(bytes);
    version(&mut d)?;
    for _ in 0..d.count()? {
        let tag = d.str()?;
        f(tag, RollupDelta { count: d.uv()?, sum: d.f64()?, min: d.f64()?, max: d.f64()? });
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
    use vigia_domain::{Projection, Reading, StoredEvent, Tag};

    use super::*;

    fn events() -> Vec<StoredEvent> {
        let tag = |t: &str| Tag::parse(t).unwrap();
        let mut text = Reading::number(tag("brasil.sul.s1"), 1_700_000_000_500, 0.0);
        text.value = Value::Text("ligado".into());
        text.unit = Some("kWh".into());
        text.meta.insert("equipmentId".into(), "EQ-1".into());
        let mut garbage = Reading::error(tag("brasil.sul.s2"), 1_700_000_001_000, "not JSON", &[0xff, 0, 7]);
        garbage.backfill = true;
        let readings = vec![
            Reading::number(tag("brasil.sul.s1"), 1_700_000_000_000, 21.5),
            text,
            garbage,
            Reading::number(tag("brasil.sul.s1"), -5, f64::MIN_POSITIVE),
        ];
        readings
            .into_iter()
            .enumerate()
            .map(|(i, reading)| StoredEvent { id: EventId { seq: 1_000_000 + i as u64, idx: i as u32 }, reading })
            .collect()
    }

    #[test]
    fn shards_round_trip() {
        let p = Projection::of(&events());
        let registry: RegistryShard = p.sensors.clone().into_iter().collect();
        assert_eq!(decode_registry(&encode_registry(&registry)).unwrap(), registry);
        let rollups: RollupShard = p.rollups.iter().map(|((t, _, b), r)| (format!("{t}@{b}"), *r)).collect();
        assert_eq!(decode_rollups(&encode_rollups(&rollups)).unwrap(), rollups);
        assert!(decode_rollups(&[9, 0]).is_err(), "an unknown version is refused");
        let retired: RetiredShard = [("brasil.a.b".to_owned(), (7, 2))].into();
        assert_eq!(decode_retired(&encode_retired(&retired)).unwrap(), retired);
    }
}
