//! The device simulator: a fleet of sensors publishing realistic readings to
//! JetStream with acknowledgements and bounded in-flight publishes.
//!
//! Readings walk randomly inside a range, a configurable share arrive empty
//! (they must be stored as errors), and device payloads rotate through the
//! shapes real fleets send. In batch mode readings travel as
//! `ReadingsRecorded` envelopes, the fast path for load tests.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;
use vigia_bus::{HeaderMap, Subject};
use vigia_bus::{PublishAckFuture, PublishError, Publisher};
use vigia_domain::{BatchItem, ItemValue, Tag, batch_subject};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub sensors: usize,
    /// Readings per sensor per second; 0 publishes as fast as acknowledged.
    pub rate: f64,
    pub roots: Vec<String>,
    pub regions: Vec<String>,
    pub min: f64,
    pub max: f64,
    /// Share of readings sent with an empty value.
    pub error_ratio: f64,
    /// Stop after this many readings.
    pub count: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Readings per message; 0 or 1 sends one device payload per message.
    pub batch: usize,
    /// Publishes awaiting acknowledgement at once.
    pub max_in_flight: usize,
    pub seed: Option<u64>,
    /// Give each message a `Nats-Msg-Id` and resend it until confirmed (the
    /// stream stores a resent message once). Off, messages go out as
    /// `nats pub` and MQTT devices send them: no id, no resend.
    pub message_ids: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            sensors: 2000,
            rate: 1.0,
            roots: vec!["brasil".into()],
            regions: ["norte", "nordeste", "centro-oeste", "sudeste", "sul"].map(String::from).to_vec(),
            min: 10.0,
            max: 100.0,
            error_ratio: 0.01,
            count: None,
            duration: None,
            batch: 0,
            max_in_flight: 4096,
            seed: None,
            message_ids: true,
        }
    }
}

/// Why the simulator stopped early.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid simulator settings: {0}")]
    Config(String),
    #[error(transparent)]
    Publish(#[from] vigia_bus::PublishError),
}

/// What was published.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimReport {
    pub readings: u64,
    pub messages: u64,
    pub elapsed: Duration,
}

struct Sensor {
    tag: Tag,
    /// The tag as a subject, made once: each publish shares it.
    subject: Subject,
    value: f64,
}

/// The fleet's tags: `<root>.<region>.sensorNNNN`, spread over roots and regions.
pub fn fleet(config: &SimConfig) -> Result<Vec<Tag>, SimError> {
    if config.roots.is_empty() || config.regions.is_empty() {
        return Err(SimError::Config("give at least one root and one region".into()));
    }
    let places: Vec<(&String, &String)> =
        config.roots.iter().flat_map(|r| config.regions.iter().map(move |g| (r, g))).collect();
    let mut order: Vec<usize> = (0..config.sensors).collect();
    // Sensors of one root sit together so batches never straddle roots.
    order.sort_by_key(|i| (i % places.len()) / config.regions.len());
    order
        .into_iter()
        .map(|i| {
            let (root, region) = places[i % places.len()];
            Tag::parse(&format!("{root}.{region}.sensor{:04}", i + 1))
                .map_err(|e| SimError::Config(format!("root `{root}` or region `{region}`: {e}")))
        })
        .collect()
}

/// How long one message is retried (same message id, backoff) before the
/// simulator gives up: long enough to ride out a NATS restart or a leader
/// election, well inside the stream's 2-minute duplicate window.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Runs the simulator until `count`, `duration` or `stop`.
pub async fn run(publisher: Publisher, config: SimConfig, stop: CancellationToken) -> Result<SimReport, SimError> {
    let range_ok = config.min.partial_cmp(&config.max) == Some(std::cmp::Ordering::Less);
    if !range_ok || !(0.0..=1.0).contains(&config.error_ratio) || config.rate < 0.0 {
        return Err(SimError::Config("need min < max, 0 <= error-ratio <= 1 and rate >= 0".into()));
    }
    let mut rng = config.seed.map_or_else(StdRng::from_os_rng, StdRng::seed_from_u64);
    let mut sensors: Vec<Sensor> = fleet(&config)?
        .into_iter()
        .map(|tag| Sensor { subject: tag.as_str().into(), tag, value: rng.random_range(config.min..config.max) })
        .collect();
    if sensors.is_empty() {
        return Ok(SimReport { readings: 0, messages: 0, elapsed: Duration::ZERO });
    }
    let run_id: u32 = rng.random();
    let per_second = config.rate * sensors.len() as f64;
    let per_message = config.batch.max(1);
    let started = Instant::now();
    // Publishes without message ids, as fast as acknowledged, are sent at
    // once and their acks awaited oldest first, as the harness's JetStream
    // ceiling publishes: a task per publish (and a poll of thousands of
    // them) was a fifth of the simulated devices' CPU (docs/performance.md).
    // Resent publishes and paced ones stay tasks, so each is confirmed as
    // soon as it can be.
    let pipelined = !config.message_ids && per_second == 0.0;
    let mut acks: VecDeque<(Subject, PublishAckFuture)> = VecDeque::new();
    let mut chunk: Vec<(usize, Option<f64>)> = Vec::with_capacity(per_message);
    let mut in_flight = FuturesUnordered::new();
    let (mut readings, mut messages, mut next_sensor) = (0u64, 0u64, 0usize);
    let mut last_report = (Instant::now(), 0u64);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    'run: loop {
        if stop.is_cancelled() || config.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        // Readings due by now at the configured rate (all of a tick's worth when unlimited).
        let due = if per_second > 0.0 {
            tick.tick().await;
            (started.elapsed().as_secs_f64() * per_second) as u64
        } else {
            readings + (per_message * 64) as u64
        };
        let due = config.count.map_or(due, |c| due.min(c));
        while readings < due {
            let n = ((due - readings) as usize).min(per_message);
            let now_ms = chrono_now_ms();
            // A batch stays under one root: device permissions are per root.
            let root = (n > 1).then(|| sensors[next_sensor].tag.root().to_owned());
            chunk.clear();
            while chunk.len() < n && root.as_deref().is_none_or(|r| sensors[next_sensor].tag.root() == r) {
                let i = next_sensor;
                next_sensor = (next_sensor + 1) % sensors.len();
                let s = &mut sensors[i];
                let span = config.max - config.min;
                s.value = (s.value + rng.random_range(-0.05..0.05) * span).clamp(config.min, config.max);
                let v = (s.value * 100.0).round() / 100.0;
                chunk.push((i, (!rng.random_bool(config.error_ratio)).then_some(v)));
            }
            let n = chunk.len();
            let message_id = config.message_ids.then(|| format!("sim-{run_id:08x}-{messages}"));
            let (subject, headers, payload) = if config.batch > 1 {
                encode_batch(&sensors, &chunk, now_ms)
            } else {
                let (i, v) = chunk[0];
                let tag = &sensors[i].tag;
                (sensors[i].subject.clone(), None, device_payload(tag, v, now_ms, messages))
            };
            if pipelined {
                let ack = publisher.send(subject.clone(), headers, payload, None).await?;
                acks.push_back((subject, ack));
            } else {
                let p = publisher.clone();
                in_flight.push(async move {
                    match message_id {
                        Some(id) => p.publish_retrying(subject.to_string(), headers, payload, &id, PATIENCE).await,
                        None => p.publish(subject.to_string(), headers, payload, None).await,
                    }
                });
            }
            readings += n as u64;
            messages += 1;
            while acks.len() + in_flight.len() >= config.max_in_flight.max(1) {
                if let Some((subject, ack)) = acks.pop_front() {
                    confirmed(subject, ack).await?;
                } else if let Some(Err(e)) = in_flight.next().await {
                    return Err(e.into());
                }
            }
            if stop.is_cancelled() {
                break 'run;
            }
        }
        while let Some(Some(done)) = futures::FutureExt::now_or_never(in_flight.next()) {
            done?;
        }
        if last_report.0.elapsed() >= Duration::from_secs(5) {
            let rate = (readings - last_report.1) as f64 / last_report.0.elapsed().as_secs_f64();
            tracing::info!(rate = rate.round(), readings, messages, "Simulator publishing.");
            last_report = (Instant::now(), readings);
        }
        if config.count.is_some_and(|c| readings >= c) {
            break;
        }
    }
    for (subject, ack) in acks {
        confirmed(subject, ack).await?;
    }
    while let Some(done) = in_flight.next().await {
        done?;
    }
    let report = SimReport { readings, messages, elapsed: started.elapsed() };
    tracing::info!(readings, messages, secs = report.elapsed.as_secs_f64(), "Simulator stopped.");
    Ok(report)
}

/// Waits for a sent publish's acknowledgement.
async fn confirmed(subject: Subject, ack: PublishAckFuture) -> Result<(), PublishError> {
    match ack.await {
        Ok(_) => Ok(()),
        Err(e) => Err(PublishError { subject: subject.to_string(), reason: e.to_string() }),
    }
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// A device payload in one of the shapes fleets send (design input table).
///
/// Written directly rather than through `serde_json::Value`: in the
/// per-message harness the simulated devices share the machine with
/// everything they feed, and building a JSON tree per reading was a visible
/// part of their CPU (docs/performance.md). Tags are `[A-Za-z0-9_-.]` only,
/// so nothing needs escaping; values are finite (clamped to the range).
fn device_payload(tag: &Tag, value: Option<f64>, now_ms: i64, n: u64) -> Bytes {
    use std::fmt::Write;
    let device = tag.as_str().rsplit('.').next().unwrap_or_default();
    let mut json = String::with_capacity(96);
    let _ = match (n % 3, value) {
        (0, Some(v)) => write!(json, r#"{{"tag":"{tag}","timestamp":{now_ms},"valor":"{v}"}}"#),
        (0, None) => write!(json, r#"{{"tag":"{tag}","timestamp":{now_ms},"valor":""}}"#),
        (1, Some(v)) => write!(json, r#"{{"equipmentId":"{device}","timestamp":{now_ms},"value":{v}}}"#),
        (1, None) => write!(json, r#"{{"equipmentId":"{device}","timestamp":{now_ms},"value":null}}"#),
        (_, v) => {
            let secs = now_ms / 1000;
            match v {
                Some(v) => write!(json, r#"{{"device_id":"{device}","timestamp":{secs},"unit":"kWh","value":{v}}}"#),
                None => write!(json, r#"{{"device_id":"{device}","timestamp":{secs},"unit":"kWh","value":""}}"#),
            }
        }
    };
    Bytes::from(json)
}

type Message = (Subject, Option<HeaderMap>, Bytes);

fn encode_batch(sensors: &[Sensor], chunk: &[(usize, Option<f64>)], now_ms: i64) -> Message {
    let items: Vec<BatchItem> = chunk
        .iter()
        .map(|(i, v)| BatchItem {
            tag: sensors[*i].tag.to_string(),
            ts: Some(now_ms),
            value: v.map(ItemValue::Number),
            unit: None,
            meta: Default::default(),
        })
        .collect();
    let subject = batch_subject(chunk.iter().map(|(i, _)| &sensors[*i].tag)).expect("chunks hold readings of one root");
    let (headers, payload) = Publisher::batch_message(&items);
    (subject.into(), Some(headers), payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigia_domain::{LogEvent, Status, Value, decode_message};

    /// Each shape, with and without a value, is JSON that decodes to the
    /// reading the simulator meant, under the subject it is published to.
    #[test]
    fn device_payloads_decode_to_the_readings_they_carry() {
        let tag = Tag::parse("brasil.sudeste.sensor0042").unwrap();
        let now_ms = 1_700_000_123_456;
        for n in 0..3u64 {
            for value in [Some(42.5), Some(17.0), Some(0.01), None] {
                let payload = device_payload(&tag, value, now_ms, n);
                let json: serde_json::Value = serde_json::from_slice(&payload).expect("valid JSON");
                assert!(json.is_object(), "{json}");
                let readings = decode_message(tag.as_str(), None, None, &payload, now_ms).into_readings();
                assert_eq!(readings.len(), 1, "shape {n}");
                let r = &readings[0];
                assert_eq!(r.tag, tag);
                let expected_ts = if n == 2 { now_ms / 1000 * 1000 } else { now_ms };
                assert_eq!(r.ts_ms, expected_ts, "shape {n}: {json}");
                match value {
                    Some(v) => assert_eq!((r.status, &r.value), (Status::Ok, &Value::Number(v)), "shape {n}: {json}"),
                    None => assert_eq!(r.status, Status::Error, "shape {n}: {json}"),
                }
                assert!(matches!(decode_message(tag.as_str(), None, None, &payload, now_ms), LogEvent::Readings(..)));
            }
        }
    }
}
