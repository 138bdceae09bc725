//! The `vigia` binary's library: configuration, the workers, and the
//! commands that wire them (`up`, `persist`, `alert`, `sim`, `serve`,
//! `replay`, `verify`, `audit`, `bench`, `peer`, `openapi`). `main.rs` only parses arguments and calls in here,
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

/// `vigia audit`'s report as text: one line per tag with a problem, then the totals.
pub fn audit_text(r: &vigia_api::AuditReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for t in &r.tags {
        let trouble = t.gap_count + t.duplicate_count + t.dead_lettered.len();
        if trouble == 0 {
            continue;
        }
        let _ = writeln!(
            out,
            "{}: {} in the log, {} stored, {} gaps {:?}, {} duplicates {:?}, dead letters {:?}",
            t.tag, t.in_log, t.stored, t.gap_count, t.gaps, t.duplicate_count, t.duplicates, t.dead_lettered
        );
    }
    let _ = writeln!(
        out,
        "{} tags, log sequences {}..={}: {} events in the log, {} stored, {} gaps, {} duplicates, {} dead-lettered messages: {}",
        r.tags.len(),
        r.log_first_seq,
        r.log_last_seq,
        r.in_log,
        r.stored,
        r.gaps,
        r.duplicates,
        r.dead_lettered,
        if r.ok { "consistent" } else { "NOT CONSISTENT" }
    );
    out
}
