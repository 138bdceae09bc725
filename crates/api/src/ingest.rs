//! `POST /api/v1/events`: readings in through the log.
//!
//! The API never writes the store. It validates, turns the body into
//! `ReadingsRecorded` batches (one per root) and answers with the stream
//! sequences and event ids once JetStream has stored them. Batches of
//! concurrent requests share log messages ([`vigia_bus::GroupPublisher`]):
//! the persister's cost is per message, so a crowd of small requests costs
//! a few messages, not one each. `Idempotency-Key` becomes the JetStream
//! message id, so a keyed request goes alone and a retry is stored once;
//! `?wait=true` holds the answer until the persister has stored the messages.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json_;
use utoipa::{IntoParams, ToSchema};
use vigia_domain::{BatchItem, EventId, ItemValue, Tag, batch_subject, parse_timestamp};

use crate::{ApiState, Problem};

/// The most readings one request may carry.
pub(crate) const MAX_READINGS: usize = 10_000;
/// How long `?wait=true` waits for the persister.
const WAIT_LIMIT: Duration = Duration::from_secs(10);

/// One reading as posted.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"tag": "brasil.sudeste.sensor01", "value": 42.5, "timestamp": "2026-11-23T10:00:00Z", "unit": "C"}))]
pub(crate) struct ReadingIn {
    #[schema(schema_with = crate::wire::reading_tag_schema)]
    pub tag: String,
    /// A number, a numeric string, a text, or null/absent (stored with status `error`).
    #[serde(default, alias = "valor")]
    #[schema(value_type = crate::wire::ReadingValue)]
    pub value: Option<Json_>,
    /// Unix milliseconds, unix seconds or RFC 3339 with an offset; the broker's time when absent.
    #[serde(default)]
    #[schema(value_type = crate::wire::TimeIn)]
    pub timestamp: Option<Json_>,
    #[serde(default)]
    pub unit: Option<String>,
    /// Free metadata kept with the event (device ids, firmware...).
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct IngestParams {
    /// Answer only once the persister has stored the readings (read-your-writes).
    #[serde(default)]
    wait: bool,
}

/// What the log said about one published message.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Published {
    /// Stream sequence of the message (shared with other requests when they were published together).
    seq: u64,
    /// True when the `Idempotency-Key` had already been stored: nothing new was written.
    duplicate: bool,
    /// Ids of the events this message carries.
    ids: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Accepted {
    /// Readings accepted.
    events: usize,
    messages: Vec<Published>,
    /// True once the persister has stored every message (only with `?wait=true`).
    stored: bool,
}

/// Record readings: one object or an array of up to 10,000.
///
/// A reading's tag must start with one of the server's configured roots; the
/// document this server serves at `/openapi.json` states them in the `tag` pattern.
/// `valor` is accepted as a synonym of `value` for older devices.
#[utoipa::path(
    post,
    path = "/events",
    tag = "events",
    params(IngestParams, ("Idempotency-Key" = Option<String>, Header,
        description = "Retry-safe key of 1 to 200 visible ASCII characters: a request repeated with the same key is stored once",
        pattern = r"^[!-~](?:[\t -~]{0,198}[!-~])?$")),
    request_body(content = crate::wire::ReadingsIn, description = "One reading, or an array of 1 to 10,000",
        example = json!([{"tag": "brasil.sudeste.sensor01", "value": 42.5, "timestamp": 1700000000000i64},
                         {"tag": "brasil.sul.sensor07", "value": "17,5"}])),
    responses(
        (status = 201, description = "Stored (with `?wait=true`)", body = Accepted),
        (status = 202, description = "In the log; the persister will store it", body = Accepted),
        (status = 400, description = "A reading is invalid, or the array is empty", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Over 10,000 readings or 8 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The log did not confirm the publish, or the store is further behind the log than \
            `[backpressure]` allows (with `Retry-After` and the lag)", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "In the log, but not stored within 10 s", body = Problem, content_type = "application/problem+json")
    )
)]
pub(crate) async fn post_events(
    State(state): State<ApiState>,
    Query(params): Query<IngestParams>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<Accepted>), Problem> {
    let body = body.map_err(|e| {
        Problem::new(
            e.status(),
            format!(
                "{}: bodies are at most {} bytes; split the readings over several requests",
                e.body_text(),
                crate::MAX_BODY
            ),
        )
    })?;
    let readings = parse_body(&body)?;
    state.pressure.admit(&state.bus).await?;
    let mut by_root: BTreeMap<String, (Vec<Tag>, Vec<BatchItem>)> = BTreeMap::new();
    for (i, r) in readings.into_iter().enumerate() {
        let (tag, item) = validate(r, &state.roots).map_err(|p| at(p, i))?;
        let entry = by_root.entry(tag.root().to_owned()).or_default();
        entry.0.push(tag);
        entry.1.push(item);
    }
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(v.to_str().ok().filter(|k| !k.is_empty() && k.len() <= 200).ok_or_else(|| {
            Problem::new(StatusCode::BAD_REQUEST, "Idempotency-Key must be 1 to 200 visible ASCII characters")
                .field("Idempotency-Key")
        })?),
    };
    let several = by_root.len() > 1;
    let total: usize = by_root.values().map(|(_, items)| items.len()).sum();
    let unwritten = |e: vigia_bus::PublishError| {
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, format!("{e}; nothing was written, retry the request"))
    };
    let mut messages = Vec::new();
    let mut events = 0;
    for (root, (tags, items)) in by_root {
        let n = items.len();
        let (stored, first_idx) = match key {
            // Keyed requests are deduplicated as whole messages, so they go alone.
            Some(k) => {
                let subject = batch_subject(&tags).map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e.to_string()))?;
                let (h, payload) = vigia_bus::Publisher::batch_message(&items);
                let id = if several { format!("{k}:{root}") } else { k.to_owned() };
                (
                    state
                        .bus
                        .publisher()
                        .publish(subject, Some(h), payload, Some(id.as_str()))
                        .await
                        .map_err(unwritten)?,
                    0,
                )
            }
            None => {
                let bytes = body.len() * n / total.max(1);
                let placed = state.group().publish(vigia_bus::Part { tags, items, bytes }).await.map_err(unwritten)?;
                (vigia_bus::Stored { seq: placed.seq, duplicate: false }, placed.first_idx)
            }
        };
        events += n;
        let ids = (0..n as u32).map(|i| EventId { seq: stored.seq, idx: first_idx + i }.to_string()).collect();
        messages.push(Published { seq: stored.seq, duplicate: stored.duplicate, ids });
    }
    if !params.wait {
        return Ok((StatusCode::ACCEPTED, Json(Accepted { events, messages, stored: false })));
    }
    let seqs: Vec<u64> = messages.iter().map(|m| m.seq).collect();
    wait_stored(&state, &seqs).await?;
    Ok((StatusCode::CREATED, Json(Accepted { events, messages, stored: true })))
}

/// Polls the persister's ledger until it holds every sequence.
pub(crate) async fn wait_stored(state: &ApiState, seqs: &[u64]) -> Result<(), Problem> {
    let deadline = tokio::time::Instant::now() + WAIT_LIMIT;
    loop {
        let ledger = state.store.ledger(vigia_store::READINGS_LEDGER).await.map_err(crate::store_problem)?;
        if seqs.iter().all(|s| ledger.contains(*s)) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Problem::new(
                StatusCode::GATEWAY_TIMEOUT,
                "the readings are in the log but the persister has not stored them within 10 s; \
                 they will be stored: check /health for consumer lag",
            ));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn parse_body(body: &[u8]) -> Result<Vec<ReadingIn>, Problem> {
    let bad = |detail: String| Problem::new(StatusCode::BAD_REQUEST, detail);
    if let Some(readings) = parse_valid(body) {
        return match readings.len() {
            0 => Err(bad("the array is empty: send at least one reading".into())),
            n if n > MAX_READINGS => Err(too_many(n)),
            _ => Ok(readings),
        };
    }
    parse_tree(body)
}

/// The body through a JSON tree, item by item, to say which reading is wrong and how.
fn parse_tree(body: &[u8]) -> Result<Vec<ReadingIn>, Problem> {
    let bad = |detail: String| Problem::new(StatusCode::BAD_REQUEST, detail);
    let json: Json_ = serde_json::from_slice(body)
        .map_err(|e| bad(format!("the body is not JSON ({e}): send a reading object or an array of them")))?;
    let items = match json {
        Json_::Array(items) => items,
        one @ Json_::Object(_) => vec![one],
        _ => return Err(bad("send a reading object or an array of them".into())),
    };
    if items.is_empty() {
        return Err(bad("the array is empty: send at least one reading".into()));
    }
    if items.len() > MAX_READINGS {
        return Err(too_many(items.len()));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            if !item.is_object() {
                return Err(at(bad("a reading is an object: {\"tag\", \"value\", \"timestamp\", \"unit\", \"meta\"}".into()), i));
            }
            serde_json::from_value(item).map_err(|e| {
                at(
                    bad(format!(
                        "{e}: a reading has `tag`, `value` (or `valor`), `timestamp`, `unit` and `meta`; only `tag` is required"
                    )),
                    i,
                )
            })
        })
        .collect()
}

/// The body straight into readings, without a JSON tree in between; `None`
/// when it does not parse, and [`parse_body`] then finds what is wrong and
/// where. Most bodies are valid, so most pay for one parse.
fn parse_valid(body: &[u8]) -> Option<Vec<ReadingIn>> {
    match body.iter().find(|b| !b.is_ascii_whitespace())? {
        b'[' => serde_json::from_slice(body).ok(),
        b'{' => serde_json::from_slice(body).ok().map(|one| vec![one]),
        _ => None,
    }
}

fn too_many(n: usize) -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("{n} readings in one request; send at most {MAX_READINGS} per request"),
    )
}

/// Prefixes the field of a problem with the reading's index in the array.
fn at(mut p: Problem, i: usize) -> Problem {
    p.field = Some(match p.field {
        Some(f) => format!("[{i}].{f}"),
        None => format!("[{i}]"),
    });
    p
}

pub(crate) fn validate(r: ReadingIn, roots: &[String]) -> Result<(Tag, BatchItem), Problem> {
    let bad = |field: &str, detail: String| Problem::new(StatusCode::BAD_REQUEST, detail).field(field);
    let tag = Tag::parse(&r.tag).map_err(|e| {
        bad("tag", format!("{e}: a tag is 2 to 8 dot-separated tokens of [A-Za-z0-9_-], e.g. brasil.sudeste.sensor01"))
    })?;
    if !roots.iter().any(|root| root == tag.root()) {
        return Err(bad(
            "tag",
            format!(
                "`{}` is outside the configured roots ({}): use one of them as the first token",
                tag,
                roots.join(", ")
            ),
        ));
    }
    let ts = match r.timestamp {
        None | Some(Json_::Null) => None,
        Some(Json_::Number(n)) => {
            // JSON numbers past 2^53 lose digits on the way; the document says to send those as text.
            if !n.as_f64().is_some_and(|v| (0.0..=crate::wire::MAX_NUMERIC_TIME as f64).contains(&v)) {
                return Err(bad(
                    "timestamp",
                    format!(
                        "{n} is not a numeric time from 0 to {}: send unix seconds or milliseconds, \
                         or larger values (nanoseconds) as a string",
                        crate::wire::MAX_NUMERIC_TIME
                    ),
                ));
            }
            Some(parse_timestamp(&n.to_string()).map_err(|e| bad("timestamp", e))?)
        }
        Some(Json_::String(s)) => Some(parse_timestamp(&s).map_err(|e| bad("timestamp", e))?),
        Some(_) => {
            return Err(bad("timestamp", "use unix milliseconds, unix seconds or RFC 3339 with an offset".into()));
        }
    };
    if ts.is_some_and(|ms| ms > crate::wire::LAST_MS) {
        return Err(bad("timestamp", "the time is past the year 9999".into()));
    }
    let value = match r.value {
        None | Some(Json_::Null) => None,
        Some(Json_::Number(n)) => n.as_f64().map(ItemValue::Number),
        Some(Json_::String(s)) => Some(ItemValue::Text(s)),
        Some(_) => return Err(bad("value", "use a number, a string, or null".into())),
    };
    Ok((tag.clone(), BatchItem { tag: tag.to_string(), ts, value, unit: r.unit, meta: r.meta }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_direct_parse_reads_what_the_tree_reads() {
        let bodies = [
            r#"{"tag":"brasil.sul.s1","value":1.5,"timestamp":1700000000000}"#,
            r#" [{"tag":"brasil.sul.s1","valor":"17,5","unit":"C","meta":{"fw":"2"}},{"tag":"brasil.sul.s2","value":null}]"#,
            r#"[{"tag":"brasil.sul.s1","value":18446744073709551615,"timestamp":"2026-11-23T10:00:00-03:00"}]"#,
        ];
        for body in bodies {
            let direct = parse_valid(body.as_bytes()).unwrap_or_else(|| panic!("{body} parses directly"));
            let tree = parse_tree(body.as_bytes()).unwrap_or_else(|p| panic!("{body}: {}", p.detail));
            assert_eq!(format!("{direct:?}"), format!("{tree:?}"), "{body}");
        }
    }

    #[test]
    fn what_the_direct_parse_refuses_the_tree_explains() {
        for body in [r#"[{"tag":"a.b","colour":1}]"#, r#"[1]"#, r#"{"value":1}"#, "7", "[{", ""] {
            assert!(parse_valid(body.as_bytes()).is_none(), "{body}");
            assert_eq!(parse_body(body.as_bytes()).unwrap_err().status, 400, "{body}");
        }
        assert_eq!(parse_body(b"[]").unwrap_err().status, 400);
        let many = format!("[{}]", vec![r#"{"tag":"brasil.sul.s1"}"#; MAX_READINGS + 1].join(","));
        assert_eq!(parse_body(many.as_bytes()).unwrap_err().status, 413);
    }
}
