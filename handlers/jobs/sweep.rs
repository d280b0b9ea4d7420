//! The sweep (a timer in `serve`, a timer-triggered function in Azure):
//! stops environments idle past their timeout, restarts reconcile chains
//! that were lost (a crash, a poisoned message), checks running
//! environments for drift, and marks environments stuck in a transitional
//! status past their deadline as `error` with a reason. It also removes
//! orphans: provider resources marked as Dev8's whose record is gone.

use crate::audit::{self, Action, Entry};
use crate::domain::Status;
use crate::lifecycle;
use crate::platform::JobContext;
use crate::reconciles::ReconcileRequest;
use crate::store::StoreError;
use std::time::{Instant, SystemTime};

#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    pub idle_stopped: u32,
    pub requeued: u32,
    pub timed_out: u32,
    pub purged_documents: u64,
    pub orphans_removed: u32,
}

#[tracing::instrument(skip_all)]
pub async fn sweep(j: &JobContext) -> anyhow::Result<SweepReport> {
    let (started, clock) = (SystemTime::now(), Instant::now());
    let report = scan(j).await?;
    refresh_gauges(j).await;
    j.metrics.sweep(
        started,
        clock.elapsed(),
        &[
            ("idleStopped", report.idle_stopped.into()),
            ("requeued", report.requeued.into()),
            ("timedOut", report.timed_out.into()),
            ("purgedDocuments", report.purged_documents),
            ("orphansRemoved", report.orphans_removed.into()),
        ],
    );
    Ok(report)
}

/// Environments by status and the queue's depth: the gauges nobody counts
/// as they change (in Azure, where nothing scrapes, the sweep is what
/// refreshes them). A failure only leaves them stale.
pub async fn refresh_gauges(j: &JobContext) {
    match j.store.environment_counts().await {
        Ok(counts) => j.metrics.environments(&counts),
        Err(e) => tracing::warn!(error = %e, "counting environments failed"),
    }
    match j.queue.approximate_len().await {
        Ok(n) => j.metrics.queue_depth(n),
        Err(e) => tracing::warn!(error = %e, "reading the queue depth failed"),
    }
}

async fn scan(j: &JobContext) -> anyhow::Result<SweepReport> {
    let mut report = SweepReport::default();
    for current in j.store.active_environments().await? {
        let now = j.clock.now();
        if current.value.is_leased(now) {
            continue;
        }
        if current.value.is_idle(now) {
            if lifecycle::idle_stop(j, current).await? {
                report.idle_stopped += 1;
            }
            continue;
        }
        let mut env = current.value;
        let overdue = env
            .deadline()
            .is_some_and(|d| now - env.status_changed_at > d);
        if env.status.is_transitional() && overdue {
            let reason = format!(
                "Timed out: still {} after {} minutes",
                env.status.as_str(),
                (now - env.status_changed_at).num_minutes()
            );
            env.fail(reason.clone(), now);
            match j.store.replace_environment(&env, &current.etag).await {
                Ok(_) => {
                    report.timed_out += 1;
                    // The ETag the failure was written over names it: a
                    // repeated sweep never writes a second record. (A
                    // deletion is retried, not failed: nothing to record.)
                    if env.status != Status::Error {
                        continue;
                    }
                    audit::record_job(
                        j,
                        Entry::ok(&env.user_id, Action::JobFailure)
                            .failed()
                            .env(&env.id)
                            .detail("timed out")
                            .cause(reason, env.desired_state),
                        &current.etag,
                    )
                    .await?;
                }
                // Changed meanwhile: look again next sweep.
                Err(StoreError::PreconditionFailed | StoreError::NotFound) => {}
                Err(e) => return Err(e.into()),
            }
            continue;
        }
        let wants_look = env.status.is_transitional() || env.status == Status::Running;
        if wants_look && env.chain_is_stale(now) {
            // A transitional record without a live follow-up lost its chain;
            // a running one gets a drift check. The reconcile job decides.
            j.reconciles
                .request(ReconcileRequest::now(&env.user_id, &env.id))
                .await?;
            report.requeued += 1;
        }
    }
    report.purged_documents = j.store.purge_expired_documents(j.clock.now()).await?;
    // A failure here must not stop the rest of the sweep; the next one retries.
    match collect_orphans(j).await {
        Ok(n) => report.orphans_removed = n,
        Err(e) => tracing::warn!(error = format!("{e:#}"), "orphan collection failed"),
    }
    Ok(report)
}

/// Remove compute resources marked as Dev8's that no environment record
/// owns. Records are written before their resources and deleted only after
/// them, so a resource without a record is left over (made or restored
/// outside Dev8, or by a lost delete).
pub async fn collect_orphans(j: &JobContext) -> anyhow::Result<u32> {
    let mut removed = 0;
    for found in j.compute.managed_environments().await? {
        if j.store
            .environment(&found.user_id, &found.environment_id)
            .await?
            .is_some()
        {
            continue;
        }
        j.compute.remove_orphan(&found).await?;
        tracing::info!(environment = %found.environment_id, "removed orphaned resources");
        removed += 1;
    }
    Ok(removed)
}
