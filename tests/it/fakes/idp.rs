//! `TestIdp`: a tiny in-test OpenID provider (discovery, JWKS, a token
//! endpoint and a UserInfo endpoint) whose keys, ID tokens and UserInfo
//! claims the test controls, to check Dev8's ID-token validation and its
//! reading of claims a provider returns only from UserInfo (OpenID Connect
//! Core §5.3 and §5.4). The real provider the sign-in flow runs against is
//! `peers::oidc_provider`.

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub const CLIENT_ID: &str = "dev8-test-client";
pub const CLIENT_SECRET: &str = "oidc-secret-do-not-log";

enum KeyKind {
    Ed(SigningKey),
    Ec(p256::SecretKey),
}

/// A signing key with a kid: Ed25519 (EdDSA) or P-256 (ES256).
pub struct TestKey {
    pub kid: String,
    kind: KeyKind,
}

impl TestKey {
    pub fn generate(kid: &str) -> Self {
        TestKey {
            kid: kid.to_string(),
            kind: KeyKind::Ed(SigningKey::generate(&mut rand::rngs::OsRng)),
        }
    }

    pub fn generate_es256(kid: &str) -> Self {
        TestKey {
            kid: kid.to_string(),
            kind: KeyKind::Ec(p256::SecretKey::random(&mut rand::rngs::OsRng)),
        }
    }

    pub fn jwk(&self) -> Value {
        match &self.kind {
            KeyKind::Ed(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "kid": self.kid, "alg": "EdDSA", "use": "sig",
                                     "x": B64.encode(k.verifying_key().as_bytes())})
            }
            KeyKind::Ec(k) => {
                use p256::elliptic_curve::sec1::ToEncodedPoint;
                let point = k.public_key().to_encoded_point(false);
                json!({"kty": "EC", "crv": "P-256", "kid": self.kid, "alg": "ES256", "use": "sig",
                       "x": B64.encode(point.x().unwrap()), "y": B64.encode(point.y().unwrap())})
            }
        }
    }

    /// Sign `claims` as a JWT naming `kid` (which may be another key's).
    pub fn sign_as(&self, kid: &str, claims: &Value) -> String {
        let (alg, key) = match &self.kind {
            KeyKind::Ed(k) => (
                Algorithm::EdDSA,
                EncodingKey::from_ed_der(k.to_pkcs8_der().unwrap().as_bytes()),
            ),
            KeyKind::Ec(k) => {
                use p256::pkcs8::EncodePrivateKey as _;
                (
                    Algorithm::ES256,
                    EncodingKey::from_ec_der(k.to_pkcs8_der().unwrap().as_bytes()),
                )
            }
        };
        let mut header = Header::new(alg);
        header.kid = Some(kid.to_string());
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }

    pub fn sign(&self, claims: &Value) -> String {
        self.sign_as(&self.kid, claims)
    }
}

#[derive(Default)]
struct IdpState {
    published: Vec<Value>,
    next_id_token: Option<String>,
    jwks_fetches: u32,
    token_forms: Vec<HashMap<String, String>>,
    userinfo: Option<Value>,
    userinfo_calls: u32,
}

/// The access token the token endpoint issues and UserInfo requires.
const ACCESS_TOKEN: &str = "at-for-userinfo";

/// The in-test OpenID provider: discovery, JWKS and a token endpoint that
/// answers the ID token the test set (checking client authentication).
#[derive(Clone)]
pub struct TestIdp {
    pub issuer: String,
    state: Arc<Mutex<IdpState>>,
    _stop: Arc<tokio::sync::oneshot::Sender<()>>,
}

type S = (String, Arc<Mutex<IdpState>>);

async fn discovery(State((iss, _)): State<S>) -> Json<Value> {
    Json(json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/authorize"),
        "token_endpoint": format!("{iss}/token"),
        "jwks_uri": format!("{iss}/jwks"),
        "userinfo_endpoint": format!("{iss}/userinfo"),
        "response_types_supported": ["code"],
        "id_token_signing_alg_values_supported": ["EdDSA", "RS256", "ES256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
    }))
}

async fn jwks(State((_, s)): State<S>) -> Json<Value> {
    let mut st = s.lock().unwrap();
    st.jwks_fetches += 1;
    Json(json!({"keys": st.published}))
}

async fn token(
    State((_, s)): State<S>,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let expected = format!(
        "Basic {}",
        STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let mut st = s.lock().unwrap();
    st.token_forms.push(f.clone());
    if f.get("grant_type").map(String::as_str) != Some("authorization_code")
        || !f.contains_key("code_verifier")
    {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_request"})),
        )
            .into_response();
    }
    match st.next_id_token.take() {
        Some(t) => Json(
            json!({"access_token": ACCESS_TOKEN, "token_type": "Bearer", "expires_in": 60, "id_token": t}),
        )
        .into_response(),
        None => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant"})),
        )
            .into_response(),
    }
}

/// §5.3: a Bearer access token from the token endpoint, or 401 with
/// `WWW-Authenticate`; the claims as JSON, `sub` always among them.
async fn userinfo(State((_, s)): State<S>, headers: HeaderMap) -> Response {
    let bearer = format!("Bearer {ACCESS_TOKEN}");
    let mut st = s.lock().unwrap();
    st.userinfo_calls += 1;
    match (&st.userinfo, headers.get("authorization")) {
        (Some(claims), Some(v)) if v.as_bytes() == bearer.as_bytes() => {
            Json(claims.clone()).into_response()
        }
        _ => (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Bearer error=\"invalid_token\"")],
        )
            .into_response(),
    }
}

impl TestIdp {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let state: Arc<Mutex<IdpState>> = Arc::default();
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/token", post(token))
            .route("/userinfo", get(userinfo))
            .with_state((issuer.clone(), state.clone()));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        TestIdp {
            issuer,
            state,
            _stop: Arc::new(tx),
        }
    }

    pub fn publish(&self, key: &TestKey) {
        self.state.lock().unwrap().published.push(key.jwk());
    }

    /// The ID token the next code exchange answers.
    pub fn answer_next(&self, id_token: String) {
        self.state.lock().unwrap().next_id_token = Some(id_token);
    }

    /// What UserInfo answers (as a strict provider does, with the `email`
    /// and `profile` claims the ID token leaves out).
    pub fn answer_userinfo(&self, claims: Value) {
        self.state.lock().unwrap().userinfo = Some(claims);
    }

    pub fn userinfo_calls(&self) -> u32 {
        self.state.lock().unwrap().userinfo_calls
    }

    pub fn jwks_fetches(&self) -> u32 {
        self.state.lock().unwrap().jwks_fetches
    }

    pub fn token_forms(&self) -> Vec<HashMap<String, String>> {
        self.state.lock().unwrap().token_forms.clone()
    }
}
