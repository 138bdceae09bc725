//! The `vigia` binary's library: configuration, the workers, and the
//! commands that wire them (`up`, `persist`, `alert`, `sim`, `serve`,
//! `replay`, `verify`, `bench`, `peer`, `openapi`). `main.rs` only parses arguments and calls in here,
//! so tests run the same code with their own NATS, store and listener.

pub mod app;
pub mod bench;
pub mod check;
pub mod config;
pub mod nats_server;
pub mod peer;
pub mod replay;
pub mod workers;

pub use config::Config;
