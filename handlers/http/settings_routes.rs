//! `GET /api/settings` and `PATCH /api/settings`: the caller's account
//! settings (`account`), today `dotfilesRepository`, checked by the same URL
//! rules as a create's `repository`.

use super::error::{ApiError, ApiResult};
use super::extract::{AppState, Caller, JsonObject};
use crate::account;
use crate::domain::validation;
use axum::Json;
use axum::extract::State;
use serde_json::json;

pub async fn get(State(p): State<AppState>, caller: Caller) -> ApiResult<Json<serde_json::Value>> {
    let settings = account::read(p.store.as_ref(), &caller.user.id).await?;
    Ok(Json(json!(settings)))
}

pub async fn patch(
    State(p): State<AppState>,
    caller: Caller,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<serde_json::Value>> {
    let dotfiles = validation::account_settings(&body, p.policy.git_url_rules)
        .map_err(ApiError::Validation)?;
    let settings = account::set_dotfiles(p.store.as_ref(), &caller.user.id, dotfiles).await?;
    Ok(Json(json!(settings)))
}
