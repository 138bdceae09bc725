//! `/api/v1/stats/*`: aggregates read from rollups and traffic buckets, never
//! from a scan of the events (except the mode, which needs the values).

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use vigia_domain::{RollupGrain, Tag, Value, is_under, parse_timestamp};

use crate::{ApiState, Problem};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn bad(field: &str, detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, detail).field(field)
}

fn window_ms(w: &str) -> Result<i64, Problem> {
    match w {
        "1h" => Ok(HOUR),
        "24h" => Ok(DAY),
        "48h" => Ok(2 * DAY),
        "7d" | "1w" => Ok(7 * DAY),
        "30d" | "1mo" => Ok(30 * DAY),
        _ => Err(bad("window", format!("`{w}` is not a window: use 1h, 24h, 48h, 7d or 30d"))),
    }
}

fn grain(bucket: &str) -> Result<RollupGrain, Problem> {
    match bucket {
        "1m" => Ok(RollupGrain::Minute),
        "1h" => Ok(RollupGrain::Hour),
        "1d" => Ok(RollupGrain::Day),
        _ => Err(bad("bucket", format!("`{bucket}` is not a bucket: use 1m, 1h or 1d"))),
    }
}

/// A time parameter. Times past [`crate::wire::LAST_MS`] select nothing
/// more, so they are capped there, which keeps the bucket arithmetic far
/// from overflow.
fn time(field: &str, v: Option<&str>) -> Result<Option<i64>, Problem> {
    v.map(|s| parse_timestamp(s).map(|ms| ms.min(crate::wire::LAST_MS)).map_err(|e| bad(field, e))).transpose()
}

/// A range too long to answer: the request fits the document but asks for
/// more buckets than one answer holds (422, like a query that scans too much).
fn too_many_buckets() -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        format!("more than {} buckets: use a coarser bucket or a shorter range", vigia_store::MAX_BUCKETS),
    )
    .field("from")
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AverageParams {
    #[serde(default, deserialize_with = "crate::wire::empty_as_none")]
    #[param(value_type = Option<crate::wire::WindowParam>, inline)]
    window: Option<String>,
    /// Only sensors under this prefix.
    #[param(value_type = Option<crate::wire::PrefixParam>, inline)]
    prefix: Option<String>,
}

/// Mean, min, max and count of one sensor's numeric readings in the window.
#[derive(Debug, Serialize, ToSchema, PartialEq)]
pub(crate) struct SensorAverage {
    tag: String,
    mean: f64,
    min: f64,
    max: f64,
    count: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Averages {
    window: String,
    /// Window start, unix ms (aligned down to the hour).
    from: i64,
    to: i64,
    sensors: Vec<SensorAverage>,
}

/// Per-sensor averages over a window, from the rollups.
///
/// Whole days come from day rollups and the partial days at both ends from
/// hour rollups: a month over 2,000 sensors reads a few hundred shard
/// records and folds their ~150,000 per-sensor entries as they arrive.
#[utoipa::path(get, path = "/stats/averages", tag = "aggregates", params(AverageParams),
    responses((status = 200, body = Averages),
        (status = 400, description = "A bad window or prefix", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store did not answer", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn averages(
    State(state): State<ApiState>,
    Query(p): Query<AverageParams>,
) -> Result<Json<Averages>, Problem> {
    let window = p.window.unwrap_or_else(|| "24h".into());
    let span = window_ms(&window)?;
    let prefix = crate::wire::prefix("prefix", p.prefix.as_deref())?;
    let to = now_ms();
    let from = (to - span).div_euclid(HOUR) * HOUR;
    let sensors = state
        .store
        .summaries_under(prefix.as_deref(), from, to)
        .await
        .map_err(crate::store_problem)?
        .into_iter()
        .map(|(tag, s)| SensorAverage { tag, mean: s.sum / s.count as f64, min: s.min, max: s.max, count: s.count })
        .collect();
    Ok(Json(Averages { window, from, to, sensors }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SeriesParams {
    /// The sensor's tag.
    #[param(value_type = crate::wire::TagParam, inline)]
    tag: String,
    #[serde(default, deserialize_with = "crate::wire::empty_as_none")]
    #[param(value_type = Option<crate::wire::SeriesBucketParam>, inline)]
    bucket: Option<String>,
    /// Start. Empty or absent: 60 buckets before `to`.
    #[serde(default, deserialize_with = "crate::wire::empty_as_none")]
    #[param(value_type = Option<crate::wire::TimeParam>, inline)]
    from: Option<String>,
    /// End, exclusive. Empty or absent: now.
    #[serde(default, deserialize_with = "crate::wire::empty_as_none")]
    #[param(value_type = Option<crate::wire::TimeParam>, inline)]
    to: Option<String>,
}

/// One bucket of a series.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Point {
    /// Bucket start, unix ms.
    t: i64,
    count: i64,
    mean: f64,
    min: f64,
    max: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Series {
    tag: String,
    bucket: String,
    from: i64,
    to: i64,
    /// Buckets with at least one numeric reading, oldest first.
    points: Vec<Point>,
}

/// A sensor's time series in buckets, from the rollups.
///
/// A range that ends before it starts has no buckets. A range of more than
/// 20,000 buckets is refused with `422`: use a coarser bucket.
#[utoipa::path(get, path = "/stats/series", tag = "aggregates", params(SeriesParams),
    responses((status = 200, body = Series),
        (status = 400, description = "A bad tag, bucket or time", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "More than 20,000 buckets", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store did not answer", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn series(
    State(state): State<ApiState>,
    Query(p): Query<SeriesParams>,
) -> Result<Json<Series>, Problem> {
    let tag = Tag::parse(&p.tag)
        .map_err(|e| bad("tag", format!("{e}: give one sensor's tag, e.g. brasil.sudeste.sensor01")))?;
    let bucket = p.bucket.unwrap_or_else(|| "1m".into());
    let g = grain(&bucket)?;
    let to = time("to", p.to.as_deref())?.unwrap_or_else(now_ms);
    let from = time("from", p.from.as_deref())?.unwrap_or(to.saturating_sub(60 * g.millis()));
    if to.saturating_sub(from) / g.millis() > vigia_store::MAX_BUCKETS {
        return Err(too_many_buckets());
    }
    let rows = if from < to {
        state
            .store
            .rollups_of(&[tag.to_string()], g.as_str(), g.millis(), from, to)
            .await
            .map_err(crate::store_problem)?
    } else {
        Vec::new()
    };
    let points = rows
        .into_iter()
        .map(|r| Point { t: r.bucket, count: r.count, mean: r.sum / r.count.max(1) as f64, min: r.min, max: r.max })
        .collect();
    Ok(Json(Series { tag: tag.to_string(), bucket, from, to, points }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RateParams {
    #[serde(default, deserialize_with = "crate::wire::empty_as_none")]
    #[param(value_type = Option<crate::wire::RateBucketParam>, inline)]
    bucket: Option<String>,
    /// Start. Empty or absent: 60 buckets before `to`.
    #[serde(default, deserialize_with = "crate::wire::empty_as_none")]
    #[param(value_type = Option<crate::wire::TimeParam>, inline)]
    from: Option<String>,
    /// End, exclusive. Empty or absent: now.
    #[serde(default, deserialize_with = "crate::wire::empty_as_none")]
    #[param(value_type = Option<crate::wire::TimeParam>, inline)]
    to: Option<String>,
}

/// Events in one bucket, all roots, by status.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RatePoint {
    t: i64,
    ok: i64,
    errors: i64,
    total: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Rate {
    bucket: String,
    from: i64,
    to: i64,
    /// Every bucket in the range, empty ones with zeros, oldest first.
    points: Vec<RatePoint>,
}

/// Events per minute (or hour), every reading counted, errors included.
///
/// A range that ends before it starts has no buckets. A range of more than
/// 20,000 buckets is refused with `422`: use a coarser bucket.
#[utoipa::path(get, path = "/stats/rate", tag = "aggregates", params(RateParams),
    responses((status = 200, body = Rate),
        (status = 400, description = "A bad bucket or time", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "More than 20,000 buckets", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store did not answer", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn rate(State(state): State<ApiState>, Query(p): Query<RateParams>) -> Result<Json<Rate>, Problem> {
    let bucket = p.bucket.unwrap_or_else(|| "1m".into());
    let g = match grain(&bucket)? {
        RollupGrain::Day => return Err(bad("bucket", "the rate comes in 1m or 1h buckets")),
        g => g,
    };
    let to = time("to", p.to.as_deref())?.unwrap_or_else(now_ms);
    let from = g.floor(time("from", p.from.as_deref())?.unwrap_or(to.saturating_sub(60 * g.millis())));
    if to.saturating_sub(from) / g.millis() > vigia_store::MAX_BUCKETS {
        return Err(too_many_buckets());
    }
    let rows = if from < to {
        state.store.traffic(g.as_str(), from, to).await.map_err(crate::store_problem)?
    } else {
        Vec::new()
    };
    let mut by_bucket: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    let mut t = from;
    while t < to {
        by_bucket.insert(t, (0, 0));
        t += g.millis();
    }
    for r in rows {
        let e = by_bucket.entry(r.bucket).or_default();
        e.0 += r.ok;
        e.1 += r.errors;
    }
    let points =
        by_bucket.into_iter().map(|(t, (ok, errors))| RatePoint { t, ok, errors, total: ok + errors }).collect();
    Ok(Json(Rate { bucket, from, to, points }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ModeParams {
    /// Only sensors under this prefix.
    #[param(value_type = Option<crate::wire::PrefixParam>, inline)]
    prefix: Option<String>,
    #[serde(default, deserialize_with = "crate::wire::empty_as_none")]
    #[param(value_type = Option<crate::wire::WindowParam>, inline)]
    window: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Bin {
    /// The value as text (`42`, `17.5`, `open`).
    value: String,
    count: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Mode {
    window: String,
    /// The most frequent value (ties: the first in text order), none when no readings.
    mode: Option<String>,
    /// Events counted (ok readings with a value).
    count: u64,
    /// The 20 most frequent values, most frequent first.
    histogram: Vec<Bin>,
}

/// The most frequent value in a window, with a histogram. This one scans the
/// window's time blocks (values only): rollups cannot hold a mode.
#[utoipa::path(get, path = "/stats/mode", tag = "aggregates", params(ModeParams),
    responses((status = 200, body = Mode),
        (status = 400, description = "A bad window or prefix", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Too many events in the window: narrow it", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store did not answer", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn mode(State(state): State<ApiState>, Query(p): Query<ModeParams>) -> Result<Json<Mode>, Problem> {
    let window = p.window.unwrap_or_else(|| "24h".into());
    let span = window_ms(&window)?;
    let prefix = crate::wire::prefix("prefix", p.prefix.as_deref())?;
    let to = now_ms();
    let from = to - span;
    let events = state
        .store
        .events_window(prefix.as_deref(), Some(from), Some(to), crate::SCAN_CAP)
        .await
        .map_err(crate::store_problem)?;
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut count = 0;
    let in_window = |e: &&vigia_domain::StoredEvent| {
        let r = &e.reading;
        let ok = r.status == vigia_domain::Status::Ok;
        ok && r.ts_ms >= from && r.ts_ms < to && prefix.as_deref().is_none_or(|p| is_under(r.tag.as_str(), p))
    };
    for e in events.iter().filter(in_window) {
        let key = match &e.reading.value {
            Value::Number(n) => n.to_string(),
            Value::Text(t) => t.clone(),
            Value::Empty => continue,
        };
        *counts.entry(key).or_default() += 1;
        count += 1;
    }
    let mut bins: Vec<Bin> = counts.into_iter().map(|(value, count)| Bin { value, count }).collect();
    bins.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
    bins.truncate(20);
    Ok(Json(Mode { window, mode: bins.first().map(|b| b.value.clone()), count, histogram: bins }))
}
