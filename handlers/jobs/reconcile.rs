//! The reconcile job: one step toward an environment's desired state per
//! delivery. Idempotent and safe to deliver twice or concurrently:
//! * every write is conditional on the ETag read;
//! * compute actions (start, stop, delete) are taken under a lease, so two
//!   deliveries never act at once; a delivery that finds another's live lease
//!   exits quietly;
//! * while work is in progress, exactly one follow-up message exists: the
//!   record's `chain` names it, and only that message (or a delivery finding
//!   no live chain) may schedule the next one, so duplicates never multiply.

use crate::auth::tokens::{TokenKind, claims};
use crate::compute::{AgentParams, ComputeError};
use crate::domain::{Chain, DesiredState, Environment, Lease, Step, new_id};
use crate::platform::Platform;
use crate::queue::Job;
use crate::store::{StoreError, Versioned};
use anyhow::Context;
use chrono::{DateTime, Duration, Utc};

/// How long a lease protects a compute action.
pub const LEASE: Duration = Duration::minutes(2);
/// A chain whose follow-up is this late is presumed lost (the sweep restarts it).
pub const CHAIN_GRACE: Duration = Duration::seconds(90);
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

enum Attempt {
    Finished(Outcome),
    /// A conditional write lost a race: read again.
    Retry,
}

/// Reconcile one environment. `owner` identifies this delivery (the queue
/// message id, stable across redeliveries of the same message).
pub async fn reconcile(
    p: &Platform,
    user_id: &str,
    environment_id: &str,
    chain: Option<&str>,
    owner: &str,
) -> anyhow::Result<Outcome> {
    for _ in 0..10 {
        let Some(current) = p.store.environment(user_id, environment_id).await? else {
            return Ok(Outcome::Gone);
        };
        match attempt(p, current, chain, owner).await? {
            Attempt::Finished(outcome) => return Ok(outcome),
            Attempt::Retry => continue,
        }
    }
    anyhow::bail!("environment {environment_id} kept changing under the reconcile job")
}

fn retry_on_race<T>(r: Result<T, StoreError>) -> anyhow::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(StoreError::PreconditionFailed | StoreError::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn attempt(
    p: &Platform,
    current: Versioned<Environment>,
    chain: Option<&str>,
    owner: &str,
) -> anyhow::Result<Attempt> {
    let now = p.clock.now();
    let before = current.value;
    if before.leased_by_other(owner, now) {
        return Ok(Attempt::Finished(Outcome::Busy));
    }
    let observed = p
        .compute
        .observe(&before)
        .await
        .context("observing the environment")?;
    let mut env = before.clone();
    let step = env.plan(&observed, now);
    tracing::debug!(environment = %env.id, ?observed, ?step, "reconcile");
    let mut etag = current.etag;

    match step {
        Step::Forget => {
            let deleted = p
                .store
                .delete_environment(&env.user_id, &env.id, &etag)
                .await;
            if retry_on_race(deleted)?.is_none() {
                return Ok(Attempt::Retry);
            }
            p.policy
                .quotas
                .release(p.store.as_ref(), &env.user_id, &env.id, true)
                .await?;
            tracing::info!(environment = %env.id, "environment deleted");
            return Ok(Attempt::Finished(Outcome::Gone));
        }
        Step::Start | Step::Stop | Step::Delete => {
            env.lease = Some(Lease {
                owner: owner.to_string(),
                until: now + LEASE,
            });
            if step == Step::Start && env.agent_token_id.is_none() {
                env.agent_token_id = Some(new_id());
            }
            match retry_on_race(p.store.replace_environment(&env, &etag).await)? {
                Some(e) => etag = e,
                None => return Ok(Attempt::Retry),
            }
            match act(p, &env, step).await {
                Ok(refs) => {
                    if let Some(refs) = refs {
                        env.compute = refs;
                    }
                }
                Err(ComputeError::Permanent(reason)) => {
                    tracing::warn!(environment = %env.id, %reason, "compute refused the step");
                    env.fail(reason, now);
                    env.lease = None;
                    let written = retry_on_race(p.store.replace_environment(&env, &etag).await)?;
                    return Ok(if written.is_some() {
                        Attempt::Finished(Outcome::Done)
                    } else {
                        Attempt::Retry
                    });
                }
                Err(ComputeError::Transient(e)) => {
                    // Give the lease back so the retry (or anyone) can act soon.
                    env.lease = None;
                    env.failures += 1;
                    let _ = p.store.replace_environment(&env, &etag).await;
                    return Err(e.context(format!("{step:?} failed")));
                }
            }
        }
        Step::Wait | Step::Done => {}
    }

    let in_progress = step != Step::Done;
    let scheduled = if in_progress {
        schedule(&mut env, chain, now, p)
    } else {
        None
    };
    if !in_progress {
        env.chain = None;
    }
    env.lease = None;
    if (env != before || step_acted(step))
        && retry_on_race(p.store.replace_environment(&env, &etag).await)?.is_none()
    {
        return Ok(Attempt::Retry);
    }
    if let Some(token) = scheduled {
        let job = Job::Reconcile {
            v: 1,
            user_id: env.user_id.clone(),
            environment_id: env.id.clone(),
            chain: Some(token),
        };
        p.queue
            .send(&job.to_body(), p.policy.reconcile_interval)
            .await?;
    }
    Ok(Attempt::Finished(if in_progress {
        Outcome::InProgress
    } else {
        Outcome::Done
    }))
}

fn step_acted(step: Step) -> bool {
    matches!(step, Step::Start | Step::Stop | Step::Delete)
}

/// Decide whether this delivery continues the chain; if so, name the follow-up.
fn schedule(
    env: &mut Environment,
    chain: Option<&str>,
    now: DateTime<Utc>,
    p: &Platform,
) -> Option<String> {
    let may = match &env.chain {
        None => true,
        Some(c) => Some(c.token.as_str()) == chain || c.due_at + CHAIN_GRACE <= now,
    };
    if !may {
        return None;
    }
    let token = new_id();
    let delay = Duration::from_std(p.policy.reconcile_interval).unwrap_or(Duration::seconds(1));
    env.chain = Some(Chain {
        token: token.clone(),
        due_at: now + delay,
    });
    Some(token)
}

async fn act(
    p: &Platform,
    env: &Environment,
    step: Step,
) -> Result<Option<serde_json::Value>, ComputeError> {
    match step {
        Step::Start => {
            let params = agent_params(p, env);
            p.compute.start(env, &params).await.map(Some)
        }
        Step::Stop => p.compute.stop(env).await.map(|_| None),
        Step::Delete => p.compute.delete(env).await.map(|_| None),
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
    }
}

/// Record that a delivery failed for the last time: the environment shows an
/// error with the reason (deletion instead keeps going, with a backoff the
/// sweep honours), and any lease this delivery held is given back.
pub async fn record_final_failure(
    p: &Platform,
    user_id: &str,
    environment_id: &str,
    error: &anyhow::Error,
    attempts: u32,
) -> anyhow::Result<()> {
    for _ in 0..10 {
        let Some(current) = p.store.environment(user_id, environment_id).await? else {
            return Ok(());
        };
        let now = p.clock.now();
        let mut env = current.value;
        let cause = format!("{error:#}");
        if env.desired_state == DesiredState::Deleted {
            env.failures += 1;
            let backoff = Duration::seconds(30 * 2i64.pow(env.failures.min(6)));
            env.status_reason = Some(format!("Deletion is being retried: {cause}"));
            env.chain = Some(Chain {
                token: new_id(),
                due_at: now + backoff - CHAIN_GRACE,
            });
        } else {
            env.fail(format!("Failed after {attempts} attempts: {cause}"), now);
        }
        env.lease = None;
        env.updated_at = now;
        if retry_on_race(p.store.replace_environment(&env, &current.etag).await)?.is_some() {
            return Ok(());
        }
    }
    anyhow::bail!("could not record the failure of {environment_id}")
}

/// Used by tests and the sweep: the ETag-free view of whether a record is
/// waiting on a follow-up that is overdue.
pub fn chain_is_stale(env: &Environment, now: DateTime<Utc>) -> bool {
    env.chain
        .as_ref()
        .is_none_or(|c| c.due_at + CHAIN_GRACE <= now)
}
