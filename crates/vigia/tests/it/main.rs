//! Integration tests, in one binary so SurrealDB is linked once. Each test
//! starts its own nats-server and embedded SurrealDB.

mod alerts;
mod any_bytes;
mod api;
mod child;
mod common;
mod dashboard;
mod exactly_once;
mod faults;
mod lifecycle;
mod openapi;
mod peer;
mod pipeline;
mod security;
mod slow_clients;
mod store_faults;
mod tls;
