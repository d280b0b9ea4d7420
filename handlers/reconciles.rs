//! The one way to ask for a reconcile. The lifecycle service, the jobs and
//! the compute backends hold an `Arc<dyn Reconciles>`, never the raw queue;
//! `QueueReconciles` is the only code that sends a reconcile message (built by
//! `queue::Job::reconcile_chained`, the wire format's one constructor).
//!
//! It is a leaf module (it knows the queue's wire format and nothing else) so
//! that `lifecycle`, `jobs` and `compute` can all use it without import loops.

use crate::queue::{Job, JobQueue};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

/// A request to look at one environment again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileRequest {
    pub user_id: String,
    pub environment_id: String,
    /// How long to wait first (zero: as soon as a worker is free).
    pub after: Duration,
    /// The chain token this request continues (only the reconcile job's own
    /// follow-ups carry one; see `Environment::continue_chain`).
    pub chain: Option<String>,
}

impl ReconcileRequest {
    /// Look at the environment as soon as possible.
    pub fn now(user_id: &str, environment_id: &str) -> Self {
        ReconcileRequest {
            user_id: user_id.to_string(),
            environment_id: environment_id.to_string(),
            after: Duration::ZERO,
            chain: None,
        }
    }

    /// A follow-up of a reconcile in progress, carrying its chain token.
    pub fn follow_up(user_id: &str, environment_id: &str, chain: String, after: Duration) -> Self {
        ReconcileRequest {
            after,
            chain: Some(chain),
            ..ReconcileRequest::now(user_id, environment_id)
        }
    }
}

#[async_trait]
pub trait Reconciles: Send + Sync + 'static {
    async fn request(&self, request: ReconcileRequest) -> anyhow::Result<()>;

    /// Several requests at once (one queue transaction where the queue has
    /// them: `JobQueue::send_all`).
    async fn request_all(&self, requests: Vec<ReconcileRequest>) -> anyhow::Result<()> {
        for r in requests {
            self.request(r).await?;
        }
        Ok(())
    }
}

/// Requests gathered while a pass works, sent together at its end
/// (`send`): the sweep's, so its idle stops and drift checks cost one queue
/// transaction instead of one each.
#[derive(Debug, Default)]
pub struct Batch(std::sync::Mutex<Vec<ReconcileRequest>>);

impl Batch {
    pub fn add(&self, request: ReconcileRequest) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(request);
    }

    /// Ask for every gathered request; how many there were.
    pub async fn send(self, to: &dyn Reconciles) -> anyhow::Result<usize> {
        let requests = self
            .0
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = requests.len();
        if n > 0 {
            to.request_all(requests).await?;
        }
        Ok(n)
    }
}

/// Requests as messages on the job queue (embedded or Azure Storage).
pub struct QueueReconciles {
    queue: Arc<dyn JobQueue>,
}

impl QueueReconciles {
    pub fn new(queue: Arc<dyn JobQueue>) -> Self {
        QueueReconciles { queue }
    }
}

#[async_trait]
impl Reconciles for QueueReconciles {
    async fn request(&self, r: ReconcileRequest) -> anyhow::Result<()> {
        let job = Job::reconcile_chained(&r.user_id, &r.environment_id, r.chain);
        self.queue.send(&job.to_body(), r.after).await?;
        Ok(())
    }

    async fn request_all(&self, requests: Vec<ReconcileRequest>) -> anyhow::Result<()> {
        let messages: Vec<(String, Duration)> = requests
            .into_iter()
            .map(|r| {
                let job = Job::reconcile_chained(&r.user_id, &r.environment_id, r.chain);
                (job.to_body(), r.after)
            })
            .collect();
        self.queue.send_all(&messages).await?;
        Ok(())
    }
}
