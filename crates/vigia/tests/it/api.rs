//! The HTTP API against a real pipeline: readings posted through the log
//! come back through counts, aggregates and the registry; bad input gets
//! problem+json naming the field.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::common::{TestEnv, assert_consistent};

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

async fn post(client: &reqwest::Client, url: &str, body: Value, key: Option<&str>) -> (u16, Value) {
    let mut req = client.post(url).json(&body);
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json body"))
}

async fn get(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let resp = client.get(url).send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json body"))
}

#[tokio::test]
async fn posted_readings_are_stored_counted_and_aggregated() {
    let env = TestEnv::start().await;
    let (running, base) = env.serve().await;
    let client = reqwest::Client::new();
    let t = now_ms() - 5 * 60_000;
    let body = json!([
        {"tag": "brasil.sudeste.sensor01", "value": 10.0, "timestamp": t},
        {"tag": "brasil.sudeste.sensor01", "value": "30", "timestamp": t + 1000},
        {"tag": "brasil.sudeste.sensor02", "valor": 7, "timestamp": t + 2000, "unit": "C"},
        {"tag": "brasil.sul.sensor09", "value": "", "timestamp": t + 3000},
        {"tag": "meters.lab.device-7", "value": 55, "unit": "kWh", "meta": {"device_id": "device-7"}}
    ]);
    let (status, accepted) = post(&client, &format!("{base}/api/v1/events?wait=true"), body.clone(), Some("k1")).await;
    assert_eq!(status, 201, "{accepted}");
    assert_eq!(accepted["events"], 5);
    assert_eq!(accepted["stored"], true);
    let messages = accepted["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "one log message per root: {accepted}");
    assert!(messages.iter().all(|m| m["duplicate"] == false));

    // The same request again is stored once.
    let (status, again) = post(&client, &format!("{base}/api/v1/events?wait=true"), body, Some("k1")).await;
    assert_eq!(status, 201, "{again}");
    assert!(again["messages"].as_array().unwrap().iter().all(|m| m["duplicate"] == true), "{again}");
    assert_eq!(assert_consistent(&env.store).await, 5);

    let (_, counts) = get(&client, &format!("{base}/api/v1/counts?prefix=brasil&depth=2")).await;
    assert_eq!(counts["total"], 4, "{counts}");
    let brasil = &counts["nodes"][0];
    assert_eq!(
        (brasil["prefix"].as_str(), brasil["ok"].as_i64(), brasil["errors"].as_i64()),
        (Some("brasil"), Some(3), Some(1))
    );
    let sudeste = &brasil["children"][0];
    assert_eq!(sudeste["prefix"], "brasil.sudeste");
    assert_eq!(sudeste["total"], 3);
    assert_eq!(sudeste["children"][0]["prefix"], "brasil.sudeste.sensor01");
    assert_eq!(sudeste["children"][0]["total"], 2);
    let (_, all) = get(&client, &format!("{base}/api/v1/counts?depth=0")).await;
    assert_eq!(all["total"], 5, "{all}");
    assert!(all["nodes"].as_array().unwrap().iter().all(|n| n["children"].as_array().unwrap().is_empty()));

    let (_, averages) = get(&client, &format!("{base}/api/v1/stats/averages?window=24h&prefix=brasil.sudeste")).await;
    let sensors = averages["sensors"].as_array().unwrap();
    assert_eq!(sensors.len(), 2, "{averages}");
    assert_eq!((sensors[0]["mean"].as_f64(), sensors[0]["count"].as_i64()), (Some(20.0), Some(2)));
    assert_eq!((sensors[0]["min"].as_f64(), sensors[0]["max"].as_f64()), (Some(10.0), Some(30.0)));

    let (_, series) = get(
        &client,
        &format!("{base}/api/v1/stats/series?tag=brasil.sudeste.sensor01&bucket=1h&from={}", t - 7_200_000),
    )
    .await;
    let points = series["points"].as_array().unwrap();
    let total: i64 = points.iter().map(|p| p["count"].as_i64().unwrap()).sum();
    assert_eq!(total, 2, "{series}");

    let (_, rate) = get(&client, &format!("{base}/api/v1/stats/rate?bucket=1h&from={}", t - 3_600_000)).await;
    let total: i64 = rate["points"].as_array().unwrap().iter().map(|p| p["total"].as_i64().unwrap()).sum();
    assert_eq!(total, 5, "errors count in the rate too: {rate}");

    let (_, mode) = get(&client, &format!("{base}/api/v1/stats/mode?prefix=brasil")).await;
    assert_eq!(mode["count"], 3, "{mode}");

    let (_, sensors) = get(&client, &format!("{base}/api/v1/sensors?prefix=brasil.sudeste")).await;
    assert_eq!(sensors.as_array().unwrap().len(), 2, "{sensors}");
    let (status, sensor) = get(&client, &format!("{base}/api/v1/sensors/meters.lab.device-7")).await;
    assert_eq!((status, sensor["last_value"].as_f64()), (200, Some(55.0)), "{sensor}");
    let (status, _) = get(&client, &format!("{base}/api/v1/sensors/meters.lab.nobody")).await;
    assert_eq!(status, 404);

    // Value 55 on meters.lab.device-7 crosses the default `> 50` rule.
    let store = env.store.clone();
    crate::common::wait_for("the alert to be projected", std::time::Duration::from_secs(20), || {
        let s = store.clone();
        async move { !s.alerts(Some("open")).await.unwrap().is_empty() }
    })
    .await;
    let (_, alerts) = get(&client, &format!("{base}/api/v1/alerts?status=open")).await;
    assert_eq!(alerts[0]["tag"], "meters.lab.device-7", "{alerts}");

    let metrics = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("vigia_messages_stored 2\n"), "{metrics}");
    assert!(metrics.contains("vigia_events_error{root=\"brasil\"} 1\n"), "{metrics}");
    assert!(metrics.contains("vigia_consumer_pending{stream=\"READINGS\",consumer=\"persister\"} 0\n"), "{metrics}");
    assert!(metrics.contains("# TYPE vigia_store_up gauge\nvigia_store_up 1\n"), "{metrics}");
    assert!(metrics.contains("# TYPE vigia_persister_batch_seconds summary"), "{metrics}");
    assert!(!metrics.contains("vigia_persister_batches_total 0\n"), "this process stored batches: {metrics}");

    // Acknowledging goes through the log and is projected; twice is harmless.
    let id = alerts[0]["id"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        let (status, acked) =
            post(&client, &format!("{base}/api/v1/alerts/{id}/ack?wait=true&by=ops"), json!(null), None).await;
        assert_eq!(status, 200, "{acked}");
        assert_eq!((acked["status"].as_str(), acked["acknowledged_by"].as_str()), (Some("acknowledged"), Some("ops")));
    }
    let (_, open) = get(&client, &format!("{base}/api/v1/alerts?status=open")).await;
    assert!(open.as_array().unwrap().is_empty(), "{open}");
    let acks = env.bus.jetstream().get_stream(vigia_bus::ALERTS).await.unwrap().info().await.unwrap().state.messages;
    assert_eq!(acks, 2, "one AlertOpened and one AlertAcknowledged, the second ack deduplicated");
    let (status, _) = post(&client, &format!("{base}/api/v1/alerts/1-0-no-such-rule/ack"), json!(null), None).await;
    assert_eq!(status, 404);
    let (status, _) = post(&client, &format!("{base}/api/v1/alerts/nonsense/ack"), json!(null), None).await;
    assert_eq!(status, 400);
    running.shutdown().await;
}

#[tokio::test]
async fn bad_input_gets_problem_json_naming_the_field() {
    let env = TestEnv::start().await;
    let (running, base) = env.serve().await;
    let client = reqwest::Client::new();
    let cases = [
        (json!([{"tag": "brasil.ok.s1", "value": 1}, {"tag": "brasil..s2", "value": 1}]), "[1].tag"),
        (json!({"tag": "elsewhere.s1", "value": 1}), "[0].tag"),
        (json!({"tag": "brasil.a.b", "value": 1, "timestamp": "yesterday"}), "[0].timestamp"),
        (json!({"tag": "brasil.a.b", "value": {"nested": true}}), "[0].value"),
        (json!({"tag": "brasil.a.b", "valeu": 1}), "[0]"),
    ];
    for (body, field) in cases {
        let resp = client.post(format!("{base}/api/v1/events")).json(&body).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 400, "{body}");
        assert_eq!(resp.headers()["content-type"], "application/problem+json", "{body}");
        let problem: Value = resp.json().await.unwrap();
        assert_eq!(problem["field"], field, "{problem}");
        assert!(problem["detail"].as_str().unwrap().len() > 20, "{problem}");
    }
    let resp = client.post(format!("{base}/api/v1/events")).body("not json").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    for (url, field) in [
        ("/api/v1/stats/averages?window=3d", "window"),
        ("/api/v1/stats/series?tag=brasil.a.b&bucket=5m", "bucket"),
        ("/api/v1/counts?depth=9", "depth"),
        ("/api/v1/alerts?status=closed", "status"),
        // axum's own rejections come as problem+json too (found by schemathesis).
        ("/api/v1/alerts?offset=-1", "offset"),
        ("/api/v1/dead-letters?count=many", "count"),
    ] {
        let (status, problem) = get(&client, &format!("{base}{url}")).await;
        assert_eq!((status, problem["field"].as_str()), (400, Some(field)), "{url}: {problem}");
    }
    let resp = client.post(format!("{base}/api/v1/generate/-1")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    // What the document now states is what the handlers enforce (found by schemathesis).
    for (url, field) in [
        ("/api/v1/sensors?prefix=a..b", "prefix"),
        ("/api/v1/sensors.geojson?prefix=a%20b", "prefix"),
        ("/api/v1/alerts?prefix=a%20b", "prefix"),
        ("/api/v1/stats/mode?prefix=brasil.", "prefix"),
        ("/api/v1/counts?prefix=%20brasil", "prefix"),
        ("/api/v1/alerts?offset=1000001", "offset"),
        ("/api/v1/dead-letters?offset=1000001", "offset"),
        ("/api/v1/events/+1-0", "id"),
        ("/api/v1/stats/rate?bucket=1d", "bucket"),
    ] {
        let (status, problem) = get(&client, &format!("{base}{url}")).await;
        assert_eq!((status, problem["field"].as_str()), (400, Some(field)), "{url}: {problem}");
    }
    // Ids of the right shape whose numbers name nothing are not found, not malformed.
    let (status, problem) = get(&client, &format!("{base}/api/v1/events/99999999999999999999999-0")).await;
    assert_eq!(status, 404, "{problem}");
    let (status, problem) =
        post(&client, &format!("{base}/api/v1/alerts/99999999999999999999999-0-hot/ack"), json!(null), None).await;
    assert_eq!(status, 404, "{problem}");
    // Requests that fit the document but break a rule it cannot state: 422, not 400.
    for url in [
        "/api/v1/events?cursor=abc",
        "/api/v1/events.csv?cursor=abc",
        "/api/v1/stats/series?tag=brasil.a.b&from=0",
        "/api/v1/stats/rate?from=0",
    ] {
        let (status, problem) = get(&client, &format!("{base}{url}")).await;
        assert_eq!(status, 422, "{url}: {problem}");
    }
    // An empty query value is the value left out (a form's "any" choice).
    let (status, alerts) = get(&client, &format!("{base}/api/v1/alerts?status=&prefix=")).await;
    assert_eq!((status, alerts.is_array()), (200, true), "{alerts}");
    for (url, key, default) in [
        ("/api/v1/stats/averages?window=&prefix=", "window", "24h"),
        ("/api/v1/stats/mode?window=", "window", "24h"),
        ("/api/v1/stats/rate?bucket=&from=&to=", "bucket", "1m"),
        ("/api/v1/stats/series?tag=brasil.a.b&bucket=", "bucket", "1m"),
    ] {
        let (status, body) = get(&client, &format!("{base}{url}")).await;
        assert_eq!((status, body[key].as_str()), (200, Some(default)), "{url}: {body}");
    }
    // A range that ends before it starts is empty, as in GET /events.
    let (status, series) = get(&client, &format!("{base}/api/v1/stats/series?tag=brasil.a.b&from=2000&to=1000")).await;
    assert_eq!((status, series["points"].as_array().map(Vec::len)), (200, Some(0)), "{series}");
    let (status, rate) = get(&client, &format!("{base}/api/v1/stats/rate?from=2000000&to=1000000")).await;
    assert_eq!((status, rate["points"].as_array().map(Vec::len)), (200, Some(0)), "{rate}");
    let resp = client.post(format!("{base}/api/v1/generate/100001")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 400, "the synchronous generator stops at 100,000");
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(problem["field"], "n", "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("vigia sim --count 100001"), "{problem}");
    // CSV rows outside the configured roots are refused, not a 503 (found by schemathesis).
    let csv = "equipmentId,timestamp,value\nEQ-1,2023-02-15T01:30:00Z,78.4\n";
    let resp = client
        .post(format!("{base}/api/v1/events/import?root=nowhere"))
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(problem["field"], "root", "{problem}");
    let resp = client
        .post(format!("{base}/api/v1/events/import"))
        .header("content-type", "text/csv")
        .body("tag,timestamp,value\nnowhere.x.y,2023-02-15T01:30:00Z,1\n")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let report: Value = resp.json().await.unwrap();
    assert_eq!((report["accepted"].as_u64(), report["rejected"].as_u64()), (Some(0), Some(1)), "{report}");
    assert_eq!(report["errors"][0]["column"], "tag", "{report}");
    // Nothing of the rejected requests reached the log.
    assert_eq!(env.stream_messages(vigia_bus::READINGS).await, 0);
    running.shutdown().await;
}

#[tokio::test]
async fn events_are_queried_sorted_paged_and_fetched_by_id() {
    let env = TestEnv::start().await;
    let (running, base) = env.serve().await;
    let client = reqwest::Client::new();
    let t = 1_700_000_000_000i64;
    // 30 readings over 3 sensors, values 0..30, one second apart; one empty value; one raw garbage payload.
    let mut body: Vec<Value> = (0..30)
        .map(|i| json!({"tag": format!("brasil.sudeste.sensor{:02}", i % 3), "value": i, "timestamp": t + i * 1000}))
        .collect();
    body.push(json!({"tag": "brasil.sul.sensor99", "value": null, "timestamp": t}));
    let (status, accepted) = post(&client, &format!("{base}/api/v1/events?wait=true"), json!(body), None).await;
    assert_eq!(status, 201, "{accepted}");
    let garbage_seq = env.publish_raw("brasil.sul.sensor98", b"\xff\xfe not json").await;
    crate::common::wait_for("garbage stored", std::time::Duration::from_secs(20), || {
        let s = env.store.clone();
        async move { s.ledger(vigia_store::READINGS_LEDGER).await.unwrap().contains(garbage_seq) }
    })
    .await;

    // Filters and sort.
    let url = format!("{base}/api/v1/events?tag=eq:brasil.sudeste.*&value=gte:20&sort=value:desc");
    let resp = client.get(&url).send().await.unwrap();
    assert_eq!(resp.headers()["x-total-count"], "10");
    let page: Value = resp.json().await.unwrap();
    let values: Vec<i64> =
        page["events"].as_array().unwrap().iter().map(|e| e["value"].as_f64().unwrap() as i64).collect();
    assert_eq!(values, (20..30).rev().collect::<Vec<_>>());
    assert!(page.get("next_cursor").is_none(), "{page}");

    // limit=offset,count, the syntax an existing client sends.
    let (_, page) =
        get(&client, &format!("{base}/api/v1/events?tag=brasil.sudeste.sensor00&sort=timestamp:asc&limit=2,3")).await;
    let values: Vec<i64> =
        page["events"].as_array().unwrap().iter().map(|e| e["value"].as_f64().unwrap() as i64).collect();
    assert_eq!(values, [6, 9, 12]);
    assert_eq!(page["total"], 10);

    // Cursor paging visits every match once, in order.
    let mut seen = Vec::new();
    let mut url = format!("{base}/api/v1/events?tag=eq:brasil.>&timestamp=lt:{}&limit=7", t + 29_000);
    loop {
        let (status, page) = get(&client, &url).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(page["events"].as_array().unwrap().iter().map(|e| e["timestamp"].as_i64().unwrap()));
        match page["next_cursor"].as_str() {
            Some(c) => {
                url = format!("{base}/api/v1/events?tag=eq:brasil.>&timestamp=lt:{}&limit=7&cursor={c}", t + 29_000)
            }
            None => break,
        }
    }
    assert_eq!(
        seen.len(),
        30,
        "29 numbered readings and the empty one; the garbage one has the broker's time, later than the filter"
    );
    assert!(seen.windows(2).all(|w| w[0] >= w[1]), "newest first: {seen:?}");

    // Errors are queryable, with their reason and raw bytes.
    let (_, errors) = get(&client, &format!("{base}/api/v1/events?status=error&sort=tag:asc")).await;
    let errors = errors["events"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(errors[0]["tag"], "brasil.sul.sensor98");
    assert!(errors[0]["raw_hex"].as_str().unwrap().starts_with("fffe"), "{:?}", errors[0]);
    assert!(errors[1]["value"].is_null());

    // One event by id.
    let id = accepted["messages"][0]["ids"][29].as_str().unwrap().to_owned();
    let (status, event) = get(&client, &format!("{base}/api/v1/events/{id}")).await;
    assert_eq!(
        (status, event["value"].as_f64(), event["tag"].as_str()),
        (200, Some(29.0), Some("brasil.sudeste.sensor02"))
    );
    let (status, _) = get(&client, &format!("{base}/api/v1/events/999999-0")).await;
    assert_eq!(status, 404);

    // Unknown fields and operators are refused, naming what is allowed.
    for (query, field) in [("colour=eq:red", "colour"), ("value=about:5", "value"), ("limit=0,20000", "limit")] {
        let (status, problem) = get(&client, &format!("{base}/api/v1/events?{query}")).await;
        assert_eq!((status, problem["field"].as_str()), (400, Some(field)), "{query}: {problem}");
    }
    running.shutdown().await;
}

#[tokio::test]
async fn csv_import_reports_rows_and_a_second_upload_stores_nothing_new() {
    let env = TestEnv::start().await;
    let (running, base) = env.serve().await;
    let client = reqwest::Client::new();
    let file = "equipmentId,timestamp,value\n\
                EQ-12495,2023-02-15T01:30:00.000-05:00,78.42\n\
                EQ-12495,2023-02-15T01:31:00.000-05:00,\n\
                EQ-7,yesterday,3\n\
                EQ-7,1676442600000,\"12,5\"\n";
    let url = format!("{base}/api/v1/events/import?root=plant1.area3&wait=true");
    let upload = |body: &'static str| client.post(&url).header("content-type", "text/csv").body(body).send();
    let report: Value = upload(file).await.unwrap().json().await.unwrap();
    assert_eq!(
        (report["accepted"].as_u64(), report["duplicates"].as_u64(), report["rejected"].as_u64()),
        (Some(3), Some(0), Some(1)),
        "{report}"
    );
    assert_eq!(report["errors"][0]["line"], 4, "{report}");
    assert_eq!(report["errors"][0]["column"], "timestamp", "{report}");
    assert_eq!(report["stored"], true);

    let again: Value = upload(file).await.unwrap().json().await.unwrap();
    assert_eq!((again["accepted"].as_u64(), again["duplicates"].as_u64()), (Some(0), Some(3)), "{again}");
    assert_eq!(assert_consistent(&env.store).await, 3);
    let (_, counts) = get(&client, &format!("{base}/api/v1/counts?prefix=plant1.area3&depth=1")).await;
    let node = &counts["nodes"][0];
    assert_eq!(
        (node["ok"].as_i64(), node["errors"].as_i64()),
        (Some(2), Some(1)),
        "the empty value is an error event: {counts}"
    );
    let (_, eq) = get(&client, &format!("{base}/api/v1/events?tag=plant1.area3.EQ-12495&sort=timestamp:asc")).await;
    assert_eq!(eq["events"][0]["timestamp"], 1_676_442_600_000i64, "RFC 3339 with offset: {eq}");
    assert_eq!(eq["events"][0]["value"], 78.42);

    // A multipart upload of a tag file; a bare equipmentId file without root is refused whole.
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::text("tag,timestamp,value,unit\nbrasil.sul.s1,1700000000000,5,C\n")
            .file_name("a.csv"),
    );
    let report: Value =
        client.post(format!("{base}/api/v1/events/import")).multipart(form).send().await.unwrap().json().await.unwrap();
    assert_eq!(report["accepted"], 1, "{report}");
    // A bigger file (it reaches the server in several body frames), with a quoted cell spanning lines.
    let mut big = String::from("tag,timestamp,value\n");
    for i in 0..3000 {
        big.push_str(&format!(
            "brasil.big.s{},{},\"{}\"\n",
            i % 50,
            1_700_000_000_000i64 + i,
            if i == 7 { "two\nlines" } else { "1,5" }
        ));
    }
    let report: Value = client
        .post(format!("{base}/api/v1/events/import?wait=true"))
        .header("content-type", "text/csv")
        .body(big)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((report["accepted"].as_u64(), report["rejected"].as_u64()), (Some(3000), Some(0)), "{report}");
    let (_, text) = get(&client, &format!("{base}/api/v1/events?tag=brasil.big.s7&timestamp=1700000000007")).await;
    assert_eq!(text["events"][0]["value"], "two\nlines", "{text}");

    let resp = client.post(format!("{base}/api/v1/events/import")).body(file).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(problem["field"], "root", "{problem}");
    running.shutdown().await;
}

#[tokio::test]
async fn csv_export_streams_every_match_hour_by_hour() {
    let env = TestEnv::start().await;
    let (running, base) = env.serve().await;
    let client = reqwest::Client::new();
    let t = 1_700_000_000_000i64;
    // 3 hours of readings, 10 minutes apart, plus a text value that looks like a formula.
    let mut body: Vec<Value> =
        (0..18).map(|i| json!({"tag": "brasil.norte.s1", "value": i, "timestamp": t + i * 600_000})).collect();
    body.push(json!({"tag": "brasil.norte.s2", "value": "=1+1,x", "timestamp": t}));
    let (status, _) = post(&client, &format!("{base}/api/v1/events?wait=true"), json!(body), None).await;
    assert_eq!(status, 201);

    let resp =
        client.get(format!("{base}/api/v1/events.csv?tag=eq:brasil.norte.*&sort=timestamp:asc")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let text = resp.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        ["id", "tag", "timestamp", "time", "value", "unit", "status", "reason"]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 19, "{text}");
    let stamps: Vec<i64> = rows.iter().map(|r| r[2].parse().unwrap()).collect();
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "ascending across hours: {stamps:?}");
    assert!(rows.iter().any(|r| &r[4] == "'=1+1,x"), "a formula-looking text is defused: {text}");

    // A range of billions of hours walks only where events are, in bounded
    // memory (it used to list every hour first and abort the process).
    let started = std::time::Instant::now();
    let resp = client
        .get(format!("{base}/api/v1/events.csv?timestamp=gte:0&timestamp=lte:1e99&sort=timestamp:asc"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().await.unwrap();
    assert_eq!(csv::Reader::from_reader(text.as_bytes()).records().count(), 19, "{text}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "took {:?}", started.elapsed());

    // Newest first by default, and with a filter.
    let text = client.get(format!("{base}/api/v1/events.csv?value=gte:10")).send().await.unwrap().text().await.unwrap();
    let values: Vec<String> =
        csv::Reader::from_reader(text.as_bytes()).records().map(|r| r.unwrap()[4].to_owned()).collect();
    assert_eq!(values, (10..18).rev().map(|v| v.to_string()).collect::<Vec<_>>());
    running.shutdown().await;
}

#[tokio::test]
async fn live_streams_readings_alerts_and_counts_for_a_pattern() {
    let env = TestEnv::start().await;
    let (running, base) = env.serve().await;
    let client = reqwest::Client::new();
    let mut resp = client.get(format!("{base}/api/v1/live?tag=brasil.sudeste.*")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    env.publish_raw("brasil.sul.s2", br#"{"value": 1}"#).await;
    let seq = env.publish_raw("brasil.sudeste.s1", br#"{"value": 77}"#).await;
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while !(text.contains("event: reading") && text.contains("event: alert") && text.contains("event: counts")) {
        let Ok(chunk) = tokio::time::timeout_at(deadline, resp.chunk()).await else {
            panic!("a reading, an alert and counts within 30 s; got only: {text:?}");
        };
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap().expect("stream open")));
    }
    assert!(text.contains(&format!("\"id\":\"{seq}-0\"")), "{text}");
    assert!(text.contains("AlertOpened"), "{text}");
    assert!(text.contains(r#""brasil.sudeste":{"errors":0,"ok":1}"#), "{text}");
    assert!(!text.contains("brasil.sul"), "filtered by the pattern: {text}");
    let (status, problem) = get(&client, &format!("{base}/api/v1/live?tag=brasil..x")).await;
    assert_eq!((status, problem["field"].as_str()), (400, Some("tag")));
    drop(resp);
    running.shutdown().await;
}

#[tokio::test]
async fn tokens_guard_every_write_route_and_reads_when_closed() {
    let mut env = TestEnv::start().await;
    let hash = |t: &str| vigia_api::hash_token(t).iter().map(|b| format!("{b:02x}")).collect::<String>();
    let token = |name: &str, secret: &str, scopes: &[&str]| vigia::config::TokenConfig {
        name: name.into(),
        sha256: hash(secret),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
    };
    env.config.http.open_reads = false;
    env.config.http.tokens = vec![token("viewer", "r-secret", &["read"]), token("device", "w-secret", &["write"])];
    let (running, base) = env.serve().await;
    let client = reqwest::Client::new();
    let writes = [
        ("/api/v1/events", "application/json", r#"{"tag": "brasil.a.b", "value": 1}"#),
        ("/api/v1/events/import", "text/csv", "tag,timestamp,value\nbrasil.a.b,1700000000000,1\n"),
        ("/api/v1/alerts/1-0-value-above-50/ack", "application/json", ""),
    ];
    let others = [
        (reqwest::Method::PUT, "/api/v1/events/1-0", r#"{"value": 1}"#),
        (reqwest::Method::PATCH, "/api/v1/events/1-0", r#"{"value": 1}"#),
        (reqwest::Method::DELETE, "/api/v1/events/1-0", ""),
        (reqwest::Method::PUT, "/api/v1/sensors/brasil.a.b", r#"{"name": "x"}"#),
        (reqwest::Method::DELETE, "/api/v1/sensors/brasil.a.b", ""),
    ];
    for (method, path, body) in others {
        let send = |auth: Option<&str>| {
            let mut req = client
                .request(method.clone(), format!("{base}{path}"))
                .header("content-type", "application/json")
                .body(body);
            if let Some(a) = auth {
                req = req.bearer_auth(a);
            }
            req.send()
        };
        assert_eq!(send(None).await.unwrap().status().as_u16(), 401, "{method} {path}");
        assert_eq!(send(Some("r-secret")).await.unwrap().status().as_u16(), 403, "{method} {path}");
        let status = send(Some("w-secret")).await.unwrap().status().as_u16();
        assert!(status != 401 && status != 403, "{method} {path}: the write token passes, got {status}");
    }
    for (path, kind, body) in writes {
        let send = |auth: Option<&str>| {
            let mut req = client.post(format!("{base}{path}")).header("content-type", kind).body(body);
            if let Some(a) = auth {
                req = req.bearer_auth(a);
            }
            req.send()
        };
        let resp = send(None).await.unwrap();
        assert_eq!(resp.status().as_u16(), 401, "{path}");
        assert!(resp.headers().contains_key("www-authenticate"), "{path}");
        assert_eq!(send(Some("wrong")).await.unwrap().status().as_u16(), 401, "{path}");
        assert_eq!(send(Some("r-secret")).await.unwrap().status().as_u16(), 403, "{path}: read-only token");
        let status = send(Some("w-secret")).await.unwrap().status().as_u16();
        assert!(status != 401 && status != 403, "{path}: the write token passes, got {status}");
    }
    let get = |auth: Option<&str>| {
        let mut req = client.get(format!("{base}/api/v1/counts"));
        if let Some(a) = auth {
            req = req.bearer_auth(a);
        }
        req.send()
    };
    assert_eq!(get(None).await.unwrap().status().as_u16(), 401, "reads are closed");
    assert_eq!(get(Some("r-secret")).await.unwrap().status().as_u16(), 200);
    assert_eq!(get(Some("w-secret")).await.unwrap().status().as_u16(), 200, "write implies read");
    let rules = json!({"rules": []});
    let put = client.put(format!("{base}/api/v1/rules")).bearer_auth("w-secret").json(&rules).send().await.unwrap();
    assert_eq!(put.status().as_u16(), 403, "changing rules needs admin");
    let health = client.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200, "health stays open");
    running.shutdown().await;
}

#[tokio::test]
async fn rules_change_through_the_log_and_the_alerter_follows() {
    let env = TestEnv::start().await;
    let (running, base) = env.serve().await;
    let client = reqwest::Client::new();
    let (_, rules) = get(&client, &format!("{base}/api/v1/rules")).await;
    assert_eq!((rules["source"].as_str(), rules["rules"][0]["id"].as_str()), (Some("config"), Some("value-above-50")));

    let hot =
        json!({"rules": [{"id": "hot", "pattern": "brasil.>", "op": "gt", "threshold": 80.0, "hysteresis": 0.0}]});
    let resp = client.put(format!("{base}/api/v1/rules?by=ops")).json(&hot).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let (_, rules) = get(&client, &format!("{base}/api/v1/rules")).await;
    assert_eq!((rules["source"].as_str(), rules["set_by"].as_str()), (Some("log"), Some("ops")), "{rules}");

    env.publish_raw("brasil.x.s1", br#"{"value": 70}"#).await;
    env.publish_raw("brasil.x.s2", br#"{"value": 90}"#).await;
    env.judged().await;
    env.drained(vigia_bus::ALERTS, "alert-projector").await;
    let alerts = env.store.alerts(None).await.unwrap();
    let got: Vec<(&str, &str)> = alerts.iter().map(|a| (a.tag.as_str(), a.rule.as_str())).collect();
    assert_eq!(got, [("brasil.x.s2", "hot")], "70 no longer alerts, 90 does, under the new rule");

    let dup = json!({"rules": [{"id": "a", "pattern": ">", "op": "gt", "threshold": 1.0}, {"id": "a", "pattern": ">", "op": "lt", "threshold": 0.0}]});
    let resp = client.put(format!("{base}/api/v1/rules")).json(&dup).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 422, "the schema cannot state unique ids, so they are not a 400");
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(problem["field"], "rules", "{problem}");
    let untyped = json!({"rules": [{}]});
    let resp = client.put(format!("{base}/api/v1/rules")).json(&untyped).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 400, "a rule without fields does not fit the document");
    let bad_pattern = json!({"rules": [{"id": "a", "pattern": "brasil.>.x", "op": "gt", "threshold": 1.0}]});
    let resp = client.put(format!("{base}/api/v1/rules")).json(&bad_pattern).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let (_, rules) = get(&client, &format!("{base}/api/v1/rules")).await;
    assert_eq!(rules["rules"][0]["id"], "hot", "refused changes leave the rules in force: {rules}");
    running.shutdown().await;
}

#[tokio::test]
async fn sensors_are_described_through_the_log_with_their_own_thresholds() {
    let env = TestEnv::start().await;
    let (running, base) = env.serve().await;
    let client = reqwest::Client::new();
    let description = json!({"name": "Cold room", "unit": "C", "location": {"lat": -23.5, "lon": -46.6},
        "thresholds": [{"id": "too-warm", "op": "gt", "threshold": 8.0}]});
    let resp = client
        .put(format!("{base}/api/v1/sensors/brasil.geo.s1?wait=true&by=ops"))
        .json(&description)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let sensor: Value = resp.json().await.unwrap();
    assert_eq!(
        (sensor["name"].as_str(), sensor["count"].as_i64()),
        (Some("Cold room"), Some(0)),
        "described before any reading: {sensor}"
    );

    // 12 is under the global `> 50` but over the sensor's own 8.
    env.publish_raw("brasil.geo.s1", br#"{"value": 12}"#).await;
    env.publish_raw("brasil.geo.s2", br#"{"value": 12}"#).await;
    env.judged().await;
    env.drained(vigia_bus::READINGS, "persister").await;
    env.drained(vigia_bus::ALERTS, "alert-projector").await;
    let alerts = env.store.alerts(None).await.unwrap();
    let got: Vec<(&str, &str)> = alerts.iter().map(|a| (a.tag.as_str(), a.rule.as_str())).collect();
    assert_eq!(got, [("brasil.geo.s1", "too-warm")]);

    let geo: Value = client.get(format!("{base}/api/v1/sensors.geojson")).send().await.unwrap().json().await.unwrap();
    assert_eq!(geo["type"], "FeatureCollection");
    let features = geo["features"].as_array().unwrap();
    assert_eq!(features.len(), 1, "only sensors with a location: {geo}");
    assert_eq!(features[0]["geometry"]["coordinates"], json!([-46.6, -23.5]));
    assert_eq!(features[0]["properties"]["last_value"], 12.0);

    let bad = json!({"location": {"lat": 123.0, "lon": 0.0}});
    let resp = client.put(format!("{base}/api/v1/sensors/brasil.geo.s1")).json(&bad).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let resp = client.delete(format!("{base}/api/v1/sensors/brasil.geo.s1?wait=true")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let (_, sensor) = get(&client, &format!("{base}/api/v1/sensors/brasil.geo.s1")).await;
    assert_eq!((sensor["name"].is_null(), sensor["count"].as_i64()), (true, Some(1)), "readings stay: {sensor}");
    running.shutdown().await;
}

#[tokio::test]
async fn corrections_and_retractions_keep_projections_equal_to_a_scan_and_replay() {
    let env = TestEnv::start().await;
    let (running, base) = env.serve().await;
    let client = reqwest::Client::new();
    let t = 1_700_000_040_000i64;
    let values = [json!(10), json!(20), json!(30), json!(40), json!(""), json!(60)];
    let mut body: Vec<Value> = values
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"tag": "brasil.c.s1", "value": v, "timestamp": t + i as i64 * 1000}))
        .collect();
    body.push(json!({"tag": "brasil.c.s2", "value": 5, "timestamp": t}));
    let (_, accepted) = post(&client, &format!("{base}/api/v1/events?wait=true"), json!(body), None).await;
    let ids: Vec<String> =
        accepted["messages"][0]["ids"].as_array().unwrap().iter().map(|i| i.as_str().unwrap().to_owned()).collect();

    let send = |method: reqwest::Method, id: &str, body: Option<Value>| {
        let mut req = client.request(method, format!("{base}/api/v1/events/{id}?wait=true"));
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send()
    };
    let resp = send(reqwest::Method::PUT, &ids[1], Some(json!({"value": 25}))).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let changed: Value = resp.json().await.unwrap();
    assert_eq!(changed["event"]["value"], 25.0, "{changed}");
    let changed: Value =
        send(reqwest::Method::PATCH, &ids[4], Some(json!({"value": "45"}))).await.unwrap().json().await.unwrap();
    assert_eq!(
        (changed["event"]["value"].as_f64(), changed["event"]["status"].as_str()),
        (Some(45.0), Some("ok")),
        "{changed}"
    );
    let changed: Value =
        send(reqwest::Method::PATCH, &ids[0], Some(json!({"unit": "C"}))).await.unwrap().json().await.unwrap();
    assert_eq!(
        (changed["event"]["value"].as_f64(), changed["event"]["unit"].as_str()),
        (Some(10.0), Some("C")),
        "{changed}"
    );
    let resp = send(reqwest::Method::PATCH, &ids[0], Some(json!({"timestamp": 1}))).await.unwrap();
    assert_eq!(resp.status().as_u16(), 400, "identity fields cannot change");
    for id in [&ids[5], &ids[0]] {
        assert_eq!(send(reqwest::Method::DELETE, id, None).await.unwrap().status().as_u16(), 200);
    }
    assert_eq!(send(reqwest::Method::DELETE, &ids[0], None).await.unwrap().status().as_u16(), 404, "already retracted");

    assert_eq!(assert_consistent(&env.store).await, 5, "7 readings, 2 retracted");
    let (_, sensor) = get(&client, &format!("{base}/api/v1/sensors/brasil.c.s1")).await;
    assert_eq!(
        (
            sensor["count"].as_i64(),
            sensor["last_value"].as_f64(),
            sensor["first_seen"].as_i64(),
            sensor["last_seen"].as_i64()
        ),
        (Some(4), Some(45.0), Some(t + 1000), Some(t + 4000)),
        "{sensor}"
    );
    let (_, counts) = get(&client, &format!("{base}/api/v1/counts?prefix=brasil.c.s1&depth=0")).await;
    assert_eq!(
        (counts["nodes"][0]["ok"].as_i64(), counts["nodes"][0]["errors"].as_i64()),
        (Some(4), Some(0)),
        "{counts}"
    );
    let (_, series) =
        get(&client, &format!("{base}/api/v1/stats/series?tag=brasil.c.s1&bucket=1m&from={t}&to={}", t + 60_000)).await;
    let p = &series["points"][0];
    assert_eq!(
        (p["count"].as_i64(), p["min"].as_f64(), p["max"].as_f64()),
        (Some(4), Some(25.0), Some(45.0)),
        "{series}"
    );
    running.shutdown().await;

    // The log rebuilds the same store, changes included.
    let fresh = vigia_store::Store::open(&vigia_store::StoreConfig::memory()).await.unwrap();
    vigia::replay::replay(&env.bus, &fresh, 3, env.config.backfill.freshness()).await.unwrap();
    assert_eq!(fresh.all_events().await.unwrap(), env.store.all_events().await.unwrap());
    assert_eq!(fresh.counters().await.unwrap(), env.store.counters().await.unwrap());
    assert_eq!(fresh.sensors().await.unwrap(), env.store.sensors().await.unwrap());
    assert_eq!(
        fresh.traffic("m", i64::MIN, i64::MAX).await.unwrap(),
        env.store.traffic("m", i64::MIN, i64::MAX).await.unwrap()
    );
    assert_consistent(&fresh).await;
}

#[tokio::test]
async fn every_filter_operator_over_http_and_injection_attempts_change_nothing() {
    let env = TestEnv::start().await;
    let (running, base) = env.serve().await;
    let client = reqwest::Client::new();
    let t = 1_700_000_000_000i64;
    let body = json!([
        {"tag": "brasil.op.s1", "value": 10, "unit": "C", "timestamp": t},
        {"tag": "brasil.op.s2", "value": 20, "unit": "C", "timestamp": t + 1000},
        {"tag": "brasil.op.s3", "value": 30, "unit": "F", "timestamp": t + 2000},
        {"tag": "brasil.op.s4", "value": "open", "timestamp": t + 3000},
        {"tag": "brasil.xx.s5", "value": null, "timestamp": t + 4000}
    ]);
    assert_eq!(post(&client, &format!("{base}/api/v1/events?wait=true"), body, None).await.0, 201);
    let count = |query: String| {
        let client = client.clone();
        let base = base.clone();
        async move {
            let (status, page) = get(&client, &format!("{base}/api/v1/events?{query}")).await;
            assert_eq!(status, 200, "{query}: {page}");
            page["total"].as_u64().unwrap()
        }
    };
    let cases = [
        ("value=eq:20".to_owned(), 1),
        ("value=neq:20".to_owned(), 2),
        ("value=lt:20".to_owned(), 1),
        ("value=lte:20".to_owned(), 2),
        ("value=gt:20".to_owned(), 1),
        ("value=gte:20".to_owned(), 2),
        ("value=like:op%25".to_owned(), 1),
        ("tag=like:brasil.op.s_".to_owned(), 4),
        ("tag=neq:brasil.op.*".to_owned(), 1),
        ("tag=gt:brasil.op.s2".to_owned(), 3),
        ("unit=eq:C".to_owned(), 2),
        ("unit=neq:C".to_owned(), 3),
        ("status=eq:error".to_owned(), 1),
        ("status=neq:error".to_owned(), 4),
        (format!("timestamp=gte:{}&timestamp=lt:{}", t + 1000, t + 3000), 2),
        (format!("timestamp=eq:{}", t + 2000), 1),
        (format!("timestamp=lte:{}", t / 1000), 1),
    ];
    for (query, expected) in cases {
        assert_eq!(count(query.clone()).await, expected, "{query}");
    }

    // Injection attempts: values are compared in Rust, names come from an allow-list.
    for query in [
        "tag=like:%25%27%3B%20DELETE%20block%3B%20--",
        "value=eq:1%3B%20REMOVE%20TABLE%20block",
        "unit=eq:%27%20OR%201%3D1%20--",
    ] {
        assert_eq!(count(query.to_owned()).await, 0, "{query}");
    }
    for query in [
        "value%3BDROP=eq:1",
        "sort=value%3BDROP",
        "sort=tag:asc,DELETE",
        "tag=eq:brasil.op.s1%27%20OR%201%3D1",
        "limit=1;2",
    ] {
        let (status, problem) = get(&client, &format!("{base}/api/v1/events?{query}")).await;
        assert_eq!(status, 400, "{query}: {problem}");
        assert_eq!(problem["status"], 400);
    }
    assert_eq!(assert_consistent(&env.store).await, 5, "nothing leaked or broke");

    // Limits: a clear 413 as problem+json.
    let many: Vec<Value> = (0..10_001).map(|i| json!({"tag": "brasil.op.s1", "value": i})).collect();
    let resp = client.post(format!("{base}/api/v1/events")).json(&many).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let huge = format!("[{}]", vec![r#"{"tag":"brasil.op.s1","value":1}"#; 300_000].join(","));
    let resp = client
        .post(format!("{base}/api/v1/events"))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    running.shutdown().await;
}

#[tokio::test]
async fn csv_round_trip_exports_what_was_imported() {
    let env = TestEnv::start().await;
    let (running, base) = env.serve().await;
    let client = reqwest::Client::new();
    let mut file = String::from("tag,timestamp,value,unit\n");
    for i in 0..200i64 {
        let value = if i % 17 == 0 { "idle".to_owned() } else { format!("{}.5", i) };
        file.push_str(&format!("brasil.rt.s{},{},{value},kWh\n", i % 4, 1_700_000_000_000 + i * 30_000));
    }
    // The first row is already stored (through the JSON API, another message
    // id): the import skips it, whatever the duplicate window. A row repeated
    // within the file is skipped too.
    let first = json!({"tag": "brasil.rt.s0", "value": "idle", "unit": "kWh", "timestamp": 1_700_000_000_000i64});
    assert_eq!(post(&client, &format!("{base}/api/v1/events?wait=true"), first, None).await.0, 201);
    let repeated = format!("{file}brasil.rt.s1,1700000030000,2.5,kWh\n");
    let report: Value = client
        .post(format!("{base}/api/v1/events/import?wait=true"))
        .body(repeated)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((report["accepted"].as_u64(), report["duplicates"].as_u64()), (Some(199), Some(2)), "{report}");
    let text = client
        .get(format!("{base}/api/v1/events.csv?tag=eq:brasil.rt.>&sort=timestamp:asc"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let exported: Vec<(String, String, String, String)> = csv::Reader::from_reader(text.as_bytes())
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[1].to_owned(), r[2].to_owned(), r[4].to_owned(), r[5].to_owned())
        })
        .collect();
    let imported: Vec<(String, String, String, String)> = csv::Reader::from_reader(file.as_bytes())
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[0].to_owned(), r[1].to_owned(), r[2].to_owned(), r[3].to_owned())
        })
        .collect();
    assert_eq!(exported, imported);
    let again: Value =
        client.post(format!("{base}/api/v1/events/import")).body(file).send().await.unwrap().json().await.unwrap();
    assert_eq!((again["accepted"].as_u64(), again["duplicates"].as_u64()), (Some(0), Some(200)), "{again}");
    running.shutdown().await;
}

#[tokio::test]
async fn the_generator_publishes_n_random_readings() {
    let env = TestEnv::start().await;
    let (running, base) = env.serve().await;
    let client = reqwest::Client::new();
    let resp = client.post(format!("{base}/api/v1/generate/100")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let generated: Value = resp.json().await.unwrap();
    assert_eq!(generated["readings"], 100, "{generated}");
    let resp = client.post(format!("{base}/api/v1/simulate?count=50&sensors=5")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    env.drained(vigia_bus::READINGS, "persister").await;
    assert_eq!(assert_consistent(&env.store).await, 150);
    assert_eq!(client.post(format!("{base}/api/v1/simulate?count=0")).send().await.unwrap().status().as_u16(), 400);
    running.shutdown().await;
}

/// The constraints the handlers enforce are in the document (found by
/// schemathesis: without them it sends values that look valid and get 400).
#[test]
fn the_openapi_document_states_the_constraints_the_handlers_enforce() {
    let doc = serde_json::to_value(vigia_api::openapi()).unwrap();
    let op = |path: &str, method: &str| doc["paths"][path][method].clone();
    let param = |path: &str, method: &str, name: &str| {
        let params = op(path, method)["parameters"].as_array().cloned().unwrap_or_default();
        let found = params.into_iter().find(|p| p["name"] == name);
        found.unwrap_or_else(|| panic!("{method} {path} has no parameter {name}"))["schema"].clone()
    };
    let schema = |name: &str| doc["components"]["schemas"][name].clone();

    // 5. Path identifiers.
    for method in ["get", "put", "patch", "delete"] {
        assert_eq!(param("/api/v1/events/{id}", method, "id")["pattern"], "^[0-9]+-[0-9]+$", "{method}");
    }
    assert_eq!(param("/api/v1/alerts/{id}/ack", "post", "id")["pattern"], "^[0-9]+-[0-9]+-[A-Za-z0-9_-]+$");
    for method in ["get", "put", "delete"] {
        let tag = param("/api/v1/sensors/{tag}", method, "tag");
        assert_eq!(tag["pattern"], r"^[A-Za-z0-9_-]{1,64}(?:\.[A-Za-z0-9_-]{1,64}){1,7}$", "{method}");
    }

    // 6. Numeric bounds.
    for (path, method, name, min, max) in [
        ("/api/v1/counts", "get", "depth", 0, 8),
        ("/api/v1/dead-letters", "get", "count", 0, 1000),
        ("/api/v1/alerts", "get", "count", 0, 10_000),
        ("/api/v1/generate/{n}", "post", "n", 1, 100_000),
        ("/api/v1/simulate", "post", "count", 1, 100_000),
        ("/api/v1/simulate", "post", "sensors", 1, 100_000),
    ] {
        let s = param(path, method, name);
        assert_eq!((s["minimum"].as_i64(), s["maximum"].as_i64()), (Some(min), Some(max)), "{path} {name}: {s}");
    }

    // 7. Enumerations, with the empty value standing for "absent".
    let values = |s: Value| -> Vec<String> {
        s["enum"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(values(param("/api/v1/alerts", "get", "status")), ["", "open", "acknowledged", "cleared"]);
    assert_eq!(values(param("/api/v1/stats/rate", "get", "bucket")), ["", "1m", "1h"]);
    assert_eq!(values(param("/api/v1/stats/series", "get", "bucket")), ["", "1m", "1h", "1d"]);
    for path in ["/api/v1/stats/averages", "/api/v1/stats/mode"] {
        assert!(
            values(param(path, "get", "window")).starts_with(&["", "1h", "24h", "48h", "7d", "30d"].map(String::from))
        );
    }

    // 8. Grammars: prefixes, filters, times.
    let prefix = param("/api/v1/counts", "get", "prefix");
    assert!(prefix["pattern"].as_str().unwrap().ends_with(")?$"), "empty is allowed: {prefix}");
    for name in ["tag", "value", "status", "unit", "timestamp", "sort", "limit", "cursor"] {
        for path in ["/api/v1/events", "/api/v1/events.csv"] {
            assert!(param(path, "get", name)["pattern"].is_string(), "{path} {name}");
        }
    }
    assert!(param("/api/v1/stats/series", "get", "from")["pattern"].is_string());
    assert!(schema("ReadingIn")["properties"]["tag"]["pattern"].is_string());

    // 2. Values and times are unions, not objects.
    let types = |s: &Value| -> Vec<String> {
        s["oneOf"].as_array().unwrap().iter().map(|t| t["type"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(types(&schema("ReadingValue")), ["number", "string", "null"]);
    assert_eq!(types(&schema("TimeIn")), ["number", "string", "null"]);
    for (owner, field) in
        [("EventOut", "value"), ("Sensor", "last_value"), ("ReadingIn", "value"), ("CorrectionIn", "value")]
    {
        assert_eq!(schema(owner)["properties"][field]["$ref"], "#/components/schemas/ReadingValue", "{owner}.{field}");
    }
    assert_eq!(schema("ReadingIn")["properties"]["timestamp"]["$ref"], "#/components/schemas/TimeIn");

    // 9. One reading or 1 to 10,000, and an example that fits.
    let body = op("/api/v1/events", "post")["requestBody"]["content"]["application/json"].clone();
    let one_or_many = schema("ReadingsIn");
    let one_or_many = if body["schema"]["$ref"].is_string() { one_or_many } else { body["schema"].clone() };
    assert_eq!(one_or_many["oneOf"][0]["$ref"], "#/components/schemas/ReadingIn", "{one_or_many}");
    assert_eq!(one_or_many["oneOf"][1]["minItems"], 1);
    assert_eq!(one_or_many["oneOf"][1]["maxItems"], 10_000);
    assert!(!body["example"].to_string().contains("valor"), "the example uses only documented fields");

    // 10. Rules and thresholds are typed.
    assert_eq!(schema("RulesIn")["properties"]["rules"]["items"]["$ref"], "#/components/schemas/Rule");
    assert_eq!(schema("Sensor")["properties"]["thresholds"]["items"]["$ref"], "#/components/schemas/Threshold");
    let rule = schema("Rule");
    let required: Vec<&str> = rule["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(required, ["id", "pattern", "op", "threshold"]);
    assert_eq!(schema("Op")["enum"], serde_json::json!(["gt", "gte", "lt", "lte", "eq", "neq"]));
    assert_eq!(schema("Location")["properties"]["lat"]["minimum"], -90);

    // 11. The import example needs no `root`; `root` has an example too.
    let import = op("/api/v1/events/import", "post");
    assert!(import["requestBody"]["content"]["text/csv"]["example"].as_str().unwrap().starts_with("tag,"));
    assert_eq!(param("/api/v1/events/import", "post", "root")["examples"][0], "brasil");

    // 4 and 13. Every status the handlers answer, with its content.
    let delete = op("/api/v1/sensors/{tag}", "delete");
    assert!(delete["description"].as_str().unwrap().contains("readings stay"), "{delete}");
    for status in ["200", "202", "400", "503", "504"] {
        assert!(delete["responses"][status].is_object(), "DELETE /sensors/{{tag}} documents {status}");
    }
    assert!(delete["responses"]["202"]["content"]["application/json"].is_object());
    assert!(op("/api/v1/sensors/{tag}", "put")["responses"]["202"]["content"]["application/json"].is_object());
    assert!(op("/api/v1/sensors/{tag}", "get")["responses"]["400"].is_object());
    for method in ["put", "patch", "delete"] {
        for status in ["400", "404", "503", "504"] {
            assert!(op("/api/v1/events/{id}", method)["responses"][status].is_object(), "{method} {status}");
        }
    }
}
