//! Integration tests, in one binary so SurrealDB is linked once. Each test
//! starts its own nats-server and embedded SurrealDB.

mod alerts;
mod any_bytes;
mod api;
mod audit;
mod backfill;
mod backpressure;
mod child;
mod common;
mod dashboard;
mod datasets;
mod deploy_files;
mod exactly_once;
mod faults;
mod group;
mod harness;
mod lifecycle;
mod mqtt;
mod observability;
mod openapi;
mod peer;
mod pipeline;
#[cfg(feature = "remote-store")]
mod remote;
mod retention;
mod security;
mod slow_clients;
mod store_faults;
mod tls;
