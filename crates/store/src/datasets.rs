//! Datasets: uploaded CSV files loaded into tables of text, and the jobs
//! that load them.
//!
//! - `dataset:⟨name⟩`: what was uploaded (object, digest, columns), its job and state.
//! - `job:⟨id⟩`: one load, with its attempts and outcome.
//! - `dataset_<name>:<row>`: one row per record, a text field per column, the
//!   record key being the row's position in the file (0-based).
//! - `dataset_chunk:[job, n]`: chunk `n` of a job is committed. It is
//!   created in the same transaction as the chunk's rows, so a chunk is in
//!   the table wholly or not at all, and a resumed job skips exactly the
//!   chunks this table lists: nothing is loaded twice.
//!
//! Table names come from a [`DatasetName`] and reach SurrealDB as a bound
//! table value, never as query text.

use surrealdb::types::{Array, RecordId, RecordIdKey, SurrealValue, Table, Value as SValue};
use vigia_domain::{Column, DatasetName};

use crate::{Store, StoreError};

/// A dataset as registered.
#[derive(Debug, Clone, PartialEq, SurrealValue)]
pub struct DatasetRecord {
    pub name: String,
    /// The object in the `datasets` bucket.
    pub object: String,
    /// `SHA-256=<base64url>` of the file, as the object store computed it.
    pub digest: String,
    pub size: i64,
    /// Field names, in the file's order.
    pub columns: Vec<String>,
    /// The header cells they came from.
    pub headers: Vec<String>,
    pub job: String,
    /// `queued`, `loading`, `ready` or `failed`.
    pub state: String,
    /// Rows loaded, once `ready`.
    pub rows: Option<i64>,
    pub created_ms: i64,
}

impl DatasetRecord {
    pub fn columns(&self) -> Vec<Column> {
        self.columns
            .iter()
            .zip(&self.headers)
            .map(|(name, header)| Column { name: name.clone(), header: header.clone() })
            .collect()
    }
}

/// A load job as stored.
#[derive(Debug, Clone, PartialEq, SurrealValue)]
pub struct JobRecord {
    pub id: String,
    pub kind: String,
    pub dataset: String,
    /// `queued`, `running`, `done` or `failed`.
    pub state: String,
    /// Times a loader has started it.
    pub attempts: i64,
    /// Chunks the latest attempt found already committed and skipped.
    pub resumed_chunks: i64,
    pub chunk_rows: i64,
    pub parallelism: i64,
    /// Known once the whole file has been read.
    pub chunks_total: Option<i64>,
    pub rows_total: Option<i64>,
    pub error: Option<String>,
    pub queued_ms: i64,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
}

impl JobRecord {
    /// A dataset load as queued, before any loader has seen it.
    pub fn queued(id: &str, dataset: &DatasetName, now_ms: i64) -> JobRecord {
        JobRecord {
            id: id.to_owned(),
            kind: "dataset-load".into(),
            dataset: dataset.to_string(),
            state: "queued".into(),
            attempts: 0,
            resumed_chunks: 0,
            chunk_rows: 0,
            parallelism: 0,
            chunks_total: None,
            rows_total: None,
            error: None,
            queued_ms: now_ms,
            started_ms: None,
            finished_ms: None,
        }
    }
}

/// A job with its progress, counted from the committed chunks.
#[derive(Debug, Clone, PartialEq)]
pub struct JobProgress {
    pub job: JobRecord,
    pub chunks_done: u64,
    pub rows_loaded: u64,
}

#[derive(Debug, SurrealValue)]
struct Progress {
    chunks: i64,
    rows: i64,
}

fn dataset_id(name: &DatasetName) -> RecordId {
    RecordId::new("dataset", name.as_str())
}

fn job_id(id: &str) -> RecordId {
    RecordId::new("job", id)
}

fn chunk_id(job: &str, n: u64) -> RecordId {
    RecordId::new("dataset_chunk", Array::from(vec![SValue::from_t(job.to_owned()), SValue::from_t(n as i64)]))
}

/// SurrealDB's answer about a table never written to.
fn no_table(e: &surrealdb::Error) -> bool {
    let m = e.message();
    m.contains("table") && m.contains("does not exist")
}

fn table(name: &DatasetName) -> SValue {
    SValue::Table(Table::new(name.table()))
}

// The dataset must still be the one this job loads: a chunk committed after
// a DELETE would bring rows back.
const CHUNK: &str = "BEGIN TRANSACTION;
IF (SELECT VALUE job FROM ONLY $dataset_id) != $job { THROW \"vigia: the dataset was deleted\" };
CREATE $chunk SET job = $job, dataset = $dataset, rows = $n RETURN NONE;
INSERT INTO $table $rows RETURN NONE;
COMMIT TRANSACTION;";

impl Store {
    /// Registers a dataset and its queued job at once. `Ok(false)`: a
    /// dataset of that name exists already, and nothing was written.
    pub async fn register_dataset(&self, d: &DatasetRecord, job: &JobRecord) -> Result<bool, StoreError> {
        let name = DatasetName::parse(&d.name).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let result = self
            .db
            .query(
                "BEGIN TRANSACTION;
                 CREATE $id CONTENT $d RETURN NONE;
                 CREATE $job_id CONTENT $job RETURN NONE;
                 COMMIT TRANSACTION;",
            )
            .bind(("id", dataset_id(&name)))
            .bind(("d", d.clone()))
            .bind(("job_id", job_id(&job.id)))
            .bind(("job", job.clone()))
            .await?
            .check();
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.message().contains("already exists") => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The dataset called `name`, if any.
    pub async fn dataset(&self, name: &DatasetName) -> Result<Option<DatasetRecord>, StoreError> {
        let found: Option<DatasetRecord> =
            self.db.query("SELECT * OMIT id FROM ONLY $id").bind(("id", dataset_id(name))).await?.check()?.take(0)?;
        Ok(found)
    }

    /// The dataset whose file has this digest, if any.
    pub async fn dataset_by_digest(&self, digest: &str) -> Result<Option<DatasetRecord>, StoreError> {
        let found: Vec<DatasetRecord> = self
            .db
            .query("SELECT * OMIT id FROM dataset WHERE digest = $digest LIMIT 1")
            .bind(("digest", digest.to_owned()))
            .await?
            .check()?
            .take(0)?;
        Ok(found.into_iter().next())
    }

    /// Every dataset, by name.
    pub async fn datasets(&self) -> Result<Vec<DatasetRecord>, StoreError> {
        Ok(self.db.query("SELECT * OMIT id FROM dataset ORDER BY name").await?.check()?.take(0)?)
    }

    /// Removes a dataset: its rows, its chunk marks and its registration. Its job stays as history.
    pub async fn delete_dataset(&self, name: &DatasetName) -> Result<(), StoreError> {
        // A file with a header and no rows never made its table.
        match self.db.query("DELETE $table RETURN NONE").bind(("table", table(name))).await?.check() {
            Err(e) if !no_table(&e) => return Err(e.into()),
            _ => {}
        }
        self.db
            .query(
                "DELETE dataset_chunk WHERE dataset = $name RETURN NONE;
                 DELETE $id RETURN NONE;",
            )
            .bind(("name", name.as_str().to_owned()))
            .bind(("id", dataset_id(name)))
            .await?
            .check()?;
        Ok(())
    }

    /// A job and its progress.
    pub async fn job(&self, id: &str) -> Result<Option<JobProgress>, StoreError> {
        let mut response = self
            .db
            .query(
                "SELECT *, record::id(id) AS id FROM ONLY $id;
                 SELECT count() AS chunks, math::sum(rows) AS rows FROM dataset_chunk WHERE job = $job GROUP ALL;",
            )
            .bind(("id", job_id(id)))
            .bind(("job", id.to_owned()))
            .await?
            .check()?;
        let job: Option<JobRecord> = response.take(0)?;
        let progress: Option<Progress> = response.take(1)?;
        let (chunks, rows) = progress.map_or((0, 0), |p| (p.chunks, p.rows));
        Ok(job.map(|job| JobProgress { job, chunks_done: chunks.max(0) as u64, rows_loaded: rows.max(0) as u64 }))
    }

    /// The chunks of `job` already committed.
    pub async fn committed_chunks(&self, job: &str) -> Result<std::collections::BTreeSet<u64>, StoreError> {
        let chunks: Vec<i64> = self
            .db
            .query("SELECT VALUE record::id(id)[1] FROM dataset_chunk WHERE job = $job")
            .bind(("job", job.to_owned()))
            .await?
            .check()?
            .take(0)?;
        Ok(chunks.into_iter().map(|c| c as u64).collect())
    }

    /// Marks a job as started by a loader (one more attempt) and returns
    /// its chunk size: the first attempt's, whatever the loader's settings
    /// now, since a resumed load must cut the file where the first one did.
    pub async fn job_started(
        &self,
        id: &str,
        resumed_chunks: u64,
        chunk_rows: u64,
        parallelism: u64,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let mut response = self
            .db
            .query(
                "UPDATE $id SET state = 'running', attempts += 1, resumed_chunks = $resumed, error = NONE,
                    chunk_rows = IF chunk_rows > 0 { chunk_rows } ELSE { $chunk_rows },
                    parallelism = $parallelism, started_ms = started_ms ?? $now RETURN NONE;
                 UPDATE dataset SET state = 'loading' WHERE job = $job RETURN NONE;
                 SELECT VALUE chunk_rows FROM ONLY $id;",
            )
            .bind(("id", job_id(id)))
            .bind(("job", id.to_owned()))
            .bind(("resumed", resumed_chunks as i64))
            .bind(("chunk_rows", chunk_rows as i64))
            .bind(("parallelism", parallelism as i64))
            .bind(("now", now_ms))
            .await?
            .check()?;
        let rows: Option<i64> = response.take(2)?;
        Ok(rows.unwrap_or(chunk_rows as i64).max(1) as u64)
    }

    /// Commits chunk `n` of `job`: its rows (position, cells) and its mark, in one transaction.
    /// Fails without writing anything when the chunk was committed before.
    pub async fn commit_chunk(
        &self,
        name: &DatasetName,
        job: &str,
        n: u64,
        columns: &[Column],
        rows: &[(u64, Vec<String>)],
    ) -> Result<(), StoreError> {
        let records: Vec<serde_json::Value> = rows
            .iter()
            .map(|(position, cells)| {
                let mut o = serde_json::Map::with_capacity(columns.len() + 1);
                o.insert("id".into(), serde_json::Value::from(*position));
                for (i, c) in columns.iter().enumerate() {
                    o.insert(c.name.clone(), serde_json::Value::String(cells.get(i).cloned().unwrap_or_default()));
                }
                serde_json::Value::Object(o)
            })
            .collect();
        self.db
            .query(CHUNK)
            .bind(("chunk", chunk_id(job, n)))
            .bind(("dataset_id", dataset_id(name)))
            .bind(("job", job.to_owned()))
            .bind(("dataset", name.as_str().to_owned()))
            .bind(("n", rows.len() as i64))
            .bind(("table", table(name)))
            .bind(("rows", records))
            .await?
            .check()?;
        Ok(())
    }

    /// Ends a job: `Ok(rows)` makes the dataset ready, `Err(reason)` failed.
    pub async fn job_finished(
        &self,
        id: &str,
        outcome: Result<(u64, u64), String>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (state, dataset_state, chunks, rows, error) = match outcome {
            Ok((chunks, rows)) => ("done", "ready", Some(chunks as i64), Some(rows as i64), None),
            Err(reason) => ("failed", "failed", None, None, Some(reason)),
        };
        self.db
            .query(
                "UPDATE $id SET state = $state, finished_ms = $now, chunks_total = $chunks, rows_total = $rows,
                    error = $error RETURN NONE;
                 UPDATE dataset SET state = $dataset_state, rows = $rows WHERE job = $job RETURN NONE;",
            )
            .bind(("id", job_id(id)))
            .bind(("job", id.to_owned()))
            .bind(("state", state.to_owned()))
            .bind(("dataset_state", dataset_state.to_owned()))
            .bind(("chunks", chunks))
            .bind(("rows", rows))
            .bind(("error", error))
            .bind(("now", now_ms))
            .await?
            .check()?;
        Ok(())
    }

    /// Records why an attempt failed while the job will be tried again.
    pub async fn job_retrying(&self, id: &str, reason: &str) -> Result<(), StoreError> {
        self.db
            .query("UPDATE $id SET state = 'queued', error = $error RETURN NONE")
            .bind(("id", job_id(id)))
            .bind(("error", reason.to_owned()))
            .await?
            .check()?;
        Ok(())
    }

    /// Rows `start..start + count` of a dataset in file order, as (position, cells by column).
    pub async fn dataset_rows(
        &self,
        name: &DatasetName,
        columns: &[Column],
        start: u64,
        count: u64,
    ) -> Result<Vec<(u64, Vec<String>)>, StoreError> {
        let response = self
            .db
            .query("SELECT * FROM $table LIMIT $count START $start")
            .bind(("table", table(name)))
            .bind(("count", count as i64))
            .bind(("start", start as i64))
            .await?
            .check();
        let values: Vec<SValue> = match response {
            Ok(mut response) => response.take(0)?,
            // No rows were ever inserted: the table was never made.
            Err(e) if no_table(&e) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let mut rows = Vec::with_capacity(values.len());
        for value in values {
            let SValue::Object(object) = value else {
                return Err(StoreError::Corrupt(format!("a row of {} is not an object", name.table())));
            };
            let mut position = None;
            let mut cells = vec![String::new(); columns.len()];
            for (field, v) in object {
                if field == "id" {
                    if let SValue::RecordId(RecordId { key: RecordIdKey::Number(n), .. }) = v {
                        position = Some(n as u64);
                    }
                } else if let Some(i) = columns.iter().position(|c| c.name == field) {
                    cells[i] = match v {
                        SValue::String(s) => s,
                        SValue::None | SValue::Null => String::new(),
                        other => other.into_json_value().to_string(),
                    };
                }
            }
            let position =
                position.ok_or_else(|| StoreError::Corrupt(format!("a row of {} has no position", name.table())))?;
            rows.push((position, cells));
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreConfig;

    fn dataset(name: &str, job: &str) -> (DatasetRecord, JobRecord) {
        let d = DatasetRecord {
            name: name.into(),
            object: format!("{job}.csv"),
            digest: format!("SHA-256={job}"),
            size: 10,
            columns: vec!["a".into(), "id_".into()],
            headers: vec!["a".into(), "id".into()],
            job: job.into(),
            state: "queued".into(),
            rows: None,
            created_ms: 1,
        };
        (d, JobRecord::queued(job, &DatasetName::parse(name).unwrap(), 1))
    }

    #[tokio::test]
    async fn chunks_commit_once_and_rows_read_back_in_file_order() {
        let store = Store::open(&StoreConfig::memory()).await.unwrap();
        let name = DatasetName::parse("people").unwrap();
        let (d, j) = dataset("people", "load-1");
        assert!(store.register_dataset(&d, &j).await.unwrap());
        assert!(!store.register_dataset(&dataset("people", "load-2").0, &dataset("people", "load-2").1).await.unwrap());
        assert_eq!(store.dataset_by_digest("SHA-256=load-1").await.unwrap().unwrap().name, "people");
        assert_eq!(store.job_started("load-1", 0, 2, 4, 5).await.unwrap(), 2);
        assert_eq!(store.job_started("load-1", 1, 9, 4, 6).await.unwrap(), 2, "the first attempt's chunk size stays");
        let cols = d.columns();
        let rows = |from: u64| (from..from + 2).map(|i| (i, vec![format!("v{i}"), String::new()])).collect::<Vec<_>>();
        store.commit_chunk(&name, "load-1", 1, &cols, &rows(2)).await.unwrap();
        store.commit_chunk(&name, "load-1", 0, &cols, &rows(0)).await.unwrap();
        assert!(store.commit_chunk(&name, "load-1", 0, &cols, &rows(0)).await.is_err(), "a chunk commits once");
        assert!(store.commit_chunk(&name, "load-x", 2, &cols, &rows(4)).await.is_err(), "only the dataset's own job");
        assert_eq!(store.committed_chunks("load-1").await.unwrap().into_iter().collect::<Vec<_>>(), vec![0, 1]);
        let progress = store.job("load-1").await.unwrap().unwrap();
        assert_eq!((progress.chunks_done, progress.rows_loaded, progress.job.attempts), (2, 4, 2));
        assert_eq!((progress.job.id.as_str(), progress.job.state.as_str()), ("load-1", "running"));
        store.job_finished("load-1", Ok((2, 4)), 7).await.unwrap();
        let read = store.dataset_rows(&name, &cols, 0, 10).await.unwrap();
        assert_eq!(read, rows(0).into_iter().chain(rows(2)).collect::<Vec<_>>());
        assert_eq!(store.dataset_rows(&name, &cols, 3, 10).await.unwrap().len(), 1);
        let ready = store.dataset(&name).await.unwrap().unwrap();
        assert_eq!((ready.state.as_str(), ready.rows), ("ready", Some(4)));
        assert_eq!(store.job("load-1").await.unwrap().unwrap().job.rows_total, Some(4));
        store.delete_dataset(&name).await.unwrap();
        assert!(store.dataset(&name).await.unwrap().is_none());
        assert!(store.dataset_rows(&name, &cols, 0, 10).await.unwrap().is_empty());
        assert!(store.committed_chunks("load-1").await.unwrap().is_empty());
        assert!(store.job("load-1").await.unwrap().is_some(), "the job stays as history");

        // A header alone: no row, so no table, and reads and deletes still answer.
        let empty = DatasetName::parse("empty").unwrap();
        let (d, j) = dataset("empty", "load-3");
        assert!(store.register_dataset(&d, &j).await.unwrap());
        assert!(store.dataset_rows(&empty, &cols, 0, 10).await.unwrap().is_empty());
        store.delete_dataset(&empty).await.unwrap();
        assert!(store.dataset(&empty).await.unwrap().is_none());
    }
}
