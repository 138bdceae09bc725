//! JetStream publish with acknowledgements on a `nats-server` the bench
//! starts (JetStream on, temporary store, the repository's `READINGS`
//! stream): raw async-nats against Vigia's `Publisher`, each both pipelined
//! (1,000 publishes in flight, then every ack awaited) and one at a time
//! (each publish waits for its ack, as a device with `publish_retrying` does).
//!
//! Run: `cargo bench --workspace --bench publish` (needs `nats-server`).

use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vigia_bus::{Bus, Topology};
use vigia_testkit::{NatsServer, workspace_root};

const IN_FLIGHT: u64 = 1000;

fn publish(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let nats = NatsServer::start();
    let bus = rt.block_on(Bus::connect(nats.url())).expect("connect to the bench's nats-server");
    let topology = Topology::load(&workspace_root().join("nats"), &["brasil".to_owned()]).expect("nats/ loads");
    rt.block_on(topology.apply(bus.jetstream())).expect("topology applies");
    let (js, publisher) = (bus.jetstream().clone(), bus.publisher());
    let payload = Bytes::from_static(br#"{"value": 21.5, "unit": "C"}"#);
    let subject = "brasil.sudeste.sensor01";
    let mut next_id = 0u64;

    let mut group = c.benchmark_group("jetstream_publish");
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(IN_FLIGHT));
    group.bench_function("raw_async_nats/pipelined", |b| {
        b.to_async(&rt).iter(|| async {
            let mut acks = Vec::with_capacity(IN_FLIGHT as usize);
            for _ in 0..IN_FLIGHT {
                acks.push(js.publish(subject, payload.clone()).await.unwrap());
            }
            for ack in acks {
                ack.await.unwrap();
            }
        })
    });
    group.bench_function("vigia_publisher/pipelined", |b| {
        b.iter(|| {
            let first = next_id;
            next_id += IN_FLIGHT;
            rt.block_on(async {
                let mut acks = Vec::with_capacity(IN_FLIGHT as usize);
                for i in first..first + IN_FLIGHT {
                    let id = format!("bench-{i}");
                    acks.push(publisher.send(subject, None, payload.clone(), Some(&id)).await.unwrap());
                }
                for ack in acks {
                    ack.await.unwrap();
                }
            })
        })
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("raw_async_nats/one_at_a_time", |b| {
        b.to_async(&rt).iter(|| async { js.publish(subject, payload.clone()).await.unwrap().await.unwrap() })
    });
    group.bench_function("vigia_publisher/one_at_a_time", |b| {
        b.iter(|| {
            next_id += 1;
            let id = format!("bench-{next_id}");
            rt.block_on(publisher.publish_retrying(subject.into(), None, payload.clone(), &id, Duration::from_secs(5)))
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, publish);
criterion_main!(benches);
