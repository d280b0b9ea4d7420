//! A stand-in for App Service's managed-identity endpoint (what a Function
//! App's process finds in `IDENTITY_ENDPOINT` + `IDENTITY_HEADER`), from
//! Microsoft's "Managed identities for App Service and Azure Functions" REST
//! protocol, api-version 2019-08-01:
//!
//! * `GET <endpoint>?resource=<uri>&api-version=2019-08-01` with optional
//!   `client_id` (or `principal_id`, `mi_res_id`) naming a user-assigned
//!   identity, and the `X-IDENTITY-HEADER: <IDENTITY_HEADER>` secret;
//! * 200 with `{"access_token", "expires_on" (epoch seconds, a string),
//!   "resource", "token_type":"Bearer", "client_id"}`;
//! * a request that names no identity gets the system-assigned one; an app
//!   with user-assigned identities only has none, and the request is
//!   refused (400), as is one naming an identity not assigned to the app.
//!
//! Every request is recorded. Loopback only.

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub const API_VERSION: &str = "2019-08-01";
/// The secret the platform puts in `IDENTITY_HEADER` (a test value).
pub const SECRET: &str = "identity-header-secret";

/// One token request as the endpoint saw it.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub resource: Option<String>,
    pub client_id: Option<String>,
    pub api_version: Option<String>,
    pub answered: u16,
}

struct Endpoint {
    /// Client ids of the user-assigned identities attached to the app.
    user_assigned: Vec<String>,
    /// Whether the app has a system-assigned identity.
    system_assigned: bool,
    requests: Mutex<Vec<TokenRequest>>,
}

pub struct IdentityEndpoint {
    /// The `IDENTITY_ENDPOINT` value.
    pub url: String,
    state: Arc<Endpoint>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for IdentityEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl IdentityEndpoint {
    /// An app with only the user-assigned identities `client_ids` (what
    /// `infra/modules/functionapp.bicep` deploys: one).
    pub async fn user_assigned_only(client_ids: &[&str]) -> Self {
        let state = Arc::new(Endpoint {
            user_assigned: client_ids.iter().map(|s| s.to_string()).collect(),
            system_assigned: false,
            requests: Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://127.0.0.1:{}/msi/token",
            listener.local_addr().unwrap().port()
        );
        let router = Router::new()
            .route("/msi/token", axum::routing::get(token))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        IdentityEndpoint { url, state, task }
    }

    pub fn requests(&self) -> Vec<TokenRequest> {
        self.state.requests.lock().unwrap().clone()
    }
}

async fn token(
    State(s): State<Arc<Endpoint>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let client_id = q.get("client_id").cloned();
    let status = if headers
        .get("x-identity-header")
        .and_then(|v| v.to_str().ok())
        != Some(SECRET)
    {
        StatusCode::UNAUTHORIZED
    } else if q.get("api-version").map(String::as_str) != Some(API_VERSION)
        || !q.contains_key("resource")
    {
        StatusCode::BAD_REQUEST
    } else {
        let known = match &client_id {
            Some(id) => s.user_assigned.iter().any(|c| c.eq_ignore_ascii_case(id)),
            None => s.system_assigned,
        };
        if known {
            StatusCode::OK
        } else {
            StatusCode::BAD_REQUEST
        }
    };
    s.requests.lock().unwrap().push(TokenRequest {
        resource: q.get("resource").cloned(),
        client_id: client_id.clone(),
        api_version: q.get("api-version").cloned(),
        answered: status.as_u16(),
    });
    if status != StatusCode::OK {
        let message = match status {
            StatusCode::UNAUTHORIZED => "X-IDENTITY-HEADER is missing or wrong",
            _ => {
                "No managed identity matches the request (the app has user-assigned identities only: name one with client_id)"
            }
        };
        return (
            status,
            Json(json!({"statusCode": status.as_u16(), "message": message})),
        )
            .into_response();
    }
    let expires_on = chrono::Utc::now().timestamp() + 3600;
    Json(json!({
        "access_token": format!("fake-aad-token-for-{}", client_id.as_deref().unwrap_or("system")),
        "expires_on": expires_on.to_string(),
        "resource": q.get("resource"),
        "token_type": "Bearer",
        "client_id": client_id,
    }))
    .into_response()
}
