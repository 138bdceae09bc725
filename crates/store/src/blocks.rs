//! The byte format of a block payload: the per-tag [`Block`]s of one shard
//! and hour from one flush.
//!
//! Why two versions: blocks are most of what a flush writes, and until
//! SurrealKV flushes its memtable (1 GiB with SurrealDB's sizing) every
//! byte written stays in memory, so a backlog's peak resident set follows
//! them (`docs/performance.md`). Version 1 wrote each event whole: absolute
//! sequence, millisecond offset from the hour, an 8-byte float, and its
//! unit and metadata (a device's `equipmentId`, say) spelled out again for
//! every event: about 50 bytes an event of the simulator's. Version 2
//! writes each event as differences from the one before it in its tag, a
//! number with at most three decimals as a difference of thousandths, an
//! index only when it is not 0, and each distinct unit and metadata map
//! once per section, later events naming it by its place: 15 bytes in
//! 50,000-event flushes. Stores hold version 1 blocks from before, so both
//! decode; only version 2 is written.
//!
//! A payload lists each tag with its event count and the length of its
//! section, so a reader skips the tags it does not want. Decoding checks
//! every length, so a damaged record is an error, never a panic or a huge
//! allocation.

use std::collections::{BTreeMap, HashMap};

use vigia_domain::{Block, BlockExtra, Meta, Status};

use crate::codec::{CodecError, Dec, Enc, milli_f64, thousandths};

const V1: u8 = 1;
const V2: u8 = 2;

// An event's flags (both versions).
const ERROR: u8 = 1;
const NUMBER: u8 = 2;
const BACKFILL: u8 = 4;
// Version 2 only: the number follows as a difference of thousandths, and
// the event's index in its message follows (else it is 0).
const MILLI: u8 = 8;
const INDEX: u8 = 16;

// Version 2: which rare fields an extra carries. A unit and a meta map are
// each written once per section and then named by their place in it.
const TEXT: u8 = 1;
const UNIT: u8 = 2;
const REASON: u8 = 4;
const RAW: u8 = 8;
const META: u8 = 16;

fn version(d: &mut Dec<'_>) -> Result<u8, CodecError> {
    match d.u8()? {
        v @ (V1 | V2) => Ok(v),
        _ => Err(CodecError("written by a newer version of Vigia")),
    }
}

/// Encodes blocks of one shard and hour in the current version.
pub(crate) fn encode_blocks<'a>(blocks: impl ExactSizeIterator<Item = &'a Block>) -> Vec<u8> {
    let mut e = Enc::with_capacity(64 + blocks.len() * 32);
    e.u8(V2);
    e.uv(blocks.len() as u64);
    let mut section = Enc::default();
    for b in blocks {
        section.buf.clear();
        encode_section(&mut section, b);
        e.str(&b.tag);
        e.uv(b.len() as u64);
        e.bytes(&section.buf);
    }
    e.buf
}

fn encode_section(e: &mut Enc, b: &Block) {
    e.iv(b.start_ms);
    let (mut seq, mut ts, mut milli) = (0u64, b.start_ms, 0i64);
    for i in 0..b.len() {
        let mut flags = if b.status[i] == Status::Error { ERROR } else { 0 };
        flags |= if b.backfill[i] { BACKFILL } else { 0 };
        flags |= if b.idx[i] != 0 { INDEX } else { 0 };
        let value = b.value[i].map(|v| (v, thousandths(v)));
        flags |= match value {
            Some((_, Some(_))) => NUMBER | MILLI,
            Some((_, None)) => NUMBER,
            None => 0,
        };
        e.u8(flags);
        e.iv(b.seq[i].wrapping_sub(seq) as i64);
        seq = b.seq[i];
        if b.idx[i] != 0 {
            e.uv(u64::from(b.idx[i]));
        }
        e.iv(b.ts[i].wrapping_sub(ts));
        ts = b.ts[i];
        match value {
            Some((_, Some(t))) => {
                e.iv(t.wrapping_sub(milli));
                milli = t;
            }
            Some((v, None)) => e.f64(v),
            None => {}
        }
    }
    e.uv(b.extra.len() as u64);
    let mut at = 0u32;
    let (mut units, mut metas) = (Seen::<str>::default(), Seen::<Meta>::default());
    for x in &b.extra {
        e.iv(i64::from(x.i) - i64::from(at));
        at = x.i;
        let mut mask = if x.text.is_some() { TEXT } else { 0 };
        mask |= if x.unit.is_some() { UNIT } else { 0 };
        mask |= if x.reason.is_some() { REASON } else { 0 };
        mask |= if x.raw.is_some() { RAW } else { 0 };
        mask |= if x.meta.is_empty() { 0 } else { META };
        e.u8(mask);
        if let Some(t) = &x.text {
            e.str(t);
        }
        if let Some(u) = &x.unit {
            match units.place(u) {
                Some(k) => e.uv(k + 1),
                None => {
                    e.uv(0);
                    e.str(u);
                }
            }
        }
        if let Some(r) = &x.reason {
            e.str(r);
        }
        if let Some(raw) = &x.raw {
            e.bytes(raw);
        }
        if !x.meta.is_empty() {
            match metas.place(&x.meta) {
                Some(k) => e.uv(k + 1),
                None => {
                    e.uv(0);
                    e.uv(x.meta.len() as u64);
                    for (k, v) in &x.meta {
                        e.str(k);
                        e.str(v);
                    }
                }
            }
        }
    }
}

/// The distinct units or metadata maps of a section, numbered in the order
/// they first came.
///
/// A sensor's section holds a few of them (its id under each payload shape
/// it sends, say), found by comparing: hashing every event's metadata map
/// with SipHash was 2% of the device path's profile (docs/performance.md).
/// Past [`Seen::SCAN`] of them (metadata with a message counter, say) they
/// are found by hash, since a section can hold tens of thousands of events.
struct Seen<'a, T: ?Sized> {
    order: Vec<&'a T>,
    index: HashMap<&'a T, u64>,
}

impl<T: ?Sized> Default for Seen<'_, T> {
    fn default() -> Self {
        Seen { order: Vec::new(), index: HashMap::new() }
    }
}

impl<'a, T: Eq + std::hash::Hash + ?Sized> Seen<'a, T> {
    const SCAN: usize = 8;

    /// The place of `value` if it came before; else `None`, and it takes the next place.
    fn place(&mut self, value: &'a T) -> Option<u64> {
        let known = if self.order.len() <= Self::SCAN {
            self.order.iter().position(|seen| *seen == value).map(|i| i as u64)
        } else {
            self.index.get(value).copied()
        };
        if known.is_none() {
            self.order.push(value);
            if self.order.len() > Self::SCAN {
                if self.index.is_empty() {
                    self.index.extend(self.order.iter().copied().zip(0..));
                } else {
                    self.index.insert(value, self.order.len() as u64 - 1);
                }
            }
        }
        known
    }
}

/// The tags of a block payload with their event counts, without decoding events.
pub(crate) fn block_directory(bytes: &[u8]) -> Result<Vec<(&str, usize)>, CodecError> {
    let mut d = Dec::new(bytes);
    version(&mut d)?;
    let tags = d.count()?;
    let mut out = Vec::with_capacity(tags);
    for _ in 0..tags {
        let tag = d.str()?;
        let n = d.uv()? as usize;
        d.bytes()?;
        out.push((tag, n));
    }
    Ok(out)
}

/// Decodes what [`encode_blocks`] wrote, in either version.
pub(crate) fn decode_blocks(bytes: &[u8]) -> Result<Vec<Block>, CodecError> {
    decode_blocks_where(bytes, |_| true)
}

/// Decodes the blocks of the tags `wanted` accepts; the others are skipped.
pub(crate) fn decode_blocks_where(bytes: &[u8], wanted: impl Fn(&str) -> bool) -> Result<Vec<Block>, CodecError> {
    let mut d = Dec::new(bytes);
    let v = version(&mut d)?;
    let tags = d.count()?;
    let mut blocks = Vec::new();
    for _ in 0..tags {
        let tag = d.str()?;
        let n = d.uv()?;
        let section = d.bytes()?;
        if !wanted(tag) {
            continue;
        }
        let n = usize::try_from(n).ok().filter(|n| *n <= section.len()).ok_or(CodecError("event count"))?;
        let mut b = Block::with_capacity(tag, 0, n);
        let mut d = Dec::new(section);
        match v {
            V1 => decode_v1(&mut b, n, &mut d)?,
            _ => decode_v2(&mut b, n, &mut d)?,
        }
        if !d.is_empty() {
            return Err(CodecError("trailing bytes in a block"));
        }
        blocks.push(b);
    }
    Ok(blocks)
}

fn push_flags(b: &mut Block, flags: u8) {
    b.status.push(if flags & ERROR != 0 { Status::Error } else { Status::Ok });
    b.backfill.push(flags & BACKFILL != 0);
}

fn index(v: u64) -> Result<u32, CodecError> {
    u32::try_from(v).map_err(|_| CodecError("index"))
}

fn decode_v2(b: &mut Block, n: usize, d: &mut Dec<'_>) -> Result<(), CodecError> {
    b.start_ms = d.iv()?;
    let (mut seq, mut ts, mut milli) = (0u64, b.start_ms, 0i64);
    for _ in 0..n {
        let flags = d.u8()?;
        if flags & !(ERROR | NUMBER | BACKFILL | MILLI | INDEX) != 0 || flags & (NUMBER | MILLI) == MILLI {
            return Err(CodecError("event flags"));
        }
        seq = seq.wrapping_add(d.iv()? as u64);
        b.seq.push(seq);
        b.idx.push(if flags & INDEX != 0 { index(d.uv()?)? } else { 0 });
        ts = ts.wrapping_add(d.iv()?);
        b.ts.push(ts);
        push_flags(b, flags);
        b.value.push(match flags & (NUMBER | MILLI) {
            0 => None,
            NUMBER => Some(d.f64()?),
            _ => {
                milli = milli.wrapping_add(d.iv()?);
                Some(milli_f64(milli))
            }
        });
    }
    let mut at = 0i64;
    let (mut units, mut metas): (Vec<String>, Vec<Meta>) = (Vec::new(), Vec::new());
    for _ in 0..d.count()? {
        at = at.checked_add(d.iv()?).ok_or(CodecError("extra index"))?;
        let i = u32::try_from(at).ok().filter(|i| (*i as usize) < n).ok_or(CodecError("extra names no event"))?;
        let mask = d.u8()?;
        if mask & !(TEXT | UNIT | REASON | RAW | META) != 0 {
            return Err(CodecError("extra flags"));
        }
        let text = if mask & TEXT != 0 { Some(d.str()?.to_owned()) } else { None };
        let unit = if mask & UNIT != 0 {
            Some(match d.uv()? {
                0 => {
                    units.push(d.str()?.to_owned());
                    units.last().expect("just pushed").clone()
                }
                k => seen(&units, k)?.clone(),
            })
        } else {
            None
        };
        let reason = if mask & REASON != 0 { Some(d.str()?.to_owned()) } else { None };
        let raw = if mask & RAW != 0 { Some(d.bytes()?.to_vec()) } else { None };
        let meta = if mask & META != 0 {
            match d.uv()? {
                0 => {
                    let mut meta = BTreeMap::new();
                    for _ in 0..d.count()? {
                        let k = d.str()?.to_owned();
                        meta.insert(k, d.str()?.to_owned());
                    }
                    let meta = Meta::from(meta);
                    metas.push(meta.clone());
                    meta
                }
                k => seen(&metas, k)?.clone(),
            }
        } else {
            Meta::default()
        };
        b.extra.push(BlockExtra { i, text, unit, reason, raw, meta });
    }
    Ok(())
}

/// The `k`th (from 1) unit or meta map written earlier in a section.
fn seen<T>(table: &[T], k: u64) -> Result<&T, CodecError> {
    usize::try_from(k - 1).ok().and_then(|k| table.get(k)).ok_or(CodecError("names an unknown unit or meta"))
}

fn decode_v1(b: &mut Block, n: usize, d: &mut Dec<'_>) -> Result<(), CodecError> {
    b.start_ms = d.iv()?;
    for _ in 0..n {
        b.seq.push(d.uv()?);
        b.idx.push(index(d.uv()?)?);
        b.ts.push(b.start_ms.wrapping_add(d.iv()?));
        let flags = d.u8()?;
        push_flags(b, flags);
        b.value.push(if flags & NUMBER != 0 { Some(d.f64()?) } else { None });
    }
    for _ in 0..d.count()? {
        let i = u32::try_from(d.uv()?).map_err(|_| CodecError("extra index"))?;
        if i as usize >= n {
            return Err(CodecError("extra names no event"));
        }
        let text = d.opt_str()?;
        let unit = d.opt_str()?;
        let reason = d.opt_str()?;
        let raw = match d.u8()? {
            0 => None,
            _ => Some(d.bytes()?.to_vec()),
        };
        let mut meta = BTreeMap::new();
        for _ in 0..d.count()? {
            let k = d.str()?.to_owned();
            meta.insert(k, d.str()?.to_owned());
        }
        b.extra.push(BlockExtra { i, text, unit, reason, raw, meta: meta.into() });
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use vigia_domain::{EventId, Projection, Reading, StoredEvent, Tag, Value};

    use super::*;

    fn tag(t: &str) -> Tag {
        Tag::parse(t).unwrap()
    }

    /// The `i`th reading stored with the id `id(i)`.
    fn stored(readings: Vec<Reading>, id: impl Fn(u64) -> EventId) -> Vec<StoredEvent> {
        readings.into_iter().zip(0..).map(|(reading, i)| StoredEvent { id: id(i), reading }).collect()
    }

    /// Every field and every kind of value, in three blocks of two tags.
    pub(crate) fn events() -> Vec<StoredEvent> {
        let mut text = Reading::number(tag("brasil.sul.s1"), 1_700_000_000_500, 0.0);
        text.value = Value::Text("ligado".into());
        text.unit = Some("kWh".into());
        text.meta.insert("equipmentId".into(), "EQ-1".into());
        let mut garbage = Reading::error(tag("brasil.sul.s2"), 1_700_000_001_000, "not JSON", &[0xff, 0, 7]);
        garbage.backfill = true;
        let mut readings = vec![
            Reading::number(tag("brasil.sul.s1"), 1_700_000_000_000, 21.5),
            text,
            garbage,
            Reading::number(tag("brasil.sul.s1"), -5, f64::MIN_POSITIVE),
        ];
        for (i, v) in [-0.0, f64::NAN, f64::INFINITY, 0.1 + 0.2, -12.345, 1e300, 7.0].into_iter().enumerate() {
            let mut r = Reading::number(tag("brasil.sul.s1"), 1_700_000_000_000 - i as i64 * 7, v);
            r.unit = [None, Some("kWh"), Some("kWh"), Some("°C")][i % 4].map(str::to_owned);
            readings.push(r);
        }
        stored(readings, |i| EventId { seq: 1_000_000 + i, idx: i as u32 })
    }

    /// Values compared by their bits, so NaN equals itself and -0.0 is not 0.0.
    fn bits(blocks: &[Block]) -> Vec<Vec<Option<u64>>> {
        blocks.iter().map(|b| b.value.iter().map(|v| v.map(f64::to_bits)).collect()).collect()
    }

    fn assert_same(decoded: &[Block], blocks: &[Block]) {
        assert_eq!(bits(decoded), bits(blocks));
        let no_values = |bs: &[Block]| bs.iter().map(|b| Block { value: vec![], ..b.clone() }).collect::<Vec<_>>();
        assert_eq!(no_values(decoded), no_values(blocks));
    }

    #[test]
    fn blocks_round_trip_every_field() {
        let p = Projection::of(&events());
        let bytes = encode_blocks(p.blocks.iter());
        assert_eq!(bytes[0], V2);
        assert_same(&decode_blocks(&bytes).unwrap(), &p.blocks);
        let dir = block_directory(&bytes).unwrap();
        assert_eq!(dir, vec![("brasil.sul.s1", 1), ("brasil.sul.s1", 9), ("brasil.sul.s2", 1)]);
        let only_s2 = decode_blocks_where(&bytes, |t| t == "brasil.sul.s2").unwrap();
        assert_eq!(only_s2, p.blocks[2..].to_vec());
        for cut in 0..bytes.len() {
            assert!(decode_blocks(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn version_1_blocks_still_decode() {
        let p = Projection::of(&events());
        let bytes = v1::encode_blocks(p.blocks.iter());
        assert_same(&decode_blocks(&bytes).unwrap(), &p.blocks);
        assert_eq!(block_directory(&bytes).unwrap(), block_directory(&encode_blocks(p.blocks.iter())).unwrap());
        for cut in 0..bytes.len() {
            assert!(decode_blocks(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode_blocks(&[3, 0]).is_err(), "an unknown version is refused");
    }

    #[test]
    fn numbers_with_three_decimals_or_fewer_are_stored_as_thousandths() {
        for v in [0.0, 1.0, -1.0, 21.5, 23.47, 0.001, -0.07, 123_456.789] {
            assert_eq!(thousandths(v).map(milli_f64), Some(v), "{v}");
        }
        for v in [-0.0, f64::NAN, f64::INFINITY, 0.1 + 0.2, 1.0001, f64::MIN_POSITIVE, 1e300] {
            assert_eq!(thousandths(v), None, "{v}");
        }
    }

    /// The simulator's readings (two decimals, one sensor in 2,000, an
    /// identifying field in meta, a unit on a third of them) take under a
    /// third of version 1's bytes.
    #[test]
    fn readings_from_a_fleet_take_a_few_bytes_each() {
        let (mut value, mut readings) = (20.0f64, Vec::new());
        for i in 0..500i64 {
            value += [0.37, -0.52, 0.11, -0.08][i as usize % 4];
            let mut r =
                Reading::number(tag("brasil.sul.s1"), 1_700_000_000_000 + i * 1_000, (value * 100.0).round() / 100.0);
            // The simulator's three payload shapes keep one identifying field each.
            let (key, id) = [("tag", "brasil.sul.s1"), ("equipmentId", "s1"), ("device_id", "s1")][i as usize % 3];
            r.meta.insert(key.to_owned(), id.to_owned());
            r.unit = (i % 3 == 2).then(|| "kWh".to_owned());
            readings.push(r);
        }
        let events = stored(readings, |i| EventId { seq: 4_000_000 + 2_000 * i, idx: 0 });
        let p = Projection::of(&events);
        let (v2, v1) = (encode_blocks(p.blocks.iter()), v1::encode_blocks(p.blocks.iter()));
        assert_same(&decode_blocks(&v2).unwrap(), &p.blocks);
        let per_event = |bytes: &[u8]| bytes.len() as f64 / events.len() as f64;
        assert!(per_event(&v2) < 11.5, "{} bytes an event", per_event(&v2));
        assert!(per_event(&v2) * 3.0 < per_event(&v1), "{} against {}", per_event(&v2), per_event(&v1));
    }

    /// Places are the order of first appearance whether found by comparing
    /// (a few distinct values) or by hash (many), so decoding names the same.
    #[test]
    fn distinct_values_keep_their_places_past_the_scan() {
        let values: Vec<String> = (0..40).map(|i| format!("v{i}")).collect();
        let mut seen = Seen::<str>::default();
        for (i, v) in values.iter().enumerate() {
            assert_eq!(seen.place(v), None, "{v} is new");
            for (j, w) in values[..=i].iter().enumerate().rev() {
                assert_eq!(seen.place(w), Some(j as u64), "{w} after {} values", i + 1);
            }
        }
        let mut many = Vec::new();
        for i in 0..30 {
            let mut r = Reading::number(tag("brasil.sul.s1"), 1_700_000_000_000 + i, 1.0);
            r.meta.insert("n".into(), (i % 12).to_string());
            r.unit = Some(format!("u{}", i % 10));
            many.push(r);
        }
        let p = Projection::of(&stored(many, |i| EventId { seq: 1 + i, idx: 0 }));
        assert_same(&decode_blocks(&encode_blocks(p.blocks.iter())).unwrap(), &p.blocks);
    }

    /// Version 1's writer, as it was, to make the payloads older stores hold.
    mod v1 {
        use super::super::*;

        pub(super) fn encode_blocks<'a>(blocks: impl ExactSizeIterator<Item = &'a Block>) -> Vec<u8> {
            let mut e = Enc::default();
            e.u8(V1);
            e.uv(blocks.len() as u64);
            for b in blocks {
                let mut s = Enc::default();
                s.iv(b.start_ms);
                for i in 0..b.len() {
                    s.uv(b.seq[i]);
                    s.uv(u64::from(b.idx[i]));
                    s.iv(b.ts[i].wrapping_sub(b.start_ms));
                    let flags = if b.status[i] == Status::Error { ERROR } else { 0 };
                    let flags = flags | if b.backfill[i] { BACKFILL } else { 0 };
                    match b.value[i] {
                        Some(v) => {
                            s.u8(flags | NUMBER);
                            s.f64(v);
                        }
                        None => s.u8(flags),
                    }
                }
                s.uv(b.extra.len() as u64);
                for x in &b.extra {
                    s.uv(u64::from(x.i));
                    s.opt_str(x.text.as_deref());
                    s.opt_str(x.unit.as_deref());
                    s.opt_str(x.reason.as_deref());
                    match &x.raw {
                        None => s.u8(0),
                        Some(raw) => {
                            s.u8(1);
                            s.bytes(raw);
                        }
                    }
                    s.uv(x.meta.len() as u64);
                    for (k, v) in &x.meta {
                        s.str(k);
                        s.str(v);
                    }
                }
                e.str(&b.tag);
                e.uv(b.len() as u64);
                e.bytes(&s.buf);
            }
            e.buf
        }
    }
}
