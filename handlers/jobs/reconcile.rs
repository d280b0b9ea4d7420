//! The reconcile job: one step toward an environment's desired state per
//! delivery. Idempotent and safe to deliver twice or concurrently:
//! * every write is conditional on the ETag read;
//! * compute actions (start, stop, delete) are taken under a lease, so two
//!   deliveries never act at once; a delivery that finds another's live lease
//!   exits quietly;
//! * while work is in progress, exactly one follow-up message exists: the
//!   record's `chain` names it, and only that message (or a delivery finding
//!   no live chain) may schedule the next one, so duplicates never multiply.

use crate::audit::{self, Action, Entry};
use crate::auth::tokens::{TokenKind, claims};
use crate::compute::{AgentParams, ComputeError, FinalSnapshot};
use crate::domain::{
    Environment, FINAL_SNAPSHOT_WAIT, HomeMode, Observed, Step, StepNote, new_id, steps,
};
use crate::lifecycle;
use crate::platform::{JobContext, Platform};
use crate::reconciles::ReconcileRequest;
use crate::store::update::{Attempt, Change, Retries, raced, retry_races, update_environment};
use crate::store::{StoreError, Versioned};
use anyhow::Context;
use chrono::Duration;

/// Agent tokens live this long; they are rotated on every start and refused
/// once the environment stops.
pub const AGENT_TOKEN_TTL: Duration = Duration::days(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The desired state is reached (or nothing is left to do).
    Done,
    /// A step was taken or is awaited; a follow-up exists.
    InProgress,
    /// Another delivery holds the lease; it carries on.
    Busy,
    /// The record is gone (deleted, or never existed).
    Gone,
}

impl Outcome {
    /// A fixed name (traces).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::InProgress => "in-progress",
            Outcome::Busy => "busy",
            Outcome::Gone => "gone",
        }
    }
}

/// Reconcile one environment. `owner` identifies this delivery (the queue
/// message id, stable across redeliveries of the same message).
#[tracing::instrument(skip_all, fields(environment = %environment_id))]
pub async fn reconcile(
    j: &JobContext,
    user_id: &str,
    environment_id: &str,
    chain: Option<&str>,
    owner: &str,
) -> anyhow::Result<Outcome> {
    let mut delivery = (j, user_id, environment_id, chain, owner);
    retry_races(
        Retries::RECORD,
        &mut delivery,
        |&mut (j, user_id, environment_id, chain, owner)| {
            Box::pin(async move {
                match j.store.environment(user_id, environment_id).await? {
                    None => Ok(Attempt::Done(Outcome::Gone)),
                    Some(current) => attempt(j, current, chain, owner).await,
                }
            })
        },
    )
    .await
}

/// One read-decide-act-write round; `Raced` when a conditional write lost.
async fn attempt(
    j: &JobContext,
    current: Versioned<Environment>,
    chain: Option<&str>,
    owner: &str,
) -> anyhow::Result<Attempt<Outcome>> {
    let now = j.clock.now();
    let before = current.value;
    if before.leased_by_other(owner, now) {
        return Ok(Attempt::Done(Outcome::Busy));
    }
    let observed = j
        .compute
        .observe(&before)
        .await
        .context("observing the environment")?;
    let mut env = before.clone();
    let mut step = env.plan(&observed, now);
    if step == Step::Stop {
        step = final_snapshot_first(j, &mut env, &observed, now).await?;
    }
    tracing::debug!(?observed, ?step, "reconcile");
    let mut etag = current.etag;

    match step {
        Step::Forget => {
            return Ok(if lifecycle::forget(j, &env, &etag).await? {
                Attempt::Done(Outcome::Gone)
            } else {
                Attempt::Raced
            });
        }
        Step::Start | Step::Stop | Step::Delete => {
            if step == Step::Start {
                // Progress rides on the job's own writes: it never adds one
                // that could race or fail the job.
                env.note_progress(StepNote::new(steps::PREPARING_STORAGE), now);
            }
            env.take_lease(owner, step, now);
            match raced(j.store.replace_environment(&env, &etag).await)? {
                Attempt::Done(e) => etag = e,
                Attempt::Raced => return Ok(Attempt::Raced),
            }
            match act(j, &env, step).await {
                Ok(Some(refs)) => {
                    env.compute = refs;
                    env.note_progress(StepNote::new(steps::STARTING_IDE), now);
                }
                Ok(None) => {}
                Err(ComputeError::Permanent(reason)) => {
                    tracing::warn!(%reason, "compute refused the step");
                    env.fail(reason.clone(), now);
                    env.release_lease();
                    if let Attempt::Raced = raced(j.store.replace_environment(&env, &etag).await)? {
                        return Ok(Attempt::Raced);
                    }
                    // `owner` (the message id) is stable across redeliveries.
                    audit::record_job(
                        j,
                        Entry::ok(&env.user_id, Action::JobFailure)
                            .failed()
                            .env(&env.id)
                            .detail(format!("{step:?} refused"))
                            .cause(reason, env.desired_state),
                        owner,
                    )
                    .await?;
                    return Ok(Attempt::Done(Outcome::Done));
                }
                Err(ComputeError::Transient(e)) => {
                    env.count_failure();
                    let _ = j.store.replace_environment(&env, &etag).await;
                    return Err(e.context(format!("{step:?} failed")));
                }
            }
        }
        Step::Wait | Step::Done => {}
    }

    let in_progress = step != Step::Done;
    let follow_up = if in_progress {
        let interval =
            Duration::from_std(j.policy.reconcile_interval).unwrap_or(Duration::seconds(1));
        env.continue_chain(chain, interval, now)
    } else {
        env.end_chain();
        None
    };
    env.release_lease();
    let acted = matches!(step, Step::Start | Step::Stop | Step::Delete);
    if (env != before || acted)
        && let Attempt::Raced = raced(j.store.replace_environment(&env, &etag).await)?
    {
        return Ok(Attempt::Raced);
    }
    if let Some(token) = follow_up {
        j.reconciles
            .request(ReconcileRequest::follow_up(
                &env.user_id,
                &env.id,
                token,
                j.policy.reconcile_interval,
            ))
            .await?;
    }
    Ok(Attempt::Done(if in_progress {
        Outcome::InProgress
    } else {
        Outcome::Done
    }))
}

/// Agent-control tokens live this long: one request's worth.
pub const AGENT_CONTROL_TOKEN_TTL: Duration = Duration::minutes(2);

/// Snapshot mode: compute is stopped only after the agent's final snapshot
/// (`Step::Stop`), or while it is being taken the stop waits (`Step::Wait`:
/// the follow-up asks again; the agent's endpoint is idempotent). Bounded by
/// `FINAL_SNAPSHOT_WAIT` from the first ask: past it, or when the snapshot
/// failed, compute is stopped anyway and the history says what may be lost
/// (one record per stop, its id fixed by when the stop first asked).
async fn final_snapshot_first(
    j: &JobContext,
    env: &mut Environment,
    observed: &Observed,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Step> {
    if env.home_mode != HomeMode::Snapshot {
        return Ok(Step::Stop);
    }
    let within = env.wait_for_final_snapshot(now);
    let minutes = FINAL_SNAPSHOT_WAIT.num_minutes();
    let missed = if within {
        let token = agent_control_token(j, env);
        match j.compute.final_snapshot(env, &token).await {
            Ok(FinalSnapshot::NotNeeded | FinalSnapshot::Saved { .. }) => None,
            Ok(FinalSnapshot::Saving) => return Ok(Step::Wait),
            // It answered readiness a moment ago: a hiccup, ask again.
            Ok(FinalSnapshot::Unreachable) if matches!(observed, Observed::Running { .. }) => {
                return Ok(Step::Wait);
            }
            Err(ComputeError::Transient(e)) => {
                tracing::info!(error = %format!("{e:#}"), "could not ask for the final snapshot yet");
                return Ok(Step::Wait);
            }
            // Not up yet (or no longer): no IDE has run since its home was restored.
            Ok(FinalSnapshot::Unreachable) => None,
            Ok(FinalSnapshot::Failed { error }) => Some(format!(
                "The final snapshot failed ({error}); stopped anyway. Changes since the last periodic snapshot may be lost"
            )),
            Err(ComputeError::Permanent(reason)) => Some(format!(
                "The final snapshot could not be asked for ({reason}); stopped anyway. Changes since the last periodic snapshot may be lost"
            )),
        }
    } else {
        Some(format!(
            "The final snapshot did not finish within {minutes} minutes; stopped anyway. Changes since the last periodic snapshot may be lost"
        ))
    };
    if let (Some(detail), Some(asked)) = (missed, env.final_snapshot_asked_at) {
        tracing::warn!(%detail, "stopping without a final snapshot");
        audit::record_job(
            j,
            Entry::ok(&env.user_id, Action::FinalSnapshotMissed)
                .failed()
                .env(&env.id)
                .detail(detail),
            &asked.to_rfc3339(),
        )
        .await?;
    }
    Ok(Step::Stop)
}

/// A token for the environment's agent to accept a request from the
/// control plane. Its times are the wall clock's: the agent checks them
/// against its own.
pub fn agent_control_token(p: &Platform, env: &Environment) -> String {
    p.keys.sign(&claims(
        TokenKind::AgentControl,
        p.policy.issuer(),
        &env.user_id,
        &env.id,
        chrono::Utc::now(),
        AGENT_CONTROL_TOKEN_TTL,
    ))
}

async fn act(
    j: &JobContext,
    env: &Environment,
    step: Step,
) -> Result<Option<serde_json::Value>, ComputeError> {
    match step {
        Step::Start => {
            let mut params = agent_params(j, env);
            // The owner's secrets as they are now: changes apply at the next start.
            params.user_secrets = crate::secrets::for_environment(j, &env.user_id)
                .await
                .map_err(ComputeError::Transient)?;
            j.compute.start(env, &params).await.map(Some)
        }
        Step::Stop => j.compute.stop(env).await.map(|_| None),
        Step::Delete => j.compute.delete(env).await.map(|_| None),
        _ => Ok(None),
    }
}

/// The secrets and addresses an environment's agent starts with.
pub fn agent_params(p: &Platform, env: &Environment) -> AgentParams {
    let now = p.clock.now();
    let mut c = claims(
        TokenKind::Agent,
        p.policy.issuer(),
        &env.user_id,
        &env.id,
        now,
        AGENT_TOKEN_TTL,
    );
    c.jti = env.agent_token_id.clone().unwrap_or_else(new_id);
    AgentParams {
        agent_token: p.keys.sign(&c),
        jwks: p.keys.jwks().to_string(),
        control_plane_url: p.policy.public_url.clone(),
        issuer: p.policy.issuer().to_string(),
        user_secrets: Vec::new(),
    }
}

/// Record that a delivery failed for the last time (`Environment::fail_finally`:
/// an error with the reason, or for deletion a back-off), giving back any
/// lease this delivery held. Returns the record as written (`None` when it
/// is gone), whose `statusReason` is the cause the audit record repeats.
pub async fn record_final_failure(
    p: &Platform,
    user_id: &str,
    environment_id: &str,
    error: &anyhow::Error,
    attempts: u32,
) -> anyhow::Result<Option<Environment>> {
    let now = p.clock.now();
    let cause = format!("{error:#}");
    let written = update_environment(p.store.as_ref(), user_id, environment_id, |env| {
        env.fail_finally(&cause, attempts, now);
        Ok::<_, StoreError>(Change::Write)
    })
    .await;
    match written {
        Ok(u) => Ok(Some(u.env)),
        Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
