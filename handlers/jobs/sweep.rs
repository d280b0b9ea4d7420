//! The sweep (a timer in `serve`, a timer-triggered function in Azure):
//! stops environments idle past their timeout, restarts reconcile chains
//! that were lost (a crash, a poisoned message), checks running
//! environments for drift, and marks environments stuck in a transitional
//! status past their deadline as `error` with a reason. It also removes
//! orphans: provider resources marked as Dev8's whose record is gone.

use crate::audit::{self, Action, Entry};
use crate::domain::{Environment, Status};
use crate::lifecycle;
use crate::platform::JobContext;
use crate::reconciles::{Batch, ReconcileRequest};
use crate::store::update::{Change, Retries, update_document};
use crate::store::{StoreError, Versioned};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use std::time::{Instant, SystemTime};

/// The document that remembers when the last sweep that finished its scan
/// started: drift checks due since then are the next sweep's
/// (`Environment::drift_check_due`).
pub const LAST_SWEEP_KEY: &str = "sweep:last";

/// Environments the sweep works on at once: their writes still go one by
/// one through the store, but the round trips overlap.
const PARALLEL: usize = 8;

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct LastSweep {
    started_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    pub idle_stopped: u32,
    pub requeued: u32,
    pub timed_out: u32,
    pub purged_documents: u64,
    pub orphans_removed: u32,
}

/// Which running environments get a drift check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drift {
    /// Those whose turn came since the last sweep.
    Due,
    /// Every one (after a restart: local compute's processes are gone).
    All,
}

/// One sweep; running environments get their drift check when it is due.
#[tracing::instrument(skip_all)]
pub async fn sweep(j: &JobContext) -> anyhow::Result<SweepReport> {
    run(j, Drift::Due).await
}

/// The sweep `serve` runs as it starts: every running environment gets a
/// drift check, since a restart may have ended their processes.
#[tracing::instrument(skip_all)]
pub async fn start_up_sweep(j: &JobContext) -> anyhow::Result<SweepReport> {
    run(j, Drift::All).await
}

async fn run(j: &JobContext, drift: Drift) -> anyhow::Result<SweepReport> {
    let (started, clock) = (SystemTime::now(), Instant::now());
    let report = scan(j, drift).await?;
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

async fn scan(j: &JobContext, drift: Drift) -> anyhow::Result<SweepReport> {
    let started = j.clock.now();
    let since = match drift {
        Drift::All => None,
        Drift::Due => j
            .store
            .document(LAST_SWEEP_KEY)
            .await?
            .and_then(|d| serde_json::from_value::<LastSweep>(d.value).ok())
            .and_then(|l| l.started_at),
    };
    // Every visit runs to its end (none is dropped half-way because
    // another failed); the first failure fails the sweep afterwards. The
    // reconciles the visits ask for (idle stops, lost chains, drift checks)
    // are gathered and sent together: one queue transaction.
    let batch = Batch::default();
    let seen: Vec<anyhow::Result<Seen>> =
        futures::stream::iter(j.store.active_environments().await?)
            .map(|current| visit(j, current, since, started, &batch))
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
    // Sent even if a visit failed: the stops written need their reconcile.
    let sent = batch.send(j.reconciles.as_ref()).await;
    let mut report = SweepReport::default();
    for s in seen {
        match s? {
            Seen::IdleStopped => report.idle_stopped += 1,
            Seen::TimedOut => report.timed_out += 1,
            Seen::Requeued => report.requeued += 1,
            Seen::Nothing => {}
        }
    }
    sent?;
    // Every environment was looked at: drift checks due up to `started` are
    // asked for. (A sweep that failed leaves the mark, so the next one
    // covers its window again; a check asked for twice is harmless.)
    update_document(
        j.store.as_ref(),
        LAST_SWEEP_KEY,
        Retries::RECORD,
        |last: &mut LastSweep| {
            let newer = last.started_at.is_none_or(|t| t < started);
            if newer {
                last.started_at = Some(started);
            }
            Ok::<_, StoreError>(Change::from(newer))
        },
        |_| None,
    )
    .await?;
    report.purged_documents = j.store.purge_expired_documents(j.clock.now()).await?;
    // A failure here must not stop the rest of the sweep; the next one retries.
    match collect_orphans(j).await {
        Ok(n) => report.orphans_removed = n,
        Err(e) => tracing::warn!(error = format!("{e:#}"), "orphan collection failed"),
    }
    Ok(report)
}

/// What the sweep did to one environment.
enum Seen {
    IdleStopped,
    TimedOut,
    Requeued,
    Nothing,
}

async fn visit(
    j: &JobContext,
    current: Versioned<Environment>,
    since: Option<DateTime<Utc>>,
    started: DateTime<Utc>,
    batch: &Batch,
) -> anyhow::Result<Seen> {
    let now = j.clock.now();
    if current.value.is_leased(now) {
        return Ok(Seen::Nothing);
    }
    if current.value.is_idle(now, j.policy.idle) {
        return Ok(if lifecycle::idle_stop(j, current, batch).await? {
            Seen::IdleStopped
        } else {
            Seen::Nothing
        });
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
        return match j.store.replace_environment(&env, &current.etag).await {
            Ok(_) => {
                // The ETag the failure was written over names it: a repeated
                // sweep never writes a second record. (A deletion is retried,
                // not failed: nothing to record.)
                if env.status == Status::Error {
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
                Ok(Seen::TimedOut)
            }
            // Changed meanwhile: look again next sweep.
            Err(StoreError::PreconditionFailed | StoreError::NotFound) => Ok(Seen::Nothing),
            Err(e) => Err(e.into()),
        };
    }
    // A transitional record without a live follow-up lost its chain; a
    // running one without one gets a drift check when its turn comes. The
    // reconcile job decides.
    let wants_look = if env.status.is_transitional() {
        env.chain_is_stale(now)
    } else {
        env.status == Status::Running
            && env.chain_is_stale(now)
            && (env.chain.is_some() || env.drift_check_due(since, started))
    };
    if !wants_look {
        return Ok(Seen::Nothing);
    }
    batch.add(ReconcileRequest::now(&env.user_id, &env.id));
    Ok(Seen::Requeued)
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
