//! Loss accounting: the audit reconciles the log with the store per tag,
//! and names an event deleted from the store behind the system's back.

use serde_json::{Value, json};
use vigia_bus::READINGS;

use crate::common::TestEnv;

async fn audit(client: &reqwest::Client, base: &str, query: &str) -> Value {
    let r = client.get(format!("{base}/api/v1/audit{query}")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test]
async fn the_audit_accounts_for_every_event_and_names_one_deleted_behind_its_back() {
    let env = TestEnv::start().await;
    let (running, base) = env.serve().await;
    let client = reqwest::Client::new();
    for i in 0..30 {
        env.publish_raw(&format!("brasil.sul.s{}", i % 3), format!(r#"{{"value": {i}}}"#).as_bytes()).await;
    }
    let batch: Vec<Value> = (0..10).map(|i| json!({"tag": "brasil.norte.b1", "value": i})).collect();
    let r = client.post(format!("{base}/api/v1/events?wait=true")).json(&batch).send().await.unwrap();
    assert_eq!(r.status(), 201, "stored, with ?wait=true");
    // A reading alone in its hour, so its block holds nothing else.
    let lonely = env.publish_raw("brasil.sul.s9", br#"{"value": 5, "timestamp": 1600000000000}"#).await;
    env.drained(READINGS, "persister").await;
    // One retraction: the log no longer expects that event.
    let gone = format!("{}-0", lonely - 1);
    let r = client.delete(format!("{base}/api/v1/events/{gone}?wait=true")).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    env.drained(READINGS, "persister").await;

    let report = audit(&client, &base, "").await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!((report["in_log"].as_u64(), report["stored"].as_u64()), (Some(40), Some(40)), "{report}");
    assert_eq!((report["gaps"].as_u64(), report["duplicates"].as_u64()), (Some(0), Some(0)));
    let b1 = report["tags"].as_array().unwrap().iter().find(|t| t["tag"] == "brasil.norte.b1").unwrap();
    assert_eq!((b1["in_log"].as_u64(), b1["stored"].as_u64()), (Some(9), Some(9)), "one of ten retracted: {b1}");
    let s0 = report["tags"].as_array().unwrap().iter().find(|t| t["tag"] == "brasil.sul.s0").unwrap();
    assert_eq!((s0["in_log"].as_u64(), s0["subject_messages"].as_u64()), (Some(10), Some(10)));

    // Behind the system's back: the lonely reading's block disappears from the store.
    env.store
        .execute_unchecked(&format!("DELETE block WHERE first_seq = {lonely} AND last_seq = {lonely}"))
        .await
        .unwrap();
    let report = audit(&client, &base, "?prefix=brasil.sul").await;
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["gaps"].as_u64(), Some(1), "{report}");
    let s9 = report["tags"].as_array().unwrap().iter().find(|t| t["tag"] == "brasil.sul.s9").unwrap();
    assert_eq!(s9["gaps"], json!([format!("{lonely}-0")]), "the audit names the missing event: {s9}");
    assert!(report["tags"].as_array().unwrap().iter().all(|t| t["tag"].as_str().unwrap().starts_with("brasil.sul")));

    // `vigia audit` prints the same and says it is not consistent.
    let text = vigia::audit_text(
        &vigia_api::audit(&env.bus, &env.store, &env.config.nats.roots, Some("brasil.sul"), None, None).await.unwrap(),
    );
    assert!(text.contains(&format!("{lonely}-0")) && text.contains("NOT CONSISTENT"), "{text}");
    running.shutdown().await;
}
