//! `GET /api/v1/live`: server-sent events of what the log receives.
//!
//! Each client gets its own ephemeral, unacknowledged consumers on `READINGS`
//! (filtered by the tag pattern, which is a NATS subject filter) and `ALERTS`,
//! starting at the moment it connects. Readings are decoded the way the
//! persister decodes them, so the ids and values a client sees are the ones
//! that will be stored. Counter deltas are summed and sent once a second.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use utoipa::IntoParams;
use vigia_domain::{EventId, StoredEvent, TagPattern, decode_message};

use crate::events::EventOut;
use crate::{ApiState, Problem};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LiveParams {
    /// NATS-style tag pattern, e.g. `brasil.sudeste.*` or `brasil.>`; every tag when empty or absent.
    #[param(value_type = Option<crate::wire::LiveTagParam>, inline)]
    tag: Option<String>,
}

/// Live readings, alerts and counter deltas as server-sent events.
///
/// Event types: `reading` (an event as `GET /events/{id}` shows it), `alert`
/// (an `AlertOpened`/`AlertCleared`/`AlertAcknowledged` body), `counts`
/// (`{"<prefix>": {"ok": n, "errors": n}}` summed over the last second).
/// A comment line every 15 s keeps proxies from closing the stream.
#[utoipa::path(get, path = "/live", tag = "events", params(LiveParams),
    responses(
        (status = 200, description = "An event stream", content_type = "text/event-stream", body = String),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn live(
    State(state): State<ApiState>,
    Query(p): Query<LiveParams>,
) -> Result<Sse<impl futures::Stream<Item = Result<Event, Infallible>>>, Problem> {
    let filters: Vec<String> = match p.tag.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) => {
            TagPattern::parse(t).map_err(|e| {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    format!("{e}: use a pattern such as brasil.sudeste.* or brasil.>"),
                )
                .field("tag")
            })?;
            vec![t.to_owned()]
        }
        None => state.roots.iter().map(|r| format!("{r}.>")).collect(),
    };
    let unavailable =
        |e: vigia_bus::BusError| Problem::new(StatusCode::SERVICE_UNAVAILABLE, format!("{e}; retry shortly"));
    let mut readings = Vec::new();
    for f in &filters {
        readings.push(state.bus.tail(vigia_bus::READINGS, f).await.map_err(unavailable)?);
    }
    let alerts = state.bus.tail(vigia_bus::ALERTS, "").await.map_err(unavailable)?;
    let (tx, rx) = mpsc::channel::<Event>(1024);
    let gone = CancellationToken::new();
    for batcher in readings {
        tokio::spawn(forward_readings(batcher, tx.clone(), gone.clone()));
    }
    tokio::spawn(forward_alerts(alerts, tx, gone.clone()));
    let stream = futures::stream::unfold((rx, gone.drop_guard()), |(mut rx, guard)| async move {
        rx.recv().await.map(|e| (Ok(e), (rx, guard)))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

async fn forward_readings(batcher: vigia_bus::Batcher, tx: mpsc::Sender<Event>, gone: CancellationToken) {
    // `Batcher::next` is not cancel-safe: dropped while it gathers a batch,
    // it loses what it already pulled. So it runs in its own task and hands
    // whole batches over a channel, whose `recv` the select may drop freely
    // when the one-second tick fires.
    let (batches, mut incoming) = mpsc::channel::<Vec<vigia_bus::Delivery>>(4);
    tokio::spawn(pull_batches(batcher, batches, gone.clone()));
    let mut counts: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = gone.cancelled() => return,
            _ = tick.tick() => {
                if counts.is_empty() { continue; }
                let body: BTreeMap<String, serde_json::Value> = std::mem::take(&mut counts)
                    .into_iter()
                    .map(|(k, (ok, errors))| (k, serde_json::json!({"ok": ok, "errors": errors})))
                    .collect();
                if send(&tx, "counts", &body).await.is_err() { return; }
            }
            batch = incoming.recv() => {
                let Some(batch) = batch else {
                    // The tail broke: end the whole stream so the client reconnects afresh.
                    gone.cancel();
                    return;
                };
                for d in &batch {
                    let readings =
                        decode_message(d.subject(), d.event(), d.version(), d.payload(), d.published_ms).into_readings();
                    for (idx, reading) in readings.into_iter().enumerate() {
                        for prefix in reading.tag.prefixes() {
                            let c = counts.entry(prefix.to_owned()).or_default();
                            match reading.status {
                                vigia_domain::Status::Ok => c.0 += 1,
                                vigia_domain::Status::Error => c.1 += 1,
                            }
                        }
                        let event = StoredEvent { id: EventId { seq: d.seq, idx: idx as u32 }, reading };
                        if send(&tx, "reading", &EventOut::from(&event)).await.is_err() { return; }
                    }
                }
            }
        }
    }
}

/// Pulls batches until the client leaves or the tail breaks (then the
/// channel closes, which ends the stream).
async fn pull_batches(
    mut batcher: vigia_bus::Batcher,
    batches: mpsc::Sender<Vec<vigia_bus::Delivery>>,
    gone: CancellationToken,
) {
    while let Ok(Some(batch)) = batcher.next(&gone).await {
        if batches.send(batch).await.is_err() {
            return;
        }
    }
}

async fn forward_alerts(mut batcher: vigia_bus::Batcher, tx: mpsc::Sender<Event>, gone: CancellationToken) {
    while let Ok(Some(batch)) = batcher.next(&gone).await {
        for d in &batch {
            let Ok(body) = serde_json::from_slice::<serde_json::Value>(d.payload()) else { continue };
            let body = serde_json::json!({"event": d.event(), "subject": d.subject(), "body": body});
            if send(&tx, "alert", &body).await.is_err() {
                return;
            }
        }
    }
    // The tail broke (or the client left): end the whole stream.
    gone.cancel();
}

async fn send(tx: &mpsc::Sender<Event>, kind: &str, body: &impl serde::Serialize) -> Result<(), ()> {
    let event = Event::default().event(kind).json_data(body).map_err(|_| ())?;
    tx.send(event).await.map_err(|_| ())
}
