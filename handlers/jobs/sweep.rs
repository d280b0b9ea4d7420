//! The sweep (a timer in `serve`, a timer-triggered function in Azure):
//! stops environments idle past their timeout, restarts reconcile chains
//! that were lost (a crash, a poisoned message), checks running
//! environments for drift, and marks environments stuck in a transitional
//! status past their deadline as `error` with a reason. It also removes
//! orphans: provider resources marked as Dev8's whose record is gone.

use super::reconcile::chain_is_stale;
use crate::audit::{self, Action, Entry};
use crate::domain::{Status, StopCause};
use crate::platform::Platform;
use crate::queue::Job;
use crate::store::StoreError;
use std::time::Duration;

#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    pub idle_stopped: u32,
    pub requeued: u32,
    pub timed_out: u32,
    pub purged_documents: u64,
    pub orphans_removed: u32,
}

pub async fn sweep(p: &Platform) -> anyhow::Result<SweepReport> {
    let mut report = SweepReport::default();
    for current in p.store.active_environments().await? {
        let now = p.clock.now();
        let mut env = current.value;
        if env.lease.as_ref().is_some_and(|l| l.until > now) {
            continue;
        }
        if env.is_idle(now) {
            env.request_stop(StopCause::Idle, now)?;
            match p.store.replace_environment(&env, &current.etag).await {
                Ok(_) => {}
                // Changed meanwhile (activity, a user action): look again next sweep.
                Err(StoreError::PreconditionFailed | StoreError::NotFound) => continue,
                Err(e) => return Err(e.into()),
            }
            p.policy
                .quotas
                .release(p.store.as_ref(), &env.user_id, &env.id, false)
                .await?;
            super::enqueue(p, &env).await?;
            // The ETag the stop was written over names this stop uniquely.
            audit::record_job(
                p,
                Entry::ok(&env.user_id, Action::IdleStop)
                    .env(&env.id)
                    .detail(format!("idle for {} minutes", env.idle_timeout_minutes)),
                &current.etag,
            )
            .await?;
            tracing::info!(environment = %env.id, minutes = env.idle_timeout_minutes, "stopped for inactivity");
            report.idle_stopped += 1;
            continue;
        }
        let overdue = env
            .deadline()
            .is_some_and(|d| now - env.status_changed_at > d);
        if env.status.is_transitional() && overdue {
            let reason = format!(
                "Timed out: still {} after {} minutes",
                env.status.as_str(),
                (now - env.status_changed_at).num_minutes()
            );
            env.fail(reason, now);
            match p.store.replace_environment(&env, &current.etag).await {
                Ok(_) => report.timed_out += 1,
                Err(StoreError::PreconditionFailed | StoreError::NotFound) => {}
                Err(e) => return Err(e.into()),
            }
            continue;
        }
        let wants_look = env.status.is_transitional() || env.status == Status::Running;
        if wants_look && chain_is_stale(&env, now) {
            // A transitional record without a live follow-up lost its chain;
            // a running one gets a drift check. The reconcile job decides.
            p.queue
                .send(
                    &Job::reconcile(&env.user_id, &env.id).to_body(),
                    Duration::ZERO,
                )
                .await?;
            report.requeued += 1;
        }
    }
    report.purged_documents = p.store.purge_expired_documents(p.clock.now()).await?;
    // A failure here must not stop the rest of the sweep; the next one retries.
    match collect_orphans(p).await {
        Ok(n) => report.orphans_removed = n,
        Err(e) => tracing::warn!(error = format!("{e:#}"), "orphan collection failed"),
    }
    Ok(report)
}

/// Remove compute resources marked as Dev8's that no environment record
/// owns. Records are written before their resources and deleted only after
/// them, so a resource without a record is left over (made or restored
/// outside Dev8, or by a lost delete).
pub async fn collect_orphans(p: &Platform) -> anyhow::Result<u32> {
    let mut removed = 0;
    for found in p.compute.managed_environments().await? {
        if p.store
            .environment(&found.user_id, &found.environment_id)
            .await?
            .is_some()
        {
            continue;
        }
        p.compute.remove_orphan(&found).await?;
        tracing::info!(environment = %found.environment_id, "removed orphaned resources");
        removed += 1;
    }
    Ok(removed)
}
