//! Sign-in with GitHub and OpenID Connect: start (redirect to the provider
//! with `state`, `nonce` and PKCE, bound to this browser by a short-lived
//! cookie), callback (check `state`, exchange the code, find or create the
//! account, start the same session as a password sign-in), explicit
//! linking from a signed-in session, and the list/unlink of identities.
//!
//! The flow cookie holds only a random handle; the state, nonce and PKCE
//! verifier live server-side in a single-use document keyed by the handle's
//! hash, which expires after ten minutes.

use super::auth_routes::{
    claim_first_signup, limit, session_cookie, signup_allowed, start_session, time_duration,
};
use super::confirm_routes::free_address;
use super::error::{ApiError, ApiResult};
use super::extract::{AppState, Caller, ClientAddr, IdPath};
use crate::audit::{self, Action, Entry};
use crate::auth::oauth::{
    AuthRequest, ExternalIdentity, Provider, ProviderError, pkce_challenge, random_token, same,
};
use crate::domain::{Identity, User, new_id};
use crate::platform::Platform;
use crate::store::{CONFLICT_EMAIL, CONFLICT_IDENTITY, StoreError};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// How long a started sign-in may take.
pub const FLOW_TTL: Duration = Duration::minutes(10);
pub const FLOW_COOKIE_PLAIN: &str = "dev8_oauth";
pub const FLOW_COOKIE_SECURE: &str = "__Host-dev8_oauth";

/// The server-side half of a started sign-in.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Flow {
    provider: String,
    state: String,
    nonce: String,
    verifier: String,
    /// Set when a signed-in user is linking another identity.
    link_user_id: Option<String>,
    expires_at: DateTime<Utc>,
    #[serde(default)]
    used: bool,
}

/// The store key of the flow a cookie handle refers to.
pub fn flow_key(handle: &str) -> String {
    let digest = Sha256::digest(handle.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("oauth-flow:{hex}")
}

fn flow_cookie_name(p: &Platform) -> &'static str {
    if p.policy.secure_cookies() {
        FLOW_COOKIE_SECURE
    } else {
        FLOW_COOKIE_PLAIN
    }
}

fn flow_cookie(p: &Platform, value: String, max_age: i64) -> Cookie<'static> {
    Cookie::build((flow_cookie_name(p), value))
        .path("/")
        .http_only(true)
        .secure(p.policy.secure_cookies())
        .same_site(SameSite::Lax)
        .max_age(time_duration(max_age))
        .build()
}

fn redirect_uri(p: &Platform, provider: &str) -> String {
    format!("{}/api/auth/{provider}/callback", p.policy.public_url)
}

/// 303 to `location`, setting `cookies`; never cached, never referred.
fn see_other(location: &str, cookies: &[Cookie<'static>]) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    for c in cookies {
        if let Ok(v) = c.to_string().parse() {
            h.append(header::SET_COOKIE, v);
        }
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

/// Where a failed sign-in (or link) ends: the dashboard, with a code it explains.
fn to_dashboard_error(p: &Platform, code: &str, linking: bool) -> Response {
    let page = if linking { "/#/account" } else { "/#/signin" };
    see_other(
        &format!("{page}?error={code}"),
        &[flow_cookie(p, String::new(), 0)],
    )
}

fn provider<'a>(p: &'a Platform, id: &str) -> ApiResult<Provider<'a>> {
    p.providers.get(id).ok_or(ApiError::NotFound)
}

/// Record a started flow and return the provider URL and the flow cookie.
async fn begin(
    p: &Platform,
    provider: &Provider<'_>,
    link_user_id: Option<String>,
) -> Result<(String, Cookie<'static>), ProviderError> {
    let handle = random_token(32);
    let flow = Flow {
        provider: provider.id().to_string(),
        state: random_token(24),
        nonce: random_token(24),
        verifier: random_token(32),
        link_user_id,
        expires_at: p.clock.now() + FLOW_TTL,
        used: false,
    };
    let uri = redirect_uri(p, provider.id());
    let url = provider
        .authorize_url(&AuthRequest {
            redirect_uri: &uri,
            state: &flow.state,
            nonce: &flow.nonce,
            code_challenge: &pkce_challenge(&flow.verifier),
        })
        .await?;
    let doc = serde_json::to_value(&flow).map_err(ProviderError::unavailable)?;
    p.store
        .put_document(&flow_key(&handle), &doc, None, Some(flow.expires_at))
        .await
        .map_err(ProviderError::unavailable)?;
    Ok((url, flow_cookie(p, handle, FLOW_TTL.num_seconds())))
}

/// `GET /api/auth/{provider}/start`: a page navigation to the provider.
pub async fn start(
    State(p): State<AppState>,
    Path(id): Path<String>,
    addr: ClientAddr,
) -> ApiResult<Response> {
    let provider = provider(&p, &id)?;
    // Each start stores a small flow document: bound per address.
    limit(
        &p,
        "oauth-start-addr",
        &addr.key(),
        super::signin_limits::per_address(&p.policy, &addr),
    )
    .await?;
    match begin(&p, &provider, None).await {
        Ok((url, cookie)) => Ok(see_other(&url, &[cookie])),
        Err(e) => {
            tracing::warn!(provider = %id, error = %format!("{e:#}"), "could not start a sign-in");
            Ok(to_dashboard_error(&p, e.code(), false))
        }
    }
}

/// `POST /api/auth/{provider}/link`: start linking another identity to the
/// signed-in account; answers the provider URL for the dashboard to open.
pub async fn link(
    State(p): State<AppState>,
    Path(id): Path<String>,
    caller: Caller,
) -> ApiResult<Response> {
    let provider = provider(&p, &id)?;
    let (url, cookie) = begin(&p, &provider, Some(caller.user.id.clone()))
        .await
        .map_err(|e| match e {
            ProviderError::Unavailable(e) => ApiError::Unavailable(e),
            other => ApiError::BadRequest(other.to_string()),
        })?;
    let mut resp = Json(json!({"redirect": url})).into_response();
    if let Ok(v) = cookie.to_string().parse() {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(resp)
}

/// Load and consume the flow this browser started; any mismatch is a 400.
async fn take_flow(
    p: &Platform,
    headers: &HeaderMap,
    provider_id: &str,
    state: Option<&String>,
) -> ApiResult<Flow> {
    const RESTART: &str = "this sign-in was not started here or has expired; start again";
    let jar = CookieJar::from_headers(headers);
    let handle = jar
        .get(flow_cookie_name(p))
        .map(|c| c.value().to_string())
        .filter(|h| !h.is_empty())
        .ok_or_else(|| ApiError::BadRequest(RESTART.into()))?;
    let state =
        state.ok_or_else(|| ApiError::BadRequest("the state parameter is missing".into()))?;
    let key = flow_key(&handle);
    let doc = p
        .store
        .document(&key)
        .await?
        .ok_or_else(|| ApiError::BadRequest(RESTART.into()))?;
    let flow: Flow = serde_json::from_value(doc.value.clone())
        .map_err(|_| ApiError::BadRequest(RESTART.into()))?;
    if flow.used || flow.expires_at <= p.clock.now() || flow.provider != provider_id {
        return Err(ApiError::BadRequest(RESTART.into()));
    }
    if !same(&flow.state, state) {
        return Err(ApiError::BadRequest(
            "the state parameter does not match this sign-in".into(),
        ));
    }
    let mut used = doc.value;
    used["used"] = json!(true);
    match p
        .store
        .put_document(&key, &used, Some(&doc.etag), Some(flow.expires_at))
        .await
    {
        Ok(_) => Ok(flow),
        Err(StoreError::PreconditionFailed) => Err(ApiError::BadRequest(RESTART.into())),
        Err(e) => Err(e.into()),
    }
}

/// `GET /api/auth/{provider}/callback`: where the provider sends the browser back.
pub async fn callback(
    State(p): State<AppState>,
    Path(id): Path<String>,
    addr: ClientAddr,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let provider = provider(&p, &id)?;
    limit(
        &p,
        "signin-addr",
        &addr.key(),
        super::signin_limits::per_address(&p.policy, &addr),
    )
    .await?;
    let flow = take_flow(&p, &headers, provider.id(), q.get("state")).await?;
    let linking = flow.link_user_id.is_some();
    let who = flow.link_user_id.as_deref().unwrap_or(audit::ANONYMOUS);
    let action = if linking {
        Action::IdentityLink
    } else {
        Action::SignIn
    };
    let pid = provider.id();
    let fail = |code: &'static str| {
        let p = &p;
        async move {
            audit::record(
                p,
                Entry::ok(who, action)
                    .failed()
                    .from(addr.0)
                    .detail(format!("{pid}: {code}")),
            )
            .await;
            to_dashboard_error(p, code, linking)
        }
    };
    if let Some(error) = q.get("error") {
        let e = if error == "access_denied" {
            ProviderError::Denied
        } else {
            ProviderError::Rejected(error.clone())
        };
        tracing::info!(provider = %id, error = %e, "the provider returned an error");
        return Ok(fail(e.code()).await);
    }
    let Some(code) = q.get("code").filter(|c| !c.is_empty()) else {
        return Ok(fail("provider_rejected").await);
    };
    let uri = redirect_uri(&p, provider.id());
    let ext = match provider
        .exchange(code, &flow.verifier, &uri, &flow.nonce)
        .await
    {
        Ok(ext) => ext,
        Err(e) => {
            tracing::warn!(provider = %id, error = %format!("{e:#}"), "sign-in with a provider failed");
            return Ok(fail(e.code()).await);
        }
    };
    if let Some(user_id) = &flow.link_user_id {
        return Ok(
            match link_identity(&p, user_id, &provider, &ext, addr).await? {
                Ok(()) => see_other(
                    &format!("/#/account?linked={}", provider.id()),
                    &[flow_cookie(&p, String::new(), 0)],
                ),
                Err(code) => fail(code).await,
            },
        );
    }
    let user = match find_or_create(&p, &provider, &ext, addr).await? {
        Ok(u) => u,
        Err(code) => return Ok(fail(code).await),
    };
    let (token, _) = start_session(&p, &user).await?;
    audit::record(
        &p,
        Entry::ok(&user.id, Action::SignIn)
            .from(addr.0)
            .detail(provider.id()),
    )
    .await;
    Ok(see_other(
        "/#/",
        &[session_cookie(&p, token), flow_cookie(&p, String::new(), 0)],
    ))
}

fn new_identity(
    user_id: &str,
    provider: &Provider<'_>,
    ext: &ExternalIdentity,
    now: DateTime<Utc>,
) -> Identity {
    Identity {
        id: new_id(),
        user_id: user_id.to_string(),
        provider: provider.id().to_string(),
        issuer: ext.issuer.clone(),
        subject: ext.subject.clone(),
        email: ext.email.clone(),
        email_verified: ext.email_verified,
        created_at: now,
    }
}

/// Has the account's email been verified by one of its identities?
/// (Password accounts never have: nobody verified their email.)
async fn account_email_verified(p: &Platform, user: &User) -> ApiResult<bool> {
    Ok(p.store
        .identities(&user.id)
        .await?
        .iter()
        .any(|i| i.email_verified && i.email.as_deref() == Some(user.email.as_str())))
}

/// The account an identity signs in to: its own, an account it links to
/// automatically (both sides verified the email), or a new one (sign-up
/// policy applies). `Err(code)` is a refusal the dashboard explains.
async fn find_or_create(
    p: &Platform,
    provider: &Provider<'_>,
    ext: &ExternalIdentity,
    addr: ClientAddr,
) -> ApiResult<Result<User, &'static str>> {
    if let Some(identity) = p
        .store
        .identity_by_subject(&ext.issuer, &ext.subject)
        .await?
    {
        if let Some(user) = p.store.user(&identity.user_id).await? {
            return Ok(Ok(user));
        }
        // The account was deleted: the identity goes with it.
        let _ = p
            .store
            .delete_identity(&identity.user_id, &identity.id)
            .await;
    }
    let now = p.clock.now();
    // An unconfirmed password account on the address (anyone could have
    // typed it) gives way to the owner's verified email, or to anyone once
    // it has expired.
    if let Some(email) = &ext.email
        && let Some(existing) = p.store.user_by_email(email).await?
        && !free_address(p, &existing, ext.email_verified, addr.0).await?
    {
        if !(ext.email_verified && account_email_verified(p, &existing).await?) {
            // No takeover: the person signs in the way they did before and
            // links this identity from their account.
            return Ok(Err("account_exists"));
        }
        match p
            .store
            .insert_identity(&new_identity(&existing.id, provider, ext, now))
            .await
        {
            Ok(()) | Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
        audit::record(
            p,
            Entry::ok(&existing.id, Action::IdentityLink)
                .from(addr.0)
                .detail(format!("{}: automatic, verified email", provider.id())),
        )
        .await;
        return Ok(Ok(existing));
    }
    let Some(email) = ext.email.clone() else {
        return Ok(Err("email_required"));
    };
    if !p.policy.signup_domains.is_empty() && !ext.email_verified {
        return Ok(Err("signup_closed"));
    }
    match signup_allowed(p, &email, None).await {
        Ok(_) => {}
        Err(ApiError::Forbidden(_)) => return Ok(Err("signup_closed")),
        Err(e) => return Err(e),
    }
    let user = User {
        id: new_id(),
        email,
        name: ext
            .name
            .as_deref()
            .unwrap_or_default()
            .chars()
            .take(crate::domain::validation::NAME_MAX)
            .collect(),
        password_hash: None,
        created_at: now,
        unconfirmed: None,
    };
    match p.store.insert_user(&user).await {
        Ok(()) => {}
        Err(StoreError::Conflict(w)) if w == CONFLICT_EMAIL => return Ok(Err("account_exists")),
        Err(e) => return Err(e.into()),
    }
    match claim_first_signup(p, &user).await {
        Ok(()) => {}
        Err(ApiError::Forbidden(_)) => return Ok(Err("signup_closed")),
        Err(e) => return Err(e),
    }
    if let Err(e) = p
        .store
        .insert_identity(&new_identity(&user.id, provider, ext, now))
        .await
    {
        // A concurrent first sign-in with the same identity won.
        p.store.delete_user(&user.id).await?;
        return match e {
            StoreError::Conflict(w) if w == CONFLICT_IDENTITY => Ok(Err("try_again")),
            other => Err(other.into()),
        };
    }
    tracing::info!(user = %user.id, provider = provider.id(), "account created");
    audit::record(
        p,
        Entry::ok(&user.id, Action::SignUp)
            .from(addr.0)
            .detail(provider.id()),
    )
    .await;
    Ok(Ok(user))
}

/// Attach an identity to a signed-in account (explicit linking).
async fn link_identity(
    p: &Platform,
    user_id: &str,
    provider: &Provider<'_>,
    ext: &ExternalIdentity,
    addr: ClientAddr,
) -> ApiResult<Result<(), &'static str>> {
    if p.store.user(user_id).await?.is_none() {
        return Ok(Err("account_gone"));
    }
    if let Some(existing) = p
        .store
        .identity_by_subject(&ext.issuer, &ext.subject)
        .await?
    {
        return Ok(if existing.user_id == user_id {
            Ok(())
        } else {
            Err("identity_in_use")
        });
    }
    match p
        .store
        .insert_identity(&new_identity(user_id, provider, ext, p.clock.now()))
        .await
    {
        Ok(()) => {}
        Err(StoreError::Conflict(w)) if w == CONFLICT_IDENTITY => {
            return Ok(Err("identity_in_use"));
        }
        Err(e) => return Err(e.into()),
    }
    audit::record(
        p,
        Entry::ok(user_id, Action::IdentityLink)
            .from(addr.0)
            .detail(format!("{}: explicit", provider.id())),
    )
    .await;
    Ok(Ok(()))
}

fn identity_json(i: &Identity) -> serde_json::Value {
    json!({
        "id": i.id,
        "provider": i.provider,
        "email": i.email,
        "emailVerified": i.email_verified,
        "createdAt": i.created_at,
    })
}

/// `GET /api/auth/identities`: the caller's linked identities.
pub async fn identities(
    State(p): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<serde_json::Value>> {
    let list = p.store.identities(&caller.user.id).await?;
    Ok(Json(json!({
        "identities": list.iter().map(identity_json).collect::<Vec<_>>(),
        "hasPassword": caller.user.password_hash.is_some(),
    })))
}

/// `DELETE /api/auth/identities/{id}`: unlink, but never the last way to sign in.
pub async fn unlink(
    State(p): State<AppState>,
    IdPath(id): IdPath,
    addr: ClientAddr,
    caller: Caller,
) -> ApiResult<Response> {
    let user = &caller.user;
    let list = p.store.identities(&user.id).await?;
    let identity = list.iter().find(|i| i.id == id).ok_or(ApiError::NotFound)?;
    if user.password_hash.is_none() && list.len() <= 1 {
        return Err(ApiError::Conflict(
            "this is your only way to sign in; link another first".into(),
            None,
        ));
    }
    match p.store.delete_identity(&user.id, &id).await {
        Ok(()) => {}
        Err(StoreError::NotFound) => return Err(ApiError::NotFound),
        Err(e) => return Err(e.into()),
    }
    audit::record(
        &p,
        Entry::ok(&user.id, Action::IdentityUnlink)
            .from(addr.0)
            .detail(identity.provider.clone()),
    )
    .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}
