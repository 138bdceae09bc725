//! Group publishing (`vigia_bus::GroupPublisher`): concurrent small batches
//! share log messages, and every caller's event ids still name its own
//! readings, through the HTTP API and through the bus directly.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::future::join_all;
use serde_json::{Value, json};
use vigia_bus::{GroupLimits, GroupPublisher, Part, READINGS};
use vigia_domain::{BatchItem, ItemValue, Tag, Value as Value_, decode_message};

use crate::common::{TestEnv, assert_consistent, wait_for};

fn part(sensor: usize, value: f64) -> Part {
    let tag = Tag::parse(&format!("brasil.sul.sensor{sensor:03}")).unwrap();
    let item = BatchItem {
        tag: tag.to_string(),
        ts: Some(1_700_000_000_000 + sensor as i64),
        value: Some(ItemValue::Number(value)),
        unit: None,
        meta: Default::default(),
    };
    Part { tags: vec![tag], items: vec![item], bytes: 100 }
}

#[tokio::test]
async fn parts_queued_together_go_out_as_one_message_in_order() {
    let env = TestEnv::start().await;
    let group = GroupPublisher::spawn(env.bus.publisher(), GroupLimits { in_flight: 1, ..GroupLimits::default() });
    // `submit` queues synchronously and this test's runtime has one thread, so
    // the grouping task sees all fifty parts at once.
    let placed: Vec<_> = (0..50).map(|i| group.submit(part(i, i as f64 * 1.5))).collect();
    let placed: Vec<_> = join_all(placed).await.into_iter().map(|r| r.expect("answered").expect("stored")).collect();

    let seq = placed[0].seq;
    assert!(placed.iter().all(|p| p.seq == seq), "one message: {placed:?}");
    assert_eq!(placed.iter().map(|p| p.first_idx).collect::<Vec<_>>(), (0..50).collect::<Vec<u32>>());
    assert_eq!(env.bus.usage(READINGS).await.unwrap().messages, 1);

    let message = env.bus.readings_message(seq).await.unwrap();
    let readings = decode_message(
        &message.subject,
        message.event.as_deref(),
        message.version.as_deref(),
        &message.payload,
        message.published_ms,
    )
    .into_readings();
    assert_eq!(message.subject, "brasil.sul");
    for (i, p) in placed.iter().enumerate() {
        let r = &readings[p.first_idx as usize];
        assert_eq!(r.tag.as_str(), format!("brasil.sul.sensor{i:03}"));
        assert_eq!(r.value, Value_::Number(i as f64 * 1.5));
    }

    // Over the reading limit, the queue splits into messages.
    let group = GroupPublisher::spawn(
        env.bus.publisher(),
        GroupLimits { readings: 20, in_flight: 1, ..GroupLimits::default() },
    );
    let placed = join_all((0..50).map(|i| group.submit(part(i, 1.0)))).await;
    let seqs: BTreeSet<u64> = placed.into_iter().map(|r| r.unwrap().unwrap().seq).collect();
    assert_eq!(seqs.len(), 3, "20 + 20 + 10 readings: {seqs:?}");
}

#[tokio::test]
async fn concurrent_posts_share_messages_and_keep_their_own_ids() {
    let env = TestEnv::start().await;
    let (running, base) = env.serve().await;
    let client = reqwest::Client::new();
    let url = format!("{base}/api/v1/events");
    let posts = (0..200).map(|i| {
        let body =
            json!({"tag": format!("brasil.norte.s{i:03}"), "value": i, "timestamp": 1_700_000_000_000i64 + i as i64});
        let (client, url) = (client.clone(), url.clone());
        async move {
            let resp = client.post(&url).json(&body).send().await.expect("request");
            assert_eq!(resp.status().as_u16(), 202);
            let accepted: Value = resp.json().await.expect("json");
            accepted["messages"][0]["ids"][0].as_str().expect("an id").to_owned()
        }
    });
    let ids: Vec<String> = join_all(posts).await;
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 200, "every reading has its own id");
    let messages = env.bus.usage(READINGS).await.unwrap().messages;
    assert!((1..=200).contains(&messages), "{messages} messages for 200 requests");

    let store = env.store.clone();
    wait_for("the 200 readings to be stored", Duration::from_secs(30), || {
        let store = store.clone();
        async move { vigia::check::verify(&store).await.is_ok_and(|r| r.events == 200) }
    })
    .await;
    assert_eq!(assert_consistent(&env.store).await, 200);
    for (i, id) in ids.iter().enumerate() {
        let event: Value = client.get(format!("{base}/api/v1/events/{id}")).send().await.unwrap().json().await.unwrap();
        assert_eq!(
            (event["tag"].as_str(), event["value"].as_f64()),
            (Some(format!("brasil.norte.s{i:03}").as_str()), Some(i as f64)),
            "{id}"
        );
    }
    running.shutdown().await;
}
