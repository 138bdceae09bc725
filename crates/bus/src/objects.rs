//! Uploaded files in the `datasets` object store bucket, and the jobs that
//! load them, queued on the `JOBS` work queue.
//!
//! The object store cuts a file into chunks on `$O.datasets.C.<nuid>` and
//! records its SHA-256 digest; reading an object back checks that digest, so
//! a damaged object fails the read instead of loading half-true rows.

use async_nats::jetstream::object_store::{Object, ObjectStore};
use bytes::Bytes;

use crate::{Bus, BusError, DATASETS_BUCKET};

/// The subject of dataset load jobs on `JOBS`.
pub const LOAD_JOB_SUBJECT: &str = "jobs.datasets.load";

/// An object as stored: its name, size and digest (`SHA-256=<base64url>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub name: String,
    pub size: u64,
    pub chunks: u64,
    pub digest: String,
}

impl Bus {
    async fn datasets_bucket(&self) -> Result<ObjectStore, BusError> {
        self.js
            .get_object_store(DATASETS_BUCKET)
            .await
            .map_err(|e| BusError::JetStream(format!("object store {DATASETS_BUCKET}: {e}")))
    }

    /// Stores everything `data` yields as object `name` of the datasets bucket.
    pub async fn put_dataset_object(
        &self,
        name: &str,
        data: &mut (impl tokio::io::AsyncRead + Unpin),
    ) -> Result<StoredObject, BusError> {
        let info = self
            .datasets_bucket()
            .await?
            .put(name, data)
            .await
            .map_err(|e| BusError::JetStream(format!("storing object {name}: {e}")))?;
        Ok(StoredObject {
            name: info.name,
            size: info.size as u64,
            chunks: info.chunks as u64,
            digest: info.digest.unwrap_or_default(),
        })
    }

    /// Reads object `name` back; the reader fails at the end if the digest does not match.
    pub async fn open_dataset_object(&self, name: &str) -> Result<Object, BusError> {
        self.datasets_bucket()
            .await?
            .get(name)
            .await
            .map_err(|e| BusError::JetStream(format!("reading object {name}: {e}")))
    }

    /// Removes object `name`; one already gone is not an error.
    pub async fn delete_dataset_object(&self, name: &str) -> Result<(), BusError> {
        let bucket = self.datasets_bucket().await?;
        match bucket.delete(name).await {
            Ok(()) => Ok(()),
            Err(e) if bucket.info(name).await.is_err() => {
                tracing::debug!(object = name, error = %e, "Object already gone.");
                Ok(())
            }
            Err(e) => Err(BusError::JetStream(format!("deleting object {name}: {e}"))),
        }
    }

    /// Queues a job on `subject`; `job_id` is the message id, so queuing it twice queues it once.
    pub async fn queue_job(&self, subject: &str, job_id: &str, payload: Bytes) -> Result<u64, BusError> {
        let ack = self
            .publisher()
            .send(subject.to_owned(), None, payload, Some(job_id))
            .await
            .map_err(|e| BusError::JetStream(e.to_string()))?
            .await
            .map_err(|e| BusError::JetStream(format!("queuing job {job_id}: {e}")))?;
        Ok(ack.sequence)
    }
}
