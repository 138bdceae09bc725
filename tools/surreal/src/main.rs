//! `surreal`: the SurrealDB server, exactly as the upstream binary starts it
//! (`surreal start --user root --pass root memory`), built from the
//! `surrealdb-server` crate. Used only by Vigia's remote-store tests and
//! local runs; never linked into Vigia.

// SurrealDB's async query engine needs a deeper layout computation than
// rustc's default allows, as in upstream's own binary crate.
#![recursion_limit = "256"]

use std::process::ExitCode;

fn main() -> ExitCode {
    surrealdb_server::init(surrealdb_core::CommunityComposer())
}
