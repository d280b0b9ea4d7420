//! Health, templates and the public sign-in configuration.

use super::extract::AppState;
use crate::config::SignupPolicy;
use crate::domain::{PRESETS, Template, validation};
use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

pub async fn health() -> Json<Value> {
    Json(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}

pub async fn templates(State(p): State<AppState>) -> Json<Value> {
    let templates: Vec<Value> = Template::ALL
        .iter()
        .map(|t| json!({"id": t.id(), "displayName": t.display_name(), "description": t.description(), "image": t.image()}))
        .collect();
    Json(json!({
        "templates": templates,
        "presets": PRESETS,
        // What a `share` home is here: a network share (ACI: Azure Files,
        // with SMB's limits) or a folder on this machine (local compute).
        "shareHome": if p.policy.home_modes.share_is_network() { "network" } else { "folder" },
        "limits": {
            "idleTimeoutMinutes": {"min": validation::IDLE_MIN, "max": validation::IDLE_MAX, "default": p.policy.default_idle_minutes},
            "name": {"max": validation::NAME_MAX},
            "cpuCores": {"min": 1, "max": 8},
            "memoryGB": {"min": 2, "max": 16},
            "storageGB": {"min": 20, "max": 200},
        }
    }))
}

/// What the sign-in page needs to know before anyone signs in.
pub async fn auth_config(State(p): State<AppState>) -> Result<Json<Value>, super::error::ApiError> {
    let first_pending = if p.policy.first_account_only() || p.policy.setup_code.is_some() {
        p.store
            .document(super::auth_routes::FIRST_USER_MARKER)
            .await?
            .is_none()
    } else {
        false
    };
    let signup_open = match p.policy.signup {
        SignupPolicy::Closed => false,
        _ if p.policy.first_account_only() => first_pending,
        _ => true,
    };
    let setup_code_required = signup_open && first_pending && p.policy.setup_code.is_some();
    let providers: Vec<Value> = p
        .providers
        .all()
        .iter()
        .map(|pr| json!({"id": pr.id(), "name": pr.name()}))
        .collect();
    Ok(Json(
        json!({"signupOpen": signup_open, "setupCodeRequired": setup_code_required,
               "providers": providers}),
    ))
}

pub async fn keys(State(p): State<AppState>) -> Json<Value> {
    Json(p.keys.jwks())
}
