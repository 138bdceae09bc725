//! Correct backfill: a month of readings imported from CSV into a live
//! system (and a device reading far older than the freshness window) is
//! stored, counted and rolled up exactly like live readings, is marked
//! `backfill`, and opens no alert; live readings keep alerting.

use std::time::Duration;

use serde_json::Value;
use vigia_bus::READINGS;

use crate::common::{TestEnv, assert_consistent, wait_for};

const HOUR: i64 = 3_600_000;
const SENSORS: usize = 3;
const HOURS: i64 = 30 * 24 - 2;

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

async fn get(client: &reqwest::Client, url: &str) -> Value {
    let r = client.get(url).send().await.expect("the API answers");
    assert_eq!(r.status(), 200, "{url}");
    r.json().await.expect("JSON")
}

#[tokio::test]
async fn a_month_of_backfill_counts_and_averages_like_live_data_and_opens_no_alert() {
    let env = TestEnv::start_alone().await;
    let (running, base) = env.serve().await;
    let client = reqwest::Client::new();
    let now = now_ms();

    // Live: a reading over 50 opens an alert, as always.
    env.publish_raw("brasil.sul.live", br#"{"value": 10}"#).await;
    env.publish_raw("brasil.sul.live", br#"{"value": 60}"#).await;
    // A device that was offline for two days sends what it kept.
    let old = now - 48 * HOUR;
    env.publish_raw("brasil.sul.late", format!(r#"{{"value": 99, "timestamp": {old}}}"#).as_bytes()).await;
    // One HTTP batch of both: the alerter reads only its fresh reading.
    let mixed = format!(
        r#"[{{"tag":"brasil.sul.batchold","value":99,"timestamp":{old},"unit":"C"}},{{"tag":"brasil.sul.batchnew","value":99,"unit":"C"}}]"#
    );
    let posted = client
        .post(format!("{base}/api/v1/events"))
        .header("content-type", "application/json")
        .body(mixed)
        .send()
        .await;
    assert_eq!(posted.unwrap().status(), 202, "a mixed batch is accepted");

    // A month of hourly readings of three sensors, alternating 40 and 80:
    // half of them over the threshold, and each sensor's mean is 60.
    let mut csv = String::from("tag,timestamp,value\n");
    let first = (now - 30 * 24 * HOUR).div_euclid(HOUR) * HOUR + 2 * HOUR;
    for s in 0..SENSORS {
        for h in 0..HOURS {
            let value = if h % 2 == 0 { 40 } else { 80 };
            csv.push_str(&format!("brasil.norte.bf{s},{},{value}\n", first + h * HOUR));
        }
    }
    let url = format!("{base}/api/v1/events/import?wait=true");
    let report: Value =
        client.post(&url).header("content-type", "text/csv").body(csv).send().await.unwrap().json().await.unwrap();
    let rows = SENSORS as u64 * HOURS as u64;
    assert_eq!(report["accepted"].as_u64(), Some(rows), "{report}");
    env.drained(READINGS, "persister").await;
    env.judged().await;
    env.drained(vigia_bus::ALERTS, "alert-projector").await;

    // Counted and averaged like live data.
    let counts = get(&client, &format!("{base}/api/v1/counts?prefix=brasil.norte&depth=1")).await;
    assert_eq!(counts["nodes"][0]["ok"].as_u64(), Some(rows), "{counts}");
    let averages = get(&client, &format!("{base}/api/v1/stats/averages?window=30d&prefix=brasil.norte")).await;
    let sensors = averages["sensors"].as_array().unwrap();
    assert_eq!(sensors.len(), SENSORS, "{averages}");
    for s in sensors {
        assert_eq!((s["count"].as_i64(), s["mean"].as_f64()), (Some(HOURS), Some(60.0)), "{s}");
        assert_eq!((s["min"].as_f64(), s["max"].as_f64()), (Some(40.0), Some(80.0)), "{s}");
    }
    let series =
        get(&client, &format!("{base}/api/v1/stats/series?tag=brasil.norte.bf0&bucket=1d&from={first}&to={now}")).await;
    let counted: i64 = series["points"].as_array().unwrap().iter().map(|p| p["count"].as_i64().unwrap()).sum();
    assert_eq!(counted, HOURS, "day rollups hold every backfilled reading: {series}");

    // Marked, and no alert for the past; the live one is there.
    let page = get(&client, &format!("{base}/api/v1/events?tag=brasil.norte.bf1&limit=0,5")).await;
    assert!(page["events"].as_array().unwrap().iter().all(|e| e["backfill"] == true), "{page}");
    let late = get(&client, &format!("{base}/api/v1/events?tag=brasil.sul.late")).await;
    assert_eq!(late["events"][0]["backfill"], true, "older than the freshness window: {late}");
    let live = get(&client, &format!("{base}/api/v1/events?tag=brasil.sul.live")).await;
    assert!(live["events"].as_array().unwrap().iter().all(|e| e.get("backfill").is_none()), "{live}");
    wait_for("the live alerts to be projected", Duration::from_secs(20), || {
        let store = env.store.clone();
        async move { store.alerts(None).await.unwrap().len() >= 2 }
    })
    .await;
    let alerts = env.store.alerts(None).await.unwrap();
    let mut tags: Vec<&str> = alerts.iter().map(|a| a.tag.as_str()).collect();
    tags.sort_unstable();
    assert_eq!(tags, vec!["brasil.sul.batchnew", "brasil.sul.live"], "backfill opens no alert");
    let batched = get(&client, &format!("{base}/api/v1/events?tag=brasil.sul.batchold")).await;
    assert_eq!(batched["events"][0]["backfill"], true, "{batched}");
    assert_eq!(assert_consistent(&env.store).await, rows + 5);
    running.shutdown().await;
}
