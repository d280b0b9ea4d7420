//! Environment routes: read the caller's environments, and turn requests
//! into `lifecycle` calls. The API never talks to compute: the lifecycle
//! service writes the desired state, asks for a reconcile, and the route
//! answers 202.

use super::error::{ApiError, ApiResult};
use super::extract::{AppState, Caller, ClientAddr, IdPath, JsonObject};
use super::views::{EnvironmentView, StatusView};
use crate::domain::{Environment, validation};
use crate::lifecycle::{self, Actor, LifecycleError};
use crate::platform::Platform;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

fn env_json(p: &Platform, e: &Environment) -> serde_json::Value {
    json!({"environment": EnvironmentView::new(e, &p.policy)})
}

fn accepted(p: &Platform, e: &Environment) -> Response {
    (StatusCode::ACCEPTED, Json(env_json(p, e))).into_response()
}

impl From<LifecycleError> for ApiError {
    fn from(e: LifecycleError) -> Self {
        match e {
            LifecycleError::NotFound => ApiError::NotFound,
            LifecycleError::Transition(t) => ApiError::Conflict(t.to_string(), None),
            LifecycleError::NameTaken => {
                let mut errs = validation::FieldErrors::new();
                errs.insert(
                    "name".into(),
                    "is already used by another of your environments".into(),
                );
                ApiError::Conflict("an environment with this name exists".into(), Some(errs))
            }
            LifecycleError::Quota(msg) => ApiError::Quota(msg),
            LifecycleError::Store(e) => e.into(),
        }
    }
}

fn actor<'a>(caller: &'a Caller, addr: &ClientAddr) -> Actor<'a> {
    Actor {
        user_id: &caller.user.id,
        client: addr.0,
    }
}

pub async fn list(State(p): State<AppState>, caller: Caller) -> ApiResult<Json<serde_json::Value>> {
    let envs = p.store.environments(&caller.user.id).await?;
    let views: Vec<_> = envs
        .iter()
        .map(|v| EnvironmentView::new(&v.value, &p.policy))
        .collect();
    Ok(Json(json!({"environments": views})))
}

pub async fn create(
    State(p): State<AppState>,
    addr: ClientAddr,
    caller: Caller,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    let spec =
        validation::new_environment(&body, p.policy.default_idle_minutes, p.policy.git_url_rules)
            .map_err(ApiError::Validation)?;
    let env = lifecycle::create(&p, actor(&caller, &addr), spec).await?;
    let mut resp = accepted(&p, &env);
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
    IdPath(id): IdPath,
    caller: Caller,
) -> ApiResult<Json<serde_json::Value>> {
    Ok(Json(env_json(&p, &owned(&p, &caller, &id).await?)))
}

pub async fn status(
    State(p): State<AppState>,
    IdPath(id): IdPath,
    caller: Caller,
) -> ApiResult<Json<serde_json::Value>> {
    let env = owned(&p, &caller, &id).await?;
    Ok(Json(json!(StatusView::from(&env))))
}

pub async fn patch(
    State(p): State<AppState>,
    IdPath(id): IdPath,
    caller: Caller,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<serde_json::Value>> {
    // Unknown ids are 404 before the body is judged, so nothing leaks.
    owned(&p, &caller, &id).await?;
    let change = validation::environment_patch(&body).map_err(ApiError::Validation)?;
    let env = lifecycle::change_settings(
        &p,
        &caller.user.id,
        &id,
        change.name.as_deref(),
        change.idle_timeout_minutes,
    )
    .await?;
    Ok(Json(env_json(&p, &env)))
}

/// `POST .../start` (`START`), `POST .../stop` (`STOP`), `DELETE ...`
/// (`DELETE`): one lifecycle call, answered 202 with the record. The route
/// table names the request as a const parameter.
pub async fn request<const R: u8>(
    State(p): State<AppState>,
    IdPath(id): IdPath,
    addr: ClientAddr,
    caller: Caller,
) -> ApiResult<Response> {
    let by = actor(&caller, &addr);
    let env = match R {
        START => lifecycle::start(&p, by, &id).await?,
        STOP => lifecycle::stop(&p, by, &id).await?,
        _ => lifecycle::delete(&p, by, &id).await?,
    };
    Ok(accepted(&p, &env))
}

pub const START: u8 = 0;
pub const STOP: u8 = 1;
pub const DELETE: u8 = 2;
