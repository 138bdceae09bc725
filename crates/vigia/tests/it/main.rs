//! Integration tests, in one binary so SurrealDB is linked once. Each test
//! starts its own nats-server and embedded SurrealDB.

mod alerts;
mod api;
mod common;
mod exactly_once;
mod lifecycle;
mod openapi;
mod pipeline;
