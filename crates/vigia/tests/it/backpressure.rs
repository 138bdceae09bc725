//! Visible backpressure: with the store behind the log, HTTP ingest answers
//! 503 with `Retry-After` and the lag instead of accepting more; `/health`
//! shows the lag and a stream limit that is close; device messages on NATS
//! are never refused and land once the persister runs.

use std::time::Duration;

use serde_json::{Value, json};
use vigia::app::Parts;
use vigia_bus::READINGS;

use crate::common::{TestEnv, assert_consistent, persister_only, wait_for};

async fn post(client: &reqwest::Client, base: &str) -> reqwest::Response {
    let body = json!([{"tag": "brasil.sul.http", "value": 1.5}]);
    client.post(format!("{base}/api/v1/events")).json(&body).send().await.expect("the API answers")
}

#[tokio::test]
async fn a_store_behind_the_log_makes_http_ingest_wait_and_health_say_why() {
    let mut env = TestEnv::start().await;
    env.config.backpressure.max_lag_messages = 20;
    // The stream's message limit, so that 50 stored messages are 5/6 of it.
    let mut stream = env.bus.jetstream().get_stream(READINGS).await.unwrap();
    let mut config = stream.info().await.unwrap().config.clone();
    config.max_messages = 60;
    env.bus.jetstream().update_stream(config).await.unwrap();

    // The API alone: nothing projects the log yet, so devices' messages pile up.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let api = env.run(Parts { http: Some(listener), ..Parts::default() });
    for i in 0..50 {
        env.publish_raw(&format!("brasil.sul.device{}", i % 5), format!(r#"{{"value": {i}}}"#).as_bytes()).await;
    }
    let client = reqwest::Client::new();
    // The lag is read at most every 500 ms.
    let started = std::time::Instant::now();
    let refused = loop {
        let r = post(&client, &base).await;
        if r.status() == 503 {
            break r;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "HTTP ingest never refused: {}", r.status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let retry: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After is a number of seconds: {retry}");
    assert_eq!(refused.headers()["content-type"], "application/problem+json");
    let problem: Value = refused.json().await.unwrap();
    assert!(problem["lag_messages"].as_u64().unwrap() >= 50, "{problem}");
    assert!(problem["lag_seconds"].as_f64().unwrap() >= 0.0, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("retry after"), "{problem}");

    let health: Value = client.get(format!("{base}/health")).send().await.unwrap().json().await.unwrap();
    let backlog = &health["backlog"];
    assert_eq!(backlog["ingest"], "refusing", "{health}");
    assert!(backlog["lag_messages"].as_u64().unwrap() >= 50, "{health}");
    assert_eq!(backlog["stream"]["fullest"], "messages", "{health}");
    let warnings: Vec<&str> = backlog["warnings"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(warnings.iter().any(|w| w.contains("of its messages limit")), "{warnings:?}");
    assert!(warnings.iter().any(|w| w.contains("HTTP ingest answers 503")), "{warnings:?}");

    // The persister catches up: every device message lands, and HTTP is open again.
    let persister = env.run(persister_only());
    env.drained(READINGS, "persister").await;
    assert_eq!(assert_consistent(&env.store).await, 50, "the devices' backlog was held, not dropped");
    wait_for("HTTP ingest to accept again", Duration::from_secs(10), || {
        let (client, base) = (&client, &base);
        async move { post(client, base).await.status() == 202 }
    })
    .await;
    let health: Value = client.get(format!("{base}/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["backlog"]["ingest"], "open", "{health}");
    persister.shutdown().await;
    api.shutdown().await;
}
