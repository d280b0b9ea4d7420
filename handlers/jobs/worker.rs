//! The embedded worker: drains the job queue with the Functions host's
//! semantics (visibility timeout, dequeue count, poison after
//! `MAX_DELIVERIES`). `handle_delivery` is also what the Functions envelope
//! calls for a queue-triggered invocation.

use super::reconcile::{self, record_final_failure};
use crate::audit::{self, Action, Entry};
use crate::metrics::{JobOutcome, ReconcileRecord};
use crate::platform::JobContext;
use crate::queue::{Job, MAX_DELIVERIES, QueueError};
use std::time::{Duration, Instant, SystemTime};

/// How long a received message stays hidden while its job runs.
pub const VISIBILITY: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// A message was handled (successfully or not).
    Done,
    /// Nothing was visible.
    Empty,
}

/// Retry delay after the n-th failed delivery: 2, 4, 8, 16 s.
pub fn backoff(dequeue_count: u32) -> Duration {
    Duration::from_secs(2u64.saturating_pow(dequeue_count.clamp(1, 6)))
}

/// Handle one delivery of a job. An error means the delivery failed: the
/// caller retries it (or, on the last allowed delivery, poisons it). On the
/// last allowed delivery the environment is marked failed first. Counts the
/// delivery's outcome and times the reconcile (`metrics`).
pub async fn handle_delivery(
    j: &JobContext,
    body: &str,
    message_id: &str,
    dequeue_count: u32,
) -> anyhow::Result<()> {
    let result = deliver(j, body, message_id, dequeue_count).await;
    j.metrics.job(match &result {
        Ok(()) => JobOutcome::Done,
        Err(_) if dequeue_count >= MAX_DELIVERIES => JobOutcome::Poisoned,
        Err(_) => JobOutcome::Retried,
    });
    result
}

async fn deliver(
    j: &JobContext,
    body: &str,
    message_id: &str,
    dequeue_count: u32,
) -> anyhow::Result<()> {
    let job = Job::from_body(body).map_err(|e| anyhow::anyhow!("undecodable job message: {e}"))?;
    let Job::Reconcile {
        user_id,
        environment_id,
        chain,
        ..
    } = job;
    let (started, clock) = (SystemTime::now(), Instant::now());
    let result =
        reconcile::reconcile(j, &user_id, &environment_id, chain.as_deref(), message_id).await;
    j.metrics.reconcile(&ReconcileRecord {
        environment_id: &environment_id,
        delivery: dequeue_count,
        result: match &result {
            Ok(outcome) => Ok(outcome.as_str()),
            Err(e) => Err(format!("{e:#}")),
        },
        started,
        elapsed: clock.elapsed(),
    });
    match result {
        Ok(outcome) => {
            tracing::debug!(environment = %environment_id, ?outcome, "reconcile done");
            Ok(())
        }
        Err(e) => {
            tracing::warn!(environment = %environment_id, attempt = dequeue_count, error = %format!("{e:#}"), "reconcile failed");
            if dequeue_count >= MAX_DELIVERIES {
                let failed =
                    record_final_failure(j, &user_id, &environment_id, &e, dequeue_count).await?;
                let mut entry = Entry::ok(&user_id, Action::JobFailure)
                    .failed()
                    .env(&environment_id)
                    .detail(format!("failed after {dequeue_count} attempts"));
                if let Some(env) = failed {
                    let reason = env.status_reason.unwrap_or_default();
                    entry = entry.cause(reason, env.desired_state);
                }
                // The message id is stable across redeliveries: one record.
                audit::record_job(j, entry, message_id).await?;
            }
            Err(e)
        }
    }
}

/// Receive and handle the next visible message, if any.
pub async fn run_next(j: &JobContext) -> anyhow::Result<RunOutcome> {
    let Some(d) = j.queue.receive(VISIBILITY).await? else {
        return Ok(RunOutcome::Empty);
    };
    match handle_delivery(j, &d.body, &d.id, d.dequeue_count).await {
        Ok(()) => match j.queue.delete(&d).await {
            Ok(()) | Err(QueueError::NotFound) => {}
            Err(e) => return Err(e.into()),
        },
        Err(_) if d.dequeue_count >= MAX_DELIVERIES => {
            tracing::error!(message = %d.id, "job failed {MAX_DELIVERIES} times; moved to the poison queue");
            j.queue.poison(&d).await?;
        }
        Err(_) => j.queue.release(&d, backoff(d.dequeue_count)).await?,
    }
    // Cheap for the embedded queue; the sweep refreshes it too.
    match j.queue.approximate_len().await {
        Ok(n) => j.metrics.queue_depth(n),
        Err(e) => tracing::debug!(error = %e, "queue depth unavailable"),
    }
    Ok(RunOutcome::Done)
}

/// Drain the queue until nothing is visible (tests and shutdown).
pub async fn drain(j: &JobContext, max: usize) -> anyhow::Result<usize> {
    let mut n = 0;
    while n < max && run_next(j).await? == RunOutcome::Done {
        n += 1;
    }
    Ok(n)
}
