//! `vigia peer` without InfluxDB: the Vigia side on a small dataset, posted
//! through the API and stored by the persister, answers the 30-day averages
//! and the counts per region exactly as the dataset's generator sums them.

use vigia::peer::PeerOptions;

use crate::common::{alone, test_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vigia_answers_the_peer_dataset_as_the_generator_sums_it() {
    let _turn = alone().await;
    // The peer starts its own nats-server and store; only nats.dir and the persister settings are used.
    let config = test_config("nats://127.0.0.1:1");
    let options = PeerOptions {
        sensors: 50,
        events: 3_000,
        writers: 2,
        batch: 250,
        runs: 2,
        influx: false,
        ..PeerOptions::default()
    };
    let table = vigia::peer::run(&config, options).await.expect("the peer run succeeds");
    assert!(table.influx.is_none());
    let vigia = table.vigia.clone().expect("Vigia ran");
    assert_eq!(vigia.averages_check.expected, 50, "one mean per sensor");
    assert!(vigia.averages_check.holds(), "averages: {}", vigia.averages_check);
    assert_eq!(vigia.counts_check.expected, 5, "one count per region");
    assert!(vigia.counts_check.holds(), "counts: {}", vigia.counts_check);
    assert!(vigia.ingest_rate > 0.0 && vigia.averages_ms > 0.0 && vigia.counts_ms > 0.0);
    assert!(table.to_string().contains("50/50 agree"), "{table}");
}
