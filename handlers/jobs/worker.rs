//! The embedded worker: drains the job queue with the Functions host's
//! semantics (visibility timeout, dequeue count, poison after
//! `MAX_DELIVERIES`). `handle_delivery` is also what the Functions envelope
//! calls for a queue-triggered invocation.

use super::reconcile::{self, record_final_failure};
use crate::platform::Platform;
use crate::queue::{Job, MAX_DELIVERIES, QueueError};
use std::time::Duration;

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
/// last allowed delivery the environment is marked failed first.
pub async fn handle_delivery(
    p: &Platform,
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
    match reconcile::reconcile(p, &user_id, &environment_id, chain.as_deref(), message_id).await {
        Ok(outcome) => {
            tracing::debug!(environment = %environment_id, ?outcome, "reconcile done");
            Ok(())
        }
        Err(e) => {
            tracing::warn!(environment = %environment_id, attempt = dequeue_count, error = %format!("{e:#}"), "reconcile failed");
            if dequeue_count >= MAX_DELIVERIES {
                record_final_failure(p, &user_id, &environment_id, &e, dequeue_count).await?;
            }
            Err(e)
        }
    }
}

/// Receive and handle the next visible message, if any.
pub async fn run_next(p: &Platform) -> anyhow::Result<RunOutcome> {
    let Some(d) = p.queue.receive(VISIBILITY).await? else {
        return Ok(RunOutcome::Empty);
    };
    match handle_delivery(p, &d.body, &d.id, d.dequeue_count).await {
        Ok(()) => match p.queue.delete(&d).await {
            Ok(()) | Err(QueueError::NotFound) => {}
            Err(e) => return Err(e.into()),
        },
        Err(_) if d.dequeue_count >= MAX_DELIVERIES => {
            tracing::error!(message = %d.id, "job failed {MAX_DELIVERIES} times; moved to the poison queue");
            p.queue.poison(&d).await?;
        }
        Err(_) => p.queue.release(&d, backoff(d.dequeue_count)).await?,
    }
    Ok(RunOutcome::Done)
}

/// Drain the queue until nothing is visible (tests and shutdown).
pub async fn drain(p: &Platform, max: usize) -> anyhow::Result<usize> {
    let mut n = 0;
    while n < max && run_next(p).await? == RunOutcome::Done {
        n += 1;
    }
    Ok(n)
}
