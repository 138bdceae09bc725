//! Property: any byte string published to a valid subject is stored exactly
//! once, as a reading or as an error that keeps the bytes and says why.
//!
//! Payloads are generated from a seed (printed on failure; set
//! `VIGIA_PROPERTY_SEED` to replay one): random bytes, JSON-like token soup,
//! mutations of valid payloads, and hand-picked edge cases.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vigia_bus::READINGS;
use vigia_domain::Status;

use crate::common::{TestEnv, assert_consistent, persister_only};

const TAGS: [&str; 4] = ["brasil.sul.p1", "brasil.sudeste.p2", "plant1.line1.p3", "meters.m4"];
const TOKENS: [&str; 24] = [
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    "\"value\"",
    "\"valor\"",
    "\"timestamp\"",
    "\"unit\"",
    "\"tag\"",
    "42.5",
    "-1e309",
    "1e400",
    "null",
    "true",
    "\"abc\"",
    "\"\\u0000\"",
    "\"2026-11-23T00:00:00Z\"",
    "1700000000",
    " ",
    "\"ção\"",
    "\u{fffd}",
    "\\",
];
const VALID: [&str; 4] = [
    r#"{"value": 42.5}"#,
    r#"{"timestamp": 1539112021301, "tag": "brasil.sudeste.sensor01", "valor": "42"}"#,
    r#"{"value": 55, "unit": "kWh", "timestamp": 1700000001}"#,
    "17.25",
];

fn payloads(rng: &mut StdRng, n: usize) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = vec![
        Vec::new(),
        b" \n\t".to_vec(),
        b"\xff\xfe\x00garbage".to_vec(),
        b"\"\"".to_vec(),
        "[".repeat(10_000).into_bytes(),
        format!(r#"{{"value": "{}"}}"#, "x".repeat(300_000)).into_bytes(),
        vec![0u8; 4096],
    ];
    while out.len() < n {
        let p = match rng.random_range(0..3) {
            0 => (0..rng.random_range(0..200)).map(|_| rng.random::<u8>()).collect(),
            1 => (0..rng.random_range(1..30))
                .map(|_| TOKENS[rng.random_range(0..TOKENS.len())])
                .collect::<String>()
                .into_bytes(),
            _ => {
                let mut p = VALID[rng.random_range(0..VALID.len())].as_bytes().to_vec();
                for _ in 0..rng.random_range(1..4) {
                    let at = rng.random_range(0..p.len());
                    match rng.random_range(0..3) {
                        0 => p[at] = rng.random(),
                        1 => p.insert(at, rng.random()),
                        _ => {
                            p.remove(at);
                        }
                    }
                    if p.is_empty() {
                        break;
                    }
                }
                p
            }
        };
        out.push(p);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_bytes_on_a_valid_subject_are_stored_exactly_once() {
    let seed =
        std::env::var("VIGIA_PROPERTY_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random::<u64>);
    let mut rng = StdRng::seed_from_u64(seed);
    let env = TestEnv::start_alone().await;
    let running = env.run(persister_only());

    let mut published: BTreeMap<u64, (&str, Vec<u8>)> = BTreeMap::new();
    for payload in payloads(&mut rng, 400) {
        let tag = TAGS[rng.random_range(0..TAGS.len())];
        let seq = env.publish_raw(tag, &payload).await;
        published.insert(seq, (tag, payload));
    }
    env.drained(READINGS, "persister").await;

    let events = env.store.all_events().await.expect("events");
    assert_eq!(events.len(), published.len(), "one event per message (seed {seed})");
    let mut seen = BTreeMap::new();
    for e in &events {
        assert_eq!(e.id.idx, 0, "a device message is one reading (seed {seed})");
        assert!(seen.insert(e.id.seq, ()).is_none(), "message {} stored twice (seed {seed})", e.id.seq);
        let (tag, payload) = published.get(&e.id.seq).unwrap_or_else(|| panic!("event {} was never published", e.id));
        let r = &e.reading;
        assert_eq!(r.tag.as_str(), *tag, "seed {seed}");
        match r.status {
            Status::Error => {
                assert!(r.reason.as_deref().is_some_and(|s| !s.is_empty()), "an error says why (seed {seed})");
                assert_eq!(r.raw.as_deref(), Some(payload.as_slice()), "an error keeps its bytes (seed {seed})");
            }
            Status::Ok => assert!(r.raw.is_none(), "seed {seed}"),
        }
    }
    assert_eq!(assert_consistent(&env.store).await, published.len() as u64);
    running.shutdown().await;
}
