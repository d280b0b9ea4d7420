//! The `JobQueue` port, with Azure Storage Queue semantics: a message sent
//! with an initial delay becomes visible later; a receive hides it for a
//! visibility timeout and counts the delivery; only the holder of the current
//! pop receipt can delete it or change its visibility; after
//! `MAX_DELIVERIES` failed deliveries it moves to `<name>-poison`.
//! Adapters: `embedded` (SQLite file) and `storage_queue` (Azure Storage Queues).

mod embedded;
mod storage_queue;

pub use embedded::EmbeddedQueue;
pub use storage_queue::{StorageQueue, StorageSettings};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Deliveries before a message is poison (the Functions host's `maxDequeueCount`).
pub const MAX_DELIVERIES: u32 = 5;

/// A received message; `pop_receipt` proves this delivery holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: String,
    pub pop_receipt: String,
    /// 1 on the first delivery.
    pub dequeue_count: u32,
    pub body: String,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The message is gone or the pop receipt is no longer current.
    #[error("message not found or pop receipt stale")]
    NotFound,
    #[error("queue unavailable")]
    Unavailable(#[source] anyhow::Error),
}

impl From<anyhow::Error> for QueueError {
    fn from(e: anyhow::Error) -> Self {
        QueueError::Unavailable(e)
    }
}

pub type QueueResult<T> = Result<T, QueueError>;

#[async_trait]
pub trait JobQueue: Send + Sync + 'static {
    /// Enqueue `body`, invisible for `delay` first.
    async fn send(&self, body: &str, delay: Duration) -> QueueResult<()>;
    /// Enqueue several messages, each `(body, delay)`: what a pass that
    /// asks for many jobs at once sends (the sweep). The embedded queue
    /// writes them in one transaction, all or none; Storage Queues has no
    /// batch send, so there they are separate requests and a failure may
    /// leave some sent (harmless: jobs are idempotent, and the caller asks
    /// again for the whole batch).
    async fn send_all(&self, messages: &[(String, Duration)]) -> QueueResult<()> {
        for (body, delay) in messages {
            self.send(body, *delay).await?;
        }
        Ok(())
    }
    /// Take the next visible message, hiding it for `visibility`.
    async fn receive(&self, visibility: Duration) -> QueueResult<Option<Delivery>>;
    /// Remove a message this delivery holds.
    async fn delete(&self, delivery: &Delivery) -> QueueResult<()>;
    /// Make a held message visible again after `delay` (a retry with backoff).
    async fn release(&self, delivery: &Delivery, delay: Duration) -> QueueResult<()>;
    /// Move a held message to the poison queue.
    async fn poison(&self, delivery: &Delivery) -> QueueResult<()>;
    /// Messages in the poison queue, oldest first (operators and tests).
    async fn poisoned(&self) -> QueueResult<Vec<String>>;
    /// Approximate number of messages in the main queue, visible or not.
    async fn approximate_len(&self) -> QueueResult<u64>;
    /// Notified when a message may have been sent, if the queue can tell
    /// (an in-process queue): a waiting worker wakes at once instead of at
    /// its next poll. `None`: poll.
    fn sent_signal(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }
}

/// The job wire format: versioned, and carrying the partition key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all_fields = "camelCase", tag = "kind")]
pub enum Job {
    #[serde(rename = "reconcile")]
    Reconcile {
        v: u32,
        user_id: String,
        environment_id: String,
        /// Set on the self-scheduled follow-up of a reconcile in progress:
        /// the one message allowed to continue the chain.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        chain: Option<String>,
    },
}

impl Job {
    /// A reconcile message (version 1); `chain` only on a reconcile job's own
    /// follow-up. Code asks for reconciles through `reconciles::Reconciles`;
    /// tests use this to put a message on a queue directly.
    pub fn reconcile_chained(user_id: &str, environment_id: &str, chain: Option<String>) -> Self {
        Job::Reconcile {
            v: 1,
            user_id: user_id.into(),
            environment_id: environment_id.into(),
            chain,
        }
    }

    pub fn reconcile(user_id: &str, environment_id: &str) -> Self {
        Job::reconcile_chained(user_id, environment_id, None)
    }

    pub fn to_body(&self) -> String {
        serde_json::to_string(self).expect("job serialises")
    }

    pub fn from_body(body: &str) -> anyhow::Result<Self> {
        let job: Job = serde_json::from_str(body)?;
        let Job::Reconcile { v, .. } = &job;
        anyhow::ensure!(*v == 1, "unsupported job version {v}");
        Ok(job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format_is_the_documented_one() {
        let body = Job::reconcile("u1", "e1").to_body();
        assert_eq!(
            body,
            r#"{"kind":"reconcile","v":1,"userId":"u1","environmentId":"e1"}"#
        );
        assert_eq!(
            Job::from_body(r#"{"v":1,"kind":"reconcile","userId":"u1","environmentId":"e1"}"#)
                .unwrap(),
            Job::reconcile("u1", "e1")
        );
        assert!(
            Job::from_body(r#"{"v":2,"kind":"reconcile","userId":"u1","environmentId":"e1"}"#)
                .is_err()
        );
        assert!(Job::from_body(r#"{"v":1,"kind":"explode"}"#).is_err());
    }
}
