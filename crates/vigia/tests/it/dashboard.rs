//! The dashboard at `/`, end to end: a real headless Chromium against a real
//! Vigia (persister, alerter, HTTP) on a real nats-server.
//!
//! Screenshots go to `$CARGO_TARGET_TMPDIR/e2e/`; with `UPDATE_SCREENSHOTS=1`
//! the desktop and phone ones are also copied to `docs/` for the README.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use vigia_bus::READINGS;
use vigia_testkit::{Browser, workspace_root};

use crate::common::{TestEnv, wait_for};

const SEE: Duration = Duration::from_secs(15);

fn artifact(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e").join(name)
}

async fn shoot(browser: &Browser, name: &str) {
    let path = artifact(name);
    browser.screenshot(&path).await;
    let png = std::fs::read(&path).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{name} is not a real screenshot");
    if std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
        std::fs::copy(&path, workspace_root().join("docs").join(name)).expect("copy the screenshot into docs/");
    }
}

/// Opens the dashboard and waits until it follows the live stream.
async fn open(base: &str, width: u32, height: u32) -> Browser {
    let browser = Browser::start(width, height).await;
    browser.goto(&format!("{base}/")).await;
    browser
        .wait_for(
            "the live stream to connect",
            SEE,
            "return document.querySelector('#conn').dataset.state === 'live'",
            json!([]),
        )
        .await;
    browser
}

async fn assert_no_console_errors(browser: &Browser) {
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "the page logged errors: {errors:#?}");
}

/// The text of the events table's row for `tag`, once it shows.
const ROW_TEXT: &str = "const r = document.querySelector(`#events tbody tr[data-tag=\"${arguments[0]}\"]`); \
                        return r ? r.innerText : null";

const VISIBLE_ROWS: &str = "return [...document.querySelectorAll('#events tbody tr')]\
                            .map(r => [r.dataset.tag, r.className])";

async fn set_filter(browser: &Browser, selector: &str, value: &str) {
    browser
        .eval(
            "const e = document.querySelector(arguments[0]); e.value = arguments[1]; \
             e.dispatchEvent(new Event('change'))",
            json!([selector, value]),
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_follows_the_log_live() {
    let env = TestEnv::start_alone().await;
    let (running, base) = env.serve().await;
    for i in 0..24 {
        let tag = format!("brasil.sudeste.sensor{:02}", i % 4 + 1);
        env.publish_raw(&tag, format!(r#"{{"value": {}, "unit": "C"}}"#, 20 + i % 7).as_bytes()).await;
    }
    env.publish_raw("brasil.sul.sensor05", br#"{"value": 77.5, "unit": "C"}"#).await;
    env.publish_raw("brasil.norte.sensor09", b"\xff\xfe not a reading").await;
    env.drained(READINGS, "persister").await;

    let browser = open(&base, 1400, 1700).await;
    let seeded = browser
        .wait_for(
            "the history in the table",
            SEE,
            "const n = document.querySelectorAll('#events tbody tr').length; return n >= 26 ? n : null",
            json!([]),
        )
        .await;
    assert_eq!(seeded, 26, "every stored reading of the last hour, once");

    // A reading published with a plain NATS client shows up without a refresh.
    env.publish_raw("plant1.line2.press7", br#"{"value": 812.5, "unit": "kPa"}"#).await;
    let row = browser.wait_for("the new reading", SEE, ROW_TEXT, json!(["plant1.line2.press7"])).await;
    let row = row.as_str().expect("row text");
    assert!(row.contains("812.5") && row.contains("kPa") && row.contains("ok"), "row shows value, unit, status: {row}");
    let first = browser.eval("return document.querySelector('#events tbody tr').dataset.tag", json!([])).await;
    assert_eq!(first, "plant1.line2.press7", "newest first");

    // Errors are highlighted and carry their reason.
    let err = browser
        .eval(
            "const r = document.querySelector('#events tbody tr[data-tag=\"brasil.norte.sensor09\"]'); \
             return [r.className, r.querySelector('.status').title]",
            json!([]),
        )
        .await;
    assert_eq!(err[0], "err");
    assert!(!err[1].as_str().unwrap_or_default().is_empty(), "the error's reason is in the tooltip");

    // Filters by status and by tag pattern.
    set_filter(&browser, "#f-status", "error").await;
    let rows = browser.eval(VISIBLE_ROWS, json!([])).await;
    assert_eq!(rows, json!([["brasil.norte.sensor09", "err"]]));
    set_filter(&browser, "#f-status", "").await;
    set_filter(&browser, "#f-tag", "brasil.*.sensor01").await;
    let rows = browser.eval(VISIBLE_ROWS, json!([])).await;
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len(), 6);
    assert!(rows.iter().all(|r| r[0] == "brasil.sudeste.sensor01"), "{rows:?}");
    set_filter(&browser, "#f-tag", "").await;

    // Paused, the table holds still and says what arrived; resumed, it shows it.
    browser.click("#pause").await;
    env.publish_raw("meters.bldg1.m1", br#"{"value": 3}"#).await;
    let mut held = Value::Null;
    for _ in 0..150 {
        held = browser
            .eval(
                "return [document.querySelector('#held').innerText, document.querySelector('#conn').dataset.state, \
                 document.querySelector('#pause').getAttribute('aria-pressed')]",
                json!([]),
            )
            .await;
        if held[0] == "1 new while paused" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(held[0], "1 new while paused", "[held, connection, paused] = {held}");
    assert_eq!(browser.eval(ROW_TEXT, json!(["meters.bldg1.m1"])).await, Value::Null, "paused tables do not move");
    browser.click("#pause").await;
    browser.wait_for("the held reading after resuming", SEE, ROW_TEXT, json!(["meters.bldg1.m1"])).await;

    // Counts from the counters, the live chart, the traffic chart, health, the open alert.
    browser
        .wait_for(
            "the counts tree",
            SEE,
            "const n = document.querySelector('#counts-tree [data-prefix=\"brasil\"]'); \
             return n && n.dataset.total === '26'",
            json!([]),
        )
        .await;
    browser
        .wait_for(
            "the values chart",
            SEE,
            "return document.querySelectorAll('#values-chart canvas').length === 1 && \
             document.querySelectorAll('#picked .chip').length >= 1",
            json!([]),
        )
        .await;
    browser
        .wait_for("the traffic chart", SEE, "return !!document.querySelector('#traffic-chart canvas')", json!([]))
        .await;
    browser
        .wait_for(
            "the health panel",
            SEE,
            "return document.querySelector('#h-status').dataset.status === 'ok'",
            json!([]),
        )
        .await;
    browser
        .wait_for(
            "the open alert",
            SEE,
            "return [...document.querySelectorAll('#alerts tbody td')].some(td => td.innerText === 'brasil.sul.sensor05')",
            json!([]),
        )
        .await;
    let mode = browser.eval("return document.querySelector('#mode-value').innerText", json!([])).await;
    assert_ne!(mode, "–", "the most frequent value is shown");
    shoot(&browser, "dashboard.png").await;
    assert_no_console_errors(&browser).await;

    // On a phone: one column, nothing wider than the screen.
    browser.resize(390, 844).await;
    let fits = "return document.documentElement.scrollWidth <= window.innerWidth";
    let mut tries = 0;
    while browser.eval(fits, json!([])).await != true {
        tries += 1;
        if tries > 50 {
            let wide = browser
                .eval(
                    "return [...document.querySelectorAll('body *')]\
                     .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)\
                     .map(e => `${e.tagName}#${e.id}.${e.className}`).slice(0, 12)",
                    json!([]),
                )
                .await;
            panic!("at 390 px the page is wider than the screen; too wide: {wide}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    shoot(&browser, "dashboard-phone.png").await;
    assert_no_console_errors(&browser).await;
    drop(browser);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_appear_and_are_acknowledged_on_the_dashboard() {
    let env = TestEnv::start_alone().await;
    let (running, base) = env.serve().await;
    let browser = open(&base, 1200, 900).await;

    env.publish_raw("brasil.sul.s1", br#"{"value": 75}"#).await;
    let row = browser
        .wait_for(
            "the alert row",
            SEE,
            "const r = document.querySelector('#alerts tbody tr'); return r ? r.innerText : null",
            json!([]),
        )
        .await;
    let row = row.as_str().expect("row text");
    assert!(row.contains("brasil.sul.s1") && row.contains("75"), "alert row: {row}");
    assert_eq!(browser.eval("return document.querySelector('#alerts-count').innerText", json!([])).await, "1");

    browser.click("#alerts tbody tr button.ack").await;
    browser
        .wait_for(
            "the alert to leave the open list",
            SEE,
            "return document.querySelectorAll('#alerts tbody tr').length === 0",
            json!([]),
        )
        .await;
    let alerts = env.store.alerts(None).await.expect("alerts");
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].status, "acknowledged");
    assert_eq!(alerts[0].acknowledged_by.as_deref(), Some("dashboard"));
    assert_no_console_errors(&browser).await;
    drop(browser);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_switch_changes_the_averages() {
    let env = TestEnv::start_alone().await;
    let (running, base) = env.serve().await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    let day = 86_400_000;
    for (value, age) in [(100, 3 * day), (40, 40 * 3_600_000), (10, 60_000)] {
        env.publish_raw("brasil.sul.avg1", format!(r#"{{"value": {value}, "timestamp": {}}}"#, now - age).as_bytes())
            .await;
    }
    env.drained(READINGS, "persister").await;
    wait_for("the sensor in the registry", SEE, || async { env.store.sensors().await.expect("sensors").len() == 1 })
        .await;

    let browser = open(&base, 1200, 900).await;
    let mean_in = "const l = document.querySelector('#averages-list'); \
                   const r = l.querySelector('.row[data-tag=\"brasil.sul.avg1\"]'); \
                   return l.dataset.window === arguments[0] && r ? Number(r.dataset.mean) : null";
    let mut seen = Vec::new();
    for window in ["24h", "48h", "7d", "30d"] {
        browser.click(&format!("#averages button[data-window=\"{window}\"]")).await;
        let mean = browser.wait_for(&format!("the {window} average"), SEE, mean_in, json!([window])).await;
        let pressed = browser
            .eval("return document.querySelector('#averages [aria-pressed=\"true\"]').dataset.window", json!([]))
            .await;
        assert_eq!(pressed, window, "the switch shows which window is on");
        seen.push(mean.as_f64().expect("a number"));
    }
    assert_eq!(seen, [10.0, 25.0, 50.0, 50.0], "24 h sees the last reading, 48 h two, a week and a month all three");
    assert_no_console_errors(&browser).await;
    drop(browser);
    running.shutdown().await;
}
