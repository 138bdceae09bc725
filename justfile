# Vigia recipes. `just --list` shows them with their descriptions.

set dotenv-load := false

export CARGO_TARGET_DIR := env_var_or_default("CARGO_TARGET_DIR", env_var("HOME") + "/.cache/vigia-target")

# Run everything in one process (NATS found or started, embedded SurrealDB, workers, API, simulator)
up *ARGS:
    cargo run --release -- up {{ARGS}}

# Simulate a fleet against the configured NATS (e.g. just sim --sensors 2000 --rate 1)
sim *ARGS:
    cargo run --release -- sim {{ARGS}}

# Run every test (the README's test command)
test:
    cargo test --workspace

# Run the tests against a real SurrealDB server and separate vigia processes (needs `just surreal` first)
test-remote:
    cargo test --workspace --features vigia/remote-store --test it remote

# Build the SurrealDB 3.3.5 server binary `surreal` from crates.io into ~/.cargo/bin (long: over an hour on a busy 2-core machine)
surreal:
    CARGO_TARGET_DIR="$HOME/.cache/surreal-target" nice -n 10 cargo install --locked --path tools/surreal --root "$HOME/.cargo"

# Run the criterion benches (release build), all or one (just bench queries). `--workspace`,
# not `-p vigia-benches`: the features then match the release build's, so SurrealDB is not rebuilt.
bench NAME='*' *ARGS:
    cargo bench --workspace --bench '{{NAME}}' {{ARGS}}

# End-to-end harness on a private nats-server and temporary stores (e.g. just harness --batch 500); docs/performance.md
harness *ARGS:
    cargo run --release -- bench {{ARGS}}

# HTTP load report at 500 to 10,000 connections (oha; release build) into docs/load-test.md
load *ARGS:
    scripts/load-test.sh {{ARGS}}

# Vigia beside InfluxDB 1.6 (apt-get install -y influxdb): same events, same two queries, ratios (e.g. just peer --events 100000); docs/performance.md
peer *ARGS:
    cargo run --release -- peer {{ARGS}}

# Regenerate openapi/openapi.json from the code
openapi:
    cargo run -- openapi --out openapi/openapi.json

# Format the code
fmt:
    cargo fmt --all

# Lint as CI does
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# Check docker-compose.yml against the Compose Specification schema (pip install check-jsonschema)
compose-check:
    check-jsonschema --schemafile .ci/compose-spec.json docker-compose.yml

# Rebuild a fresh store from the streams (e.g. just replay surrealkv://data/replay)
replay INTO:
    cargo run --release -- replay --into {{INTO}}

# Check that counters, rollups and registry equal a scan of the stored events
verify:
    cargo run --release -- verify

# Three-node NATS JetStream cluster on loopback (nats/cluster/); Ctrl-C stops it
cluster:
    #!/usr/bin/env bash
    set -euo pipefail
    trap 'kill 0' EXIT
    for i in 1 2 3; do nats-server -c nats/cluster/n$i.conf & done
    echo "cluster up; run Vigia with VIGIA_NATS__URL=nats://127.0.0.1:4231,nats://127.0.0.1:4232,nats://127.0.0.1:4233 VIGIA_NATS__REPLICAS=3"
    wait

# Property-based API testing with schemathesis against a fresh Vigia (docs/api-testing.md)
schemathesis:
    cargo build -p vigia
    scripts/schemathesis.sh
