//! Bare rows, for `vigia bench`: the ceiling of what SurrealDB takes when
//! nothing is projected (no blocks, counters, rollups, registry or ledger),
//! so the persister's rate can be read as a share of it.

use surrealdb::types::SurrealValue;

use crate::{Store, StoreError};

#[derive(Debug, Clone, SurrealValue)]
struct BareRow {
    tag: String,
    ts: i64,
    value: f64,
}

impl Store {
    /// Inserts rows `first..first + count` into the `bare` table in one statement.
    #[doc(hidden)]
    pub async fn insert_bare_rows(&self, first: u64, count: u64) -> Result<(), StoreError> {
        let rows: Vec<BareRow> = (first..first + count)
            .map(|i| BareRow {
                tag: format!("brasil.bench.sensor{:04}", i % 2000),
                ts: i as i64,
                value: (i % 90) as f64,
            })
            .collect();
        self.db.query("INSERT INTO bare $rows RETURN NONE").bind(("rows", rows)).await?.check()?;
        Ok(())
    }
}
