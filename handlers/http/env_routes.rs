//! Environment routes. The API never talks to compute: it writes the desired
//! state (conditionally), enqueues a reconcile, and answers 202.

use super::error::{ApiError, ApiResult};
use super::extract::{AppState, Caller, ClientAddr, JsonObject};
use super::views::{EnvironmentView, StatusView};
use crate::audit::{self, Action, Entry};
use crate::domain::{DesiredState, Environment, StopCause, TransitionError, new_id, validation};
use crate::jobs;
use crate::platform::Platform;
use crate::store::{CONFLICT_ENVIRONMENT_NAME, StoreError};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

fn env_json(e: &Environment) -> serde_json::Value {
    json!({"environment": EnvironmentView::from(e)})
}

fn accepted(e: &Environment) -> Response {
    (StatusCode::ACCEPTED, Json(env_json(e))).into_response()
}

fn name_taken() -> ApiError {
    let mut errs = validation::FieldErrors::new();
    errs.insert(
        "name".into(),
        "is already used by another of your environments".into(),
    );
    ApiError::Conflict("an environment with this name exists".into(), Some(errs))
}

impl From<TransitionError> for ApiError {
    fn from(e: TransitionError) -> Self {
        ApiError::Conflict(e.to_string(), None)
    }
}

/// Read-modify-write one of the user's environments until the conditional
/// write lands. `f` returns whether it changed anything (no write if not).
async fn mutate<F>(
    p: &Platform,
    user_id: &str,
    id: &str,
    mut f: F,
) -> ApiResult<(Environment, bool)>
where
    F: FnMut(&mut Environment) -> ApiResult<bool>,
{
    for _ in 0..10 {
        let current = p
            .store
            .environment(user_id, id)
            .await?
            .ok_or(ApiError::NotFound)?;
        let mut env = current.value;
        if !f(&mut env)? {
            return Ok((env, false));
        }
        env.updated_at = p.clock.now();
        match p.store.replace_environment(&env, &current.etag).await {
            Ok(_) => return Ok((env, true)),
            Err(StoreError::PreconditionFailed) => continue,
            Err(StoreError::NotFound) => return Err(ApiError::NotFound),
            Err(StoreError::Conflict(w)) if w == CONFLICT_ENVIRONMENT_NAME => {
                return Err(name_taken());
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Conflict(
        "the environment keeps changing; try again".into(),
        None,
    ))
}

/// Enqueue after a state change; a failed enqueue is repaired by the sweep.
async fn kick(p: &Platform, env: &Environment) {
    if let Err(e) = jobs::enqueue(p, env).await {
        tracing::error!(environment = %env.id, error = %format!("{e:#}"), "enqueue failed; the sweep will retry");
    }
}

pub async fn list(State(p): State<AppState>, caller: Caller) -> ApiResult<Json<serde_json::Value>> {
    let envs = p.store.environments(&caller.user.id).await?;
    let views: Vec<_> = envs
        .iter()
        .map(|v| EnvironmentView::from(&v.value))
        .collect();
    Ok(Json(json!({"environments": views})))
}

pub async fn create(
    State(p): State<AppState>,
    addr: ClientAddr,
    caller: Caller,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    let spec = validation::new_environment(&body, p.policy.default_idle_minutes)
        .map_err(ApiError::Validation)?;
    let user_id = &caller.user.id;
    let env = Environment::new(new_id(), user_id.clone(), spec, p.clock.now());
    p.policy
        .quotas
        .reserve_new(p.store.as_ref(), user_id, &env.id, p.clock.now())
        .await?;
    if let Err(e) = p.store.insert_environment(&env).await {
        p.policy
            .quotas
            .release(p.store.as_ref(), user_id, &env.id, true)
            .await
            .ok();
        return Err(match e {
            StoreError::Conflict(w) if w == CONFLICT_ENVIRONMENT_NAME => name_taken(),
            other => other.into(),
        });
    }
    tracing::info!(environment = %env.id, user = %user_id, template = env.base_image.id(), "environment created");
    kick(&p, &env).await;
    audit::record(
        &p,
        Entry::ok(user_id, Action::EnvironmentCreate)
            .env(&env.id)
            .from(addr.0),
    )
    .await;
    let mut resp = accepted(&env);
    if let Ok(loc) = format!("/api/environments/{}", env.id).parse() {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(resp)
}

/// One of the caller's environments, or 404 (also for other users' ids).
pub(super) async fn owned(p: &Platform, caller: &Caller, id: &str) -> ApiResult<Environment> {
    let found = p.store.environment(&caller.user.id, id).await?;
    Ok(found.ok_or(ApiError::NotFound)?.value)
}

pub async fn get(
    State(p): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    Ok(Json(env_json(&owned(&p, &caller, &id).await?)))
}

pub async fn status(
    State(p): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let env = owned(&p, &caller, &id).await?;
    Ok(Json(json!(StatusView::from(&env))))
}

pub async fn patch(
    State(p): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<serde_json::Value>> {
    // Unknown ids are 404 before the body is judged, so nothing leaks.
    owned(&p, &caller, &id).await?;
    let change = validation::environment_patch(&body).map_err(ApiError::Validation)?;
    let (env, _) = mutate(&p, &caller.user.id, &id, |env| {
        if env.desired_state == DesiredState::Deleted {
            return Err(TransitionError::Deleting.into());
        }
        let mut changed = false;
        if let Some(name) = &change.name {
            changed |= env.name != *name;
            env.name = name.clone();
        }
        if let Some(idle) = change.idle_timeout_minutes {
            changed |= env.idle_timeout_minutes != idle;
            env.idle_timeout_minutes = idle;
        }
        Ok(changed)
    })
    .await?;
    Ok(Json(env_json(&env)))
}

pub async fn start(
    State(p): State<AppState>,
    addr: ClientAddr,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let user_id = &caller.user.id;
    let current = owned(&p, &caller, &id).await?;
    if current.desired_state == DesiredState::Deleted {
        return Err(TransitionError::Deleting.into());
    }
    let held_before = current.desired_state == DesiredState::Running;
    p.policy
        .quotas
        .reserve_running(p.store.as_ref(), user_id, &id, p.clock.now())
        .await?;
    let now = p.clock.now();
    match mutate(&p, user_id, &id, |env| Ok(env.request_start(now)?)).await {
        Ok((env, changed)) => {
            if changed {
                tracing::info!(environment = %id, "start requested");
                kick(&p, &env).await;
            }
            audit::record(
                &p,
                Entry::ok(user_id, Action::EnvironmentStart)
                    .env(&id)
                    .from(addr.0),
            )
            .await;
            Ok(accepted(&env))
        }
        Err(e) => {
            if !held_before {
                p.policy
                    .quotas
                    .release(p.store.as_ref(), user_id, &id, false)
                    .await
                    .ok();
            }
            Err(e)
        }
    }
}

pub async fn stop(
    State(p): State<AppState>,
    addr: ClientAddr,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let user_id = &caller.user.id;
    let now = p.clock.now();
    let (env, changed) = mutate(&p, user_id, &id, |env| {
        Ok(env.request_stop(StopCause::User, now)?)
    })
    .await?;
    if changed {
        tracing::info!(environment = %id, "stop requested");
        release_and_kick(&p, &env).await?;
    }
    audit::record(
        &p,
        Entry::ok(user_id, Action::EnvironmentStop)
            .env(&id)
            .from(addr.0),
    )
    .await;
    Ok(accepted(&env))
}

/// After a stop or delete was written: give the running slot back and let
/// the reconcile job act.
async fn release_and_kick(p: &Platform, env: &Environment) -> ApiResult<()> {
    p.policy
        .quotas
        .release(p.store.as_ref(), &env.user_id, &env.id, false)
        .await?;
    kick(p, env).await;
    Ok(())
}

/// Ask for deletion of one environment (also used by account deletion).
pub async fn request_delete(p: &Platform, user_id: &str, id: &str) -> ApiResult<Environment> {
    let now = p.clock.now();
    let (env, changed) = mutate(p, user_id, id, |env| Ok(env.request_delete(now))).await?;
    if changed {
        tracing::info!(environment = %id, "delete requested");
        release_and_kick(p, &env).await?;
    }
    Ok(env)
}

pub async fn delete(
    State(p): State<AppState>,
    addr: ClientAddr,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let env = request_delete(&p, &caller.user.id, &id).await?;
    audit::record(
        &p,
        Entry::ok(&caller.user.id, Action::EnvironmentDelete)
            .env(&id)
            .from(addr.0),
    )
    .await;
    Ok(accepted(&env))
}
