//! `GET /api/settings` and `PATCH /api/settings`: the caller's account
//! settings (`account`), today `dotfilesRepository`, checked by the same URL
//! rules as a create's `repository`.

use super::error::{ApiError, ApiResult};
use super::extract::{AppState, Caller, ClientAddr, JsonObject};
use crate::account;
use crate::audit::{self, Action, Entry};
use crate::domain::validation;
use axum::Json;
use axum::extract::State;
use serde_json::json;

pub async fn get(State(p): State<AppState>, caller: Caller) -> ApiResult<Json<serde_json::Value>> {
    let settings = account::read(p.store.as_ref(), &caller.user.id).await?;
    Ok(Json(json!(settings)))
}

/// A change of the dotfiles repository is audited (`settings.dotfiles`,
/// the new URL or nothing when removed): it decides code that runs in
/// every new environment. Setting the same value again writes nothing.
pub async fn patch(
    State(p): State<AppState>,
    addr: ClientAddr,
    caller: Caller,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<serde_json::Value>> {
    let dotfiles = validation::account_settings(&body, p.policy.git_url_rules)
        .map_err(ApiError::Validation)?;
    let (settings, changed) =
        account::set_dotfiles(p.store.as_ref(), &caller.user.id, dotfiles).await?;
    if changed {
        let mut entry = Entry::ok(&caller.user.id, Action::DotfilesChange).from(addr.0);
        if let Some(url) = &settings.dotfiles_repository {
            entry = entry.detail(url.as_str());
        }
        audit::record(&p, entry).await;
    }
    Ok(Json(json!(settings)))
}
