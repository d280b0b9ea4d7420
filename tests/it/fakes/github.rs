//! A stateful in-test stand-in for GitHub's documented OAuth web flow
//! (`GET /login/oauth/authorize`, `POST /login/oauth/access_token`, which
//! answers errors with 200 and an `error` field) and the REST API
//! (`GET /user`, `GET /user/emails`). It checks the client id, secret,
//! redirect URI and PKCE S256 like GitHub does; codes are single use.
//! Who is "signed in at GitHub" (and whether they consent) is set by the test.

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub const CLIENT_ID: &str = "gh-client-id";
pub const CLIENT_SECRET: &str = "gh-client-secret-do-not-log";

#[derive(Clone, Debug)]
pub struct GhEmail {
    pub email: String,
    pub verified: bool,
    pub primary: bool,
}

#[derive(Clone, Debug)]
pub struct GhUser {
    pub id: u64,
    pub login: String,
    pub emails: Vec<GhEmail>,
}

struct Grant {
    login: String,
    challenge: String,
    redirect_uri: String,
    used: bool,
}

#[derive(Default)]
struct State_ {
    users: HashMap<String, GhUser>,
    signed_in: Option<String>,
    deny: bool,
    codes: HashMap<String, Grant>,
    tokens: HashMap<String, String>,
    next: u64,
    token_requests: Vec<HashMap<String, String>>,
}

#[derive(Clone)]
pub struct GitHubStandIn {
    pub url: String,
    state: Arc<Mutex<State_>>,
    _stop: Arc<tokio::sync::oneshot::Sender<()>>,
}

type S = Arc<Mutex<State_>>;

async fn authorize(State(s): State<S>, Query(q): Query<HashMap<String, String>>) -> Response {
    let mut st = s.lock().unwrap();
    let (Some(client_id), Some(redirect_uri), Some(state)) =
        (q.get("client_id"), q.get("redirect_uri"), q.get("state"))
    else {
        return (StatusCode::BAD_REQUEST, "missing parameters").into_response();
    };
    if client_id != CLIENT_ID || q.get("code_challenge_method").map(String::as_str) != Some("S256")
    {
        return (StatusCode::BAD_REQUEST, "bad client or PKCE method").into_response();
    }
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    if st.deny {
        let to = format!(
            "{redirect_uri}{sep}error=access_denied&error_description=The+user+has+denied+your+application+access.&state={state}"
        );
        return Redirect::to(&to).into_response();
    }
    let Some(login) = st.signed_in.clone() else {
        return (StatusCode::UNAUTHORIZED, "nobody signed in at the stand-in").into_response();
    };
    st.next += 1;
    let code = format!("code{}x{}", st.next, rand_hex());
    st.codes.insert(
        code.clone(),
        Grant {
            login,
            challenge: q.get("code_challenge").cloned().unwrap_or_default(),
            redirect_uri: redirect_uri.clone(),
            used: false,
        },
    );
    Redirect::to(&format!("{redirect_uri}{sep}code={code}&state={state}")).into_response()
}

fn rand_hex() -> String {
    let mut b = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn access_token(
    State(s): State<S>,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let mut st = s.lock().unwrap();
    st.token_requests.push(f.clone());
    let wants_json = headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    assert!(wants_json, "Dev8 asks for JSON");
    let err = |e: &str| Json(json!({"error": e, "error_description": e})).into_response();
    if f.get("client_id").map(String::as_str) != Some(CLIENT_ID)
        || f.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET)
    {
        return err("incorrect_client_credentials");
    }
    let code = f.get("code").cloned().unwrap_or_default();
    let verifier = f.get("code_verifier").cloned().unwrap_or_default();
    let Some(grant) = st.codes.get_mut(&code) else {
        return err("bad_verification_code");
    };
    if grant.used {
        return err("bad_verification_code");
    }
    grant.used = true;
    if f.get("redirect_uri") != Some(&grant.redirect_uri) {
        return err("redirect_uri_mismatch");
    }
    if B64.encode(Sha256::digest(verifier.as_bytes())) != grant.challenge {
        return err("bad_verification_code");
    }
    let login = grant.login.clone();
    let token = format!("gho_{}", rand_hex());
    st.tokens.insert(token.clone(), login);
    Json(json!({"access_token": token, "token_type": "bearer", "scope": "read:user,user:email"}))
        .into_response()
}

fn bearer_user(s: &S, headers: &HeaderMap) -> Option<GhUser> {
    let token = headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?;
    let st = s.lock().unwrap();
    let login = st.tokens.get(token)?;
    st.users.get(login).cloned()
}

async fn user(State(s): State<S>, headers: HeaderMap) -> Response {
    match bearer_user(&s, &headers) {
        Some(u) => {
            Json(json!({"id": u.id, "login": u.login, "name": null, "email": null})).into_response()
        }
        None => (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "Bad credentials"})),
        )
            .into_response(),
    }
}

async fn emails(State(s): State<S>, headers: HeaderMap) -> Response {
    match bearer_user(&s, &headers) {
        Some(u) => Json(
            u.emails
                .iter()
                .map(|e| json!({"email": e.email, "verified": e.verified, "primary": e.primary, "visibility": null}))
                .collect::<Vec<_>>(),
        )
        .into_response(),
        None => (StatusCode::UNAUTHORIZED, Json(json!({"message": "Bad credentials"}))).into_response(),
    }
}

impl GitHubStandIn {
    pub async fn start() -> Self {
        let state: S = Arc::default();
        let app = Router::new()
            .route("/login/oauth/authorize", get(authorize))
            .route("/login/oauth/access_token", post(access_token))
            .route("/api/user", get(user))
            .route("/api/user/emails", get(emails))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        GitHubStandIn {
            url,
            state,
            _stop: Arc::new(tx),
        }
    }

    pub fn api_url(&self) -> String {
        format!("{}/api", self.url)
    }

    /// Register a GitHub account.
    pub fn add_user(&self, id: u64, login: &str, emails: &[(&str, bool, bool)]) {
        self.state.lock().unwrap().users.insert(
            login.to_string(),
            GhUser {
                id,
                login: login.to_string(),
                emails: emails
                    .iter()
                    .map(|(e, verified, primary)| GhEmail {
                        email: e.to_string(),
                        verified: *verified,
                        primary: *primary,
                    })
                    .collect(),
            },
        );
    }

    /// Who the next authorization is for.
    pub fn sign_in_as(&self, login: &str) {
        let mut st = self.state.lock().unwrap();
        st.signed_in = Some(login.to_string());
        st.deny = false;
    }

    /// The next authorization is declined by the person.
    pub fn deny_next(&self) {
        self.state.lock().unwrap().deny = true;
    }

    /// Every token request's form fields, in order.
    pub fn token_requests(&self) -> Vec<HashMap<String, String>> {
        self.state.lock().unwrap().token_requests.clone()
    }
}
