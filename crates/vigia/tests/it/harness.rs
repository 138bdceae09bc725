//! `vigia bench` on a small load: every phase runs to its end on real
//! servers and reports what it measured. No figure is held to a speed here
//! (speeds come from release runs, docs/performance.md); what is checked is
//! that the harness counts what it says it counts.

use std::time::Duration;

use vigia::bench::BenchOptions;

use crate::common::{alone, test_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_harness_measures_every_phase_and_drains_its_backlog() {
    let _turn = alone().await;
    // The harness starts its own nats-server and stores; only nats.dir, roots and the persister settings are used.
    let mut config = test_config("nats://127.0.0.1:1");
    // The alerter on a consumer of its own, which the harness waits for
    // apart; the default is the next test's.
    config.alerts.consumer = vigia::config::AlertsConsumer::Own;
    let options = BenchOptions {
        sensors: 20,
        events: 2_000,
        batch: 1,
        latency_rate: 200.0,
        latency_time: Duration::from_secs(2),
        backlog: 3_000,
        message_ids: false,
        alerter: true,
    };
    let report = vigia::bench::run(&config, options).await.expect("the harness run succeeds");

    assert_eq!(report.messages, 2_000, "one message per reading in the throughput phase");
    assert!(report.jetstream_ceiling > 0.0 && report.surreal_ceiling > 0.0, "{report}");
    assert_eq!(report.jetstream_ceilings.len(), 2 * vigia::bench::CEILING_RUNS, "{report}");
    let mut runs = report.jetstream_ceilings.clone();
    runs.sort_by(f64::total_cmp);
    assert_eq!(report.jetstream_ceiling, (runs[2] + runs[3]) / 2.0, "the median of the six runs: {report}");
    assert!(report.publish_rate > 0.0 && report.pipeline_rate > 0.0, "{report}");
    assert!(
        report.pipeline_rate <= report.publish_rate,
        "stored-and-counted cannot outrun acknowledged publishing: {report}"
    );
    // Other tests' persisters in this process add to the totals, never take away.
    assert!(report.flushes.flushes >= 1 && report.flushes.events >= 1, "the pipeline's flushes: {report}");
    let judged = report.judged_rate.expect("the alerter ran beside the persister");
    assert!(judged > 0.0 && judged <= report.pipeline_rate, "judged after stored and counted: {report}");
    let alerts = report.alerts.expect("the alert projector's share is reported with the alerter");
    assert!(alerts.messages > 0, "the simulated values cross the default threshold: {report}");
    // One probe every 50 ms for 2 s.
    assert!((35..=41).contains(&report.latency_samples), "{} probes: {report}", report.latency_samples);
    assert!(report.latency_p50 <= report.latency_p99 && report.latency_p99 <= report.latency_max, "{report}");
    assert!(report.peak_rss_mib > 0.0, "{report}");

    let backlog = report.backlog.clone().expect("the backlog phase ran");
    assert_eq!(backlog.messages, 3_000);
    assert!(backlog.drain_rate > 0.0, "{report}");
    assert!(backlog.rss_before_mib > 0.0 && backlog.peak_rss_mib >= backlog.rss_before_mib, "{report}");
    let text = report.to_string();
    assert!(text.contains("backlog of 3000 messages drained"), "{text}");
    assert!(text.contains("ratio to the JetStream ceiling"), "{text}");
    assert!(text.contains("persister flushes (transactions)"), "{text}");
    assert!(text.contains("persister and alerter") && text.contains("judged by the alerter"), "{text}");
    assert!(text.contains("alert events, all stored"), "{text}");
}

/// By default (`[alerts] consumer = "auto"`, and the harness's store is
/// embedded) the alerter judges the persister's pulls: nothing waits on the
/// alerter's own consumer, and a message counted as stored was judged too.
/// A configured store server does not change that: the run's store is the
/// harness's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_harness_runs_the_alerter_on_the_persisters_consumer() {
    let _turn = alone().await;
    let mut config = test_config("nats://127.0.0.1:1");
    config.store.url = "ws://127.0.0.1:1".into();
    assert_eq!(config.alerts.consumer, vigia::config::AlertsConsumer::Auto, "the default");
    // The device path with the alerter, as by default; no backlog phase.
    let options = BenchOptions {
        sensors: 20,
        events: 2_000,
        latency_rate: 200.0,
        latency_time: Duration::from_secs(1),
        ..BenchOptions::default()
    };
    assert!(options.alerter && options.batch == 1 && options.backlog == 0);
    let report = vigia::bench::run(&config, options).await.expect("the harness run succeeds");
    assert_eq!(report.messages, 2_000, "{report}");
    assert!(report.pipeline_rate > 0.0, "{report}");
    assert_eq!(report.judged_rate, Some(report.pipeline_rate), "judged before stored: {report}");
    let text = report.to_string();
    assert!(text.contains("on the persister's consumer"), "{text}");
}
