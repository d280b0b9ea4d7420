//! The sweep (a timer in `serve`, a timer-triggered function in Azure):
//! stops environments idle past their timeout, restarts reconcile chains
//! that were lost (a crash, a poisoned message), checks running
//! environments for drift, and marks environments stuck in a transitional
//! status past their deadline as `error` with a reason.

use super::reconcile::chain_is_stale;
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
    Ok(report)
}
