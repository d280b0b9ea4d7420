//! The environments service: ONE function per lifecycle operation — create,
//! start, stop, idle-stop, delete, account deletion, settings change,
//! activity, usage reports, and forgetting a deleted record. Each does the domain
//! transition (a conditional write through `store::update`), the quota
//! effect, the request for a reconcile and the audit record. HTTP routes,
//! the sweep, the reconcile job and account deletion call these; none of
//! them repeats any part. Nothing here calls `Compute`: the reconcile job
//! acts on what these functions write.

use crate::audit::{self, Action, Entry};
use crate::domain::{
    DesiredState, Environment, NewEnvironment, StopCause, TransitionError, Usage, new_id,
};
use crate::platform::Platform;
use crate::quota::{QuotaError, Slot};
use crate::reconciles::{Batch, ReconcileRequest};
use crate::store::update::{Change, update_environment, update_seen_environment};
use crate::store::{CONFLICT_ENVIRONMENT_NAME, Etag, StoreError, Versioned};
use std::net::IpAddr;

/// Who asks: the signed-in user, and the address the request came from.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    pub user_id: &'a str,
    pub client: Option<IpAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// No such environment for this user (other users' ids included).
    #[error("no such environment")]
    NotFound,
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error("an environment with this name exists")]
    NameTaken,
    #[error("{0}")]
    Quota(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for LifecycleError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => LifecycleError::NotFound,
            StoreError::Conflict(what) if what == CONFLICT_ENVIRONMENT_NAME => {
                LifecycleError::NameTaken
            }
            other => LifecycleError::Store(other),
        }
    }
}

impl From<QuotaError> for LifecycleError {
    fn from(e: QuotaError) -> Self {
        match e {
            QuotaError::Exceeded(msg) => LifecycleError::Quota(msg),
            QuotaError::Store(e) => e.into(),
        }
    }
}

pub type LifecycleResult<T> = Result<T, LifecycleError>;

/// Ask for a reconcile after a state change. The change is written already,
/// so a failed request is logged, not returned: the sweep finds the record
/// without a live chain and asks again.
async fn reconcile_soon(p: &Platform, env: &Environment) {
    let request = ReconcileRequest::now(&env.user_id, &env.id);
    if let Err(e) = p.reconciles.request(request).await {
        tracing::error!(environment = %env.id, error = %format!("{e:#}"), "could not ask for a reconcile; the sweep will");
    }
}

/// After a stop or delete was written: the running slot goes back and the
/// reconcile job acts.
async fn wind_down(p: &Platform, env: &Environment) -> LifecycleResult<()> {
    release_running(p, env).await?;
    reconcile_soon(p, env).await;
    Ok(())
}

async fn release_running(p: &Platform, env: &Environment) -> LifecycleResult<()> {
    p.policy
        .quotas
        .release(p.store.as_ref(), &env.user_id, &env.id, false)
        .await?;
    Ok(())
}

/// Create an environment: reserve its slots, write the record
/// (`creating`, desired `running`), ask for a reconcile, audit.
#[tracing::instrument(skip_all, fields(user = %by.user_id))]
pub async fn create(
    p: &Platform,
    by: Actor<'_>,
    mut spec: NewEnvironment,
) -> LifecycleResult<Environment> {
    let now = p.clock.now();
    // The dotfiles the account names now are the ones this environment
    // installs on its first start.
    spec.dotfiles_repository = crate::account::read(p.store.as_ref(), by.user_id)
        .await?
        .dotfiles_repository;
    // Where its home lives is the deployment's choice, made once.
    spec.home_mode = p.policy.home_modes.choose(spec.base_image, spec.storage_gb);
    let env = Environment::new(new_id(), by.user_id.to_string(), spec, now);
    let quotas = &p.policy.quotas;
    quotas
        .reserve(
            p.store.as_ref(),
            by.user_id,
            &env.id,
            Slot::NewEnvironment,
            now,
        )
        .await?;
    if let Err(e) = p.store.insert_environment(&env).await {
        // Nothing was created: give the slots back.
        quotas
            .release(p.store.as_ref(), by.user_id, &env.id, true)
            .await
            .ok();
        return Err(e.into());
    }
    tracing::info!(environment = %env.id, template = env.base_image.id(), "environment created");
    reconcile_soon(p, &env).await;
    audit::record(
        p,
        Entry::ok(by.user_id, Action::EnvironmentCreate)
            .env(&env.id)
            .from(by.client),
    )
    .await;
    Ok(env)
}

/// Start (or retry after an error). Starting a running environment changes
/// nothing but is still answered with the record.
#[tracing::instrument(skip_all, fields(environment = %id))]
pub async fn start(p: &Platform, by: Actor<'_>, id: &str) -> LifecycleResult<Environment> {
    let current = p
        .store
        .environment(by.user_id, id)
        .await?
        .ok_or(LifecycleError::NotFound)?
        .value;
    if current.desired_state == DesiredState::Deleted {
        return Err(TransitionError::Deleting.into());
    }
    let held_before = current.desired_state == DesiredState::Running;
    p.policy
        .quotas
        .reserve(
            p.store.as_ref(),
            by.user_id,
            id,
            Slot::Running,
            p.clock.now(),
        )
        .await?;
    let now = p.clock.now();
    let updated = update_environment(p.store.as_ref(), by.user_id, id, |env| {
        Ok::<_, LifecycleError>(env.request_start(now)?.into())
    })
    .await;
    let updated = match updated {
        Ok(u) => u,
        Err(e) => {
            if !held_before {
                p.policy
                    .quotas
                    .release(p.store.as_ref(), by.user_id, id, false)
                    .await
                    .ok();
            }
            return Err(e);
        }
    };
    if updated.written {
        tracing::info!("start requested");
        reconcile_soon(p, &updated.env).await;
    }
    audit::record(
        p,
        Entry::ok(by.user_id, Action::EnvironmentStart)
            .env(id)
            .from(by.client),
    )
    .await;
    Ok(updated.env)
}

/// Stop at the user's request, keeping the workspace.
#[tracing::instrument(skip_all, fields(environment = %id))]
pub async fn stop(p: &Platform, by: Actor<'_>, id: &str) -> LifecycleResult<Environment> {
    let now = p.clock.now();
    wind_down_request(p, by, id, Action::EnvironmentStop, |env| {
        env.request_stop(StopCause::User, now)
    })
    .await
}

/// A stop or delete asked for by `by`: the transition, then (if it changed
/// anything) the running slot back and a reconcile; the audit record either way.
async fn wind_down_request<F>(
    p: &Platform,
    by: Actor<'_>,
    id: &str,
    action: Action,
    mut transition: F,
) -> LifecycleResult<Environment>
where
    F: FnMut(&mut Environment) -> Result<bool, TransitionError> + Send,
{
    let updated = update_environment(p.store.as_ref(), by.user_id, id, |env| {
        Ok::<_, LifecycleError>(transition(env)?.into())
    })
    .await?;
    if updated.written {
        tracing::info!(action = action.as_str(), "requested");
        wind_down(p, &updated.env).await?;
    }
    let entry = Entry::ok(by.user_id, action).env(id).from(by.client);
    audit::record(p, entry).await;
    Ok(updated.env)
}

/// The sweep found `seen` idle past its timeout: stop it. The stop is
/// written over the version the sweep read, conditionally
/// (`store::update`): if anything changed since, the record is read again
/// and judged again, so activity meanwhile (which moves `lastActivityAt`) or
/// a user action wins and the sweep looks again next time, while a write
/// that is not use (a usage report) cannot keep an idle environment
/// running. The reconcile request goes into the sweep's `batch` (sent with
/// the others when its scan ends; if that fails, the record is a stop
/// without a live chain, which the next sweep asks for again). Returns
/// whether it stopped.
#[tracing::instrument(skip_all, fields(environment = %seen.value.id))]
pub async fn idle_stop(
    p: &Platform,
    seen: Versioned<Environment>,
    batch: &Batch,
) -> anyhow::Result<bool> {
    let now = p.clock.now();
    let rules = p.policy.idle;
    if !seen.value.is_idle(now, rules) {
        return Ok(false);
    }
    let mut last_use = seen.value.last_activity_at;
    let (user_id, id) = (seen.value.user_id.clone(), seen.value.id.clone());
    let updated = update_seen_environment(p.store.as_ref(), &user_id, &id, Some(seen), |env| {
        if !env.is_idle(now, rules) {
            return Ok::<_, LifecycleError>(Change::Unchanged);
        }
        last_use = env.last_activity_at;
        Ok(env.request_stop(StopCause::Idle, now)?.into())
    })
    .await;
    let updated = match updated {
        Ok(u) if u.written => u,
        Ok(_) | Err(LifecycleError::NotFound) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    // Written: the stop happened (exactly once per ETag, so counted once).
    p.metrics.idle_stop();
    let env = updated.env;
    release_running(p, &env).await?;
    batch.add(ReconcileRequest::now(&env.user_id, &env.id));
    // The ETag the stop produced names this stop uniquely, so a repeated
    // sweep never writes a second record.
    audit::record_job(
        p,
        Entry::ok(&env.user_id, Action::IdleStop)
            .env(&env.id)
            .detail(idle_detail(now - last_use, env.idle_timeout_minutes))
            .idle_timeout(env.idle_timeout_minutes),
        &updated.etag,
    )
    .await?;
    tracing::info!(
        idle_seconds = (now - last_use).num_seconds(),
        timeout_minutes = env.idle_timeout_minutes,
        "stopped for inactivity"
    );
    Ok(true)
}

/// The idle stop's audit detail: how long nothing counted as use, and the timeout.
fn idle_detail(idle: chrono::Duration, timeout_minutes: u16) -> String {
    let (m, s) = (idle.num_seconds() / 60, idle.num_seconds() % 60);
    format!("no use for {m} min {s} s (idle timeout {timeout_minutes} minutes)")
}

/// Ask for deletion: allowed from every status, repeating it is a no-op.
#[tracing::instrument(skip_all, fields(environment = %id))]
pub async fn delete(p: &Platform, by: Actor<'_>, id: &str) -> LifecycleResult<Environment> {
    let now = p.clock.now();
    wind_down_request(p, by, id, Action::EnvironmentDelete, |env| {
        Ok(env.request_delete(now))
    })
    .await
}

/// Delete the account: every environment goes through `delete` (the normal
/// job removes its resources and workspace), every session is revoked, the
/// sign-in identities and then the user record are removed.
#[tracing::instrument(skip_all, fields(user = %by.user_id))]
pub async fn delete_account(p: &Platform, by: Actor<'_>) -> LifecycleResult<()> {
    for v in p.store.environments(by.user_id).await? {
        match delete(p, by, &v.value.id).await {
            Ok(_) | Err(LifecycleError::NotFound) => {}
            Err(e) => return Err(e),
        }
    }
    p.store.revoke_user_sessions(by.user_id, None).await?;
    p.sessions.forget_user(by.user_id);
    for identity in p.store.identities(by.user_id).await? {
        match p.store.delete_identity(by.user_id, &identity.id).await {
            Ok(()) | Err(StoreError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    crate::secrets::delete_all(p, by.user_id).await?;
    crate::account::forget(p.store.as_ref(), by.user_id, p.clock.now()).await?;
    p.store.delete_user(by.user_id).await?;
    tracing::info!("account deleted");
    Ok(())
}

/// Rename, or change the idle timeout.
pub async fn change_settings(
    p: &Platform,
    user_id: &str,
    id: &str,
    name: Option<&str>,
    idle_timeout_minutes: Option<u16>,
) -> LifecycleResult<Environment> {
    let now = p.clock.now();
    let updated = update_environment(p.store.as_ref(), user_id, id, |env| {
        Ok::<_, LifecycleError>(env.change_settings(name, idle_timeout_minutes, now)?.into())
    })
    .await?;
    Ok(updated.env)
}

/// What became of an agent's activity report.
#[derive(Debug, Clone)]
pub enum ActivityOutcome {
    /// The idle clock was restarted (or was already at now); the record as written.
    Recorded(Box<Environment>),
    /// The token is not the environment's current agent token.
    NotCurrentAgent,
}

/// An agent reports use. Only the environment's current agent token counts
/// (its `jti` is the record's `agentTokenId`).
pub async fn record_activity(
    p: &Platform,
    user_id: &str,
    id: &str,
    agent_token_id: &str,
) -> LifecycleResult<ActivityOutcome> {
    let now = p.clock.now();
    let mut current = true;
    let updated = update_environment(p.store.as_ref(), user_id, id, |env| {
        current = env.agent_token_id.as_deref() == Some(agent_token_id);
        if !current {
            return Ok::<_, LifecycleError>(Change::Unchanged);
        }
        Ok(env.touch(now).into())
    })
    .await?;
    Ok(if current {
        ActivityOutcome::Recorded(Box::new(updated.env))
    } else {
        ActivityOutcome::NotCurrentAgent
    })
}

/// What became of an agent's periodic report.
#[derive(Debug, Clone, PartialEq)]
pub enum ReportOutcome {
    /// Accepted; `usage_kept` says whether the usage is now on the record
    /// (only while the environment runs and is meant to); `env` is the
    /// record as read (the answer's idle times come from it).
    Accepted {
        usage_kept: bool,
        env: Box<Environment>,
    },
    /// The token is not the environment's current agent token.
    NotCurrentAgent,
}

/// An agent's periodic report: the usage it measured is kept on the record
/// (one conditional write, only while the environment runs and is meant to).
/// Never moves `lastActivityAt`: usage is not use. Only the environment's
/// current agent token counts.
pub async fn record_report(
    p: &Platform,
    user_id: &str,
    id: &str,
    agent_token_id: &str,
    usage: Option<Usage>,
    clone_error: Option<String>,
) -> LifecycleResult<ReportOutcome> {
    let mut outcome = ReportOutcome::NotCurrentAgent;
    let mut clone_failed = None;
    update_environment(p.store.as_ref(), user_id, id, |env| {
        if env.agent_token_id.as_deref() != Some(agent_token_id) {
            outcome = ReportOutcome::NotCurrentAgent;
            return Ok::<_, LifecycleError>(Change::Unchanged);
        }
        let usage_kept = usage.clone().is_some_and(|u| env.record_usage(u));
        let noted = clone_error
            .as_deref()
            .is_some_and(|reason| env.note_clone_error(reason));
        clone_failed = if noted { env.clone_error.clone() } else { None };
        outcome = ReportOutcome::Accepted {
            usage_kept,
            env: Box::new(env.clone()),
        };
        Ok((usage_kept || noted).into())
    })
    .await?;
    if let Some(reason) = clone_failed {
        // Once per environment: only the write that noted the error gets
        // here, and the id is fixed by the agent token, so a retried report
        // writes nothing twice.
        audit::record_job(
            p,
            Entry::ok(user_id, Action::CloneFailed)
                .failed()
                .env(id)
                .detail(reason),
            agent_token_id,
        )
        .await
        .map_err(|e| LifecycleError::Store(StoreError::Unavailable(e)))?;
    }
    Ok(outcome)
}

/// Deletion is complete (compute observed nothing left): remove the record,
/// written over the ETag it was read at, then give every slot back. `false`
/// when the record changed meanwhile (the caller reads again).
pub async fn forget(p: &Platform, env: &Environment, etag: &Etag) -> anyhow::Result<bool> {
    match p
        .store
        .delete_environment(&env.user_id, &env.id, etag)
        .await
    {
        Ok(()) => {}
        Err(StoreError::PreconditionFailed | StoreError::NotFound) => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    p.policy
        .quotas
        .release(p.store.as_ref(), &env.user_id, &env.id, true)
        .await?;
    tracing::info!(environment = %env.id, "environment deleted");
    Ok(true)
}
