//! Personal secrets: `GET /api/secrets` (names and times, never values),
//! `PUT /api/secrets/{name}` (create or replace, `{"value"}`), `DELETE
//! /api/secrets/{name}`. The routes validate and call `crate::secrets`; a
//! value is read from the body once and goes nowhere but the sealing.

use super::error::{ApiError, ApiResult};
use super::extract::{AppState, Caller, ClientAddr, JsonObject};
use crate::domain::{StoredSecret, secret_value};
use crate::secrets::{self, SecretsError};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

impl From<SecretsError> for ApiError {
    fn from(e: SecretsError) -> Self {
        match e {
            SecretsError::NotFound => ApiError::NotFound,
            SecretsError::TooMany => ApiError::Quota(e.to_string()),
            SecretsError::Store(e) => e.into(),
            SecretsError::Sealing(e) => ApiError::Internal(e),
        }
    }
}

/// What the API shows of a secret: its name and when it was last set.
fn view(s: &StoredSecret) -> Value {
    json!({"name": s.name, "updatedAt": s.updated_at})
}

pub async fn list(State(p): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    let all = secrets::list(&p, &caller.user.id).await?;
    Ok(Json(
        json!({"secrets": all.iter().map(view).collect::<Vec<_>>()}),
    ))
}

/// 201 when created, 200 when replaced; the answer names the secret only.
pub async fn put(
    State(p): State<AppState>,
    Path(name): Path<String>,
    addr: ClientAddr,
    caller: Caller,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    let value = secret_value(&name, &body).map_err(ApiError::Validation)?;
    let (stored, replaced) = secrets::set(&p, &caller.user.id, addr.0, &name, &value).await?;
    let status = if replaced {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(json!({"secret": view(&stored)}))).into_response())
}

pub async fn delete(
    State(p): State<AppState>,
    Path(name): Path<String>,
    addr: ClientAddr,
    caller: Caller,
) -> ApiResult<Response> {
    // A malformed name cannot name a stored secret: 404 like any other.
    if crate::domain::name_problem(&name).is_some() {
        return Err(ApiError::NotFound);
    }
    secrets::delete(&p, &caller.user.id, addr.0, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
