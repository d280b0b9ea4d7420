//! Accounts: sign-up, sign-in, tokens for API clients, sign-out, the current
//! user and account deletion.

use super::confirm_routes::{NO_MAIL, free_address, send_link};
use super::error::{ApiError, ApiResult};
use super::extract::{
    AnyCaller, AppState, Caller, ClientAddr, JsonObject, cookie_name, require_same_origin,
};
use super::signin_limits::{Attempt, device_cookie, per_address};
use super::views::UserView;
use crate::audit::{self, Action, Entry};
use crate::auth::password;
use crate::auth::ratelimit::{self, Decision};
use crate::auth::tokens::{TokenKind, claims};
use crate::config::SignupPolicy;
use crate::domain::{Session, User, new_id, validation};
use crate::platform::Platform;
use crate::store::{CONFLICT_EMAIL, StoreError};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::{Cookie, SameSite};
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use secrecy::ExposeSecret;
use serde_json::json;

/// Present once the first account exists (sign-up policy `first`).
pub const FIRST_USER_MARKER: &str = "signup:first-user";

pub(crate) async fn limit(
    p: &Platform,
    scope: &str,
    key: &str,
    l: ratelimit::Limit,
) -> ApiResult<()> {
    match ratelimit::hit(p.store.as_ref(), scope, key, l, p.clock.now()).await? {
        Decision::Allowed => Ok(()),
        Decision::Limited { retry_after_secs } => {
            Err(ApiError::TooManyRequests { retry_after_secs })
        }
    }
}

/// Start a server-side session and sign its token.
pub(crate) async fn start_session(p: &Platform, user: &User) -> ApiResult<(String, DateTime<Utc>)> {
    if p.policy.setup_code.is_some() {
        note_an_account_exists(p, user).await?;
    }
    let now = p.clock.now();
    let mut sid = [0u8; 24];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut sid);
    let session = Session {
        id: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sid),
        user_id: user.id.clone(),
        created_at: now,
        expires_at: now + Duration::hours(p.policy.session_hours),
        revoked: false,
    };
    p.store.insert_session(&session).await?;
    let mut c = claims(
        TokenKind::Session,
        p.policy.issuer(),
        &user.id,
        "",
        now,
        Duration::hours(p.policy.session_hours),
    );
    c.sid = Some(session.id);
    Ok((p.keys.sign(&c), session.expires_at))
}

pub(crate) fn session_cookie(p: &Platform, token: String) -> Cookie<'static> {
    Cookie::build((cookie_name(&p.policy), token))
        .path("/")
        .http_only(true)
        .secure(p.policy.secure_cookies())
        .same_site(SameSite::Lax)
        .max_age(time_duration(p.policy.session_hours * 3600))
        .build()
}

pub(crate) fn time_duration(secs: i64) -> cookie::time::Duration {
    cookie::time::Duration::seconds(secs)
}

fn with_cookies<const N: usize>(
    status: StatusCode,
    body: serde_json::Value,
    cookies: [Cookie<'static>; N],
) -> Response {
    let mut resp = (status, Json(body)).into_response();
    for cookie in cookies {
        if let Ok(v) = cookie.to_string().parse() {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}

pub async fn signup(
    State(p): State<AppState>,
    addr: ClientAddr,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    require_same_origin(&headers, &p.policy)?;
    limit(
        &p,
        "signup-addr",
        &addr.key(),
        per_address(&p.policy, &addr),
    )
    .await?;
    let strength = strength_of(
        &p,
        body.get("password"),
        &validation::sign_up_context(&body),
    )
    .await;
    let input = validation::sign_up(&body, strength).map_err(ApiError::Validation)?;
    // An expired unconfirmed account on the address is gone: it neither
    // blocks this sign-up nor holds the first-account place.
    if let Some(holder) = p.store.user_by_email(&input.email).await? {
        free_address(&p, &holder, false, addr.0).await?;
    }
    let setup = signup_allowed(&p, &input.email, input.setup_code.as_deref()).await?;
    // Under an allowlist only a proven address may have an account that can
    // do anything: a typed one proves nothing until the link mailed to it is
    // opened (the operator's first account is proven by the setup code).
    let needs_confirmation = !p.policy.signup_domains.is_empty() && setup != Setup::CodeGiven;
    if needs_confirmation && p.mailer.is_none() {
        return Err(ApiError::Forbidden(NO_MAIL.into()));
    }
    let now = p.clock.now();
    let mut user = User {
        id: new_id(),
        email: input.email,
        name: input.name,
        password_hash: Some(password::hash(input.password).await?),
        created_at: now,
        unconfirmed: None,
    };
    if needs_confirmation {
        user.renew_confirmation(now);
    }
    match p.store.insert_user(&user).await {
        Ok(()) => {}
        Err(StoreError::Conflict(what)) if what == CONFLICT_EMAIL => {
            let mut errs = validation::FieldErrors::new();
            errs.insert("email".into(), "is already registered".into());
            return Err(ApiError::Conflict(
                "an account with this email exists".into(),
                Some(errs),
            ));
        }
        Err(e) => return Err(e.into()),
    }
    claim_first_signup(&p, &user).await?;
    // The account exists even if the mail cannot go now: its owner asks
    // for a new link from the "check your mail" page.
    let mailed = if needs_confirmation {
        match send_link(&p, &user).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(user = %user.id, error = ?e, "the confirmation mail was not sent");
                false
            }
        }
    } else {
        false
    };
    tracing::info!(user = %user.id, "account created");
    audit::record(
        &p,
        Entry::ok(&user.id, Action::SignUp)
            .from(addr.0)
            .detail("password"),
    )
    .await;
    let (token, _) = start_session(&p, &user).await?;
    let mut body = json!({"user": UserView::from(&user)});
    if needs_confirmation {
        body["confirmationMailed"] = json!(mailed);
    }
    Ok(with_cookies(
        StatusCode::CREATED,
        body,
        [session_cookie(&p, token), device_cookie(&p, &user)],
    ))
}

/// Whether a sign-up was the first account's, proven by the setup code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Setup {
    NotAsked,
    CodeGiven,
}

/// May an account with this (normalised) email be created now? Applies
/// `DEV8_SIGNUP`, `DEV8_SIGNUP_DOMAINS` and, while no account exists,
/// `DEV8_SETUP_CODE` (`setup_code` is what the sign-up gave: none from a
/// provider); used by every way of signing up.
pub(crate) async fn signup_allowed(
    p: &Platform,
    email: &str,
    setup_code: Option<&str>,
) -> ApiResult<Setup> {
    let mut setup = Setup::NotAsked;
    if p.policy.signup == SignupPolicy::Closed {
        return Err(ApiError::Forbidden("sign-up is closed".into()));
    }
    let needs_code = p.policy.setup_code.is_some();
    if p.policy.first_account_only() || needs_code {
        let mut exists = first_user_marker(p)
            .await?
            .is_some_and(|m| !released(&m.value));
        if exists && held_by_an_expired_account(p).await? {
            exists = false;
        }
        if exists && p.policy.first_account_only() {
            return Err(ApiError::Forbidden(closed_message(&p.policy).into()));
        }
        if let Some(expected) = &p.policy.setup_code
            && !exists
        {
            if !same_code(expected.expose_secret(), setup_code.unwrap_or_default()) {
                return Err(ApiError::Forbidden(SETUP_CODE_NEEDED.into()));
            }
            setup = Setup::CodeGiven;
        }
    }
    if !p.policy.signup_domains.is_empty() {
        let domain = email.rsplit('@').next().unwrap_or_default();
        if !p
            .policy
            .signup_domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(domain))
        {
            return Err(ApiError::Forbidden(
                "sign-up is limited to certain email domains".into(),
            ));
        }
    }
    Ok(setup)
}

/// With a setup code, an account that existed before the code was set (and
/// so before the marker) closes the first-account window when it signs in.
async fn note_an_account_exists(p: &Platform, user: &User) -> ApiResult<()> {
    let current = first_user_marker(p).await?;
    if current.as_ref().is_some_and(|m| !released(&m.value)) {
        return Ok(());
    }
    let marker = json!({"userId": user.id});
    match p
        .store
        .put_document(
            FIRST_USER_MARKER,
            &marker,
            current.as_ref().map(|m| &m.etag),
            None,
        )
        .await
    {
        Ok(_) | Err(StoreError::Conflict(_)) | Err(StoreError::PreconditionFailed) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Does the first account's place belong to an unconfirmed account whose
/// time has passed? Then it is removed (and the place freed) here, since
/// nobody may come by its address to do it.
async fn held_by_an_expired_account(p: &Platform) -> ApiResult<bool> {
    let Some(marker) = first_user_marker(p).await? else {
        return Ok(false);
    };
    let Some(id) = marker.value.get("userId").and_then(|v| v.as_str()) else {
        return Ok(false);
    };
    match p.store.user(id).await? {
        Some(holder) => free_address(p, &holder, false, None).await,
        None => Ok(false),
    }
}

async fn first_user_marker(
    p: &Platform,
) -> ApiResult<Option<crate::store::Versioned<serde_json::Value>>> {
    Ok(p.store.document(FIRST_USER_MARKER).await?)
}

/// A marker whose account was an unconfirmed one, since removed: the first
/// account's place is free again.
fn released(marker: &serde_json::Value) -> bool {
    marker.get("released").and_then(|v| v.as_bool()) == Some(true)
}

/// An unconfirmed account that held the first-account place was removed:
/// give the place back (the marker stays, marked released, so a
/// conditional write decides between racing sign-ups).
pub(crate) async fn release_first_signup(p: &Platform, user_id: &str) -> ApiResult<()> {
    let Some(m) = first_user_marker(p).await? else {
        return Ok(());
    };
    if m.value.get("userId").and_then(|v| v.as_str()) != Some(user_id) || released(&m.value) {
        return Ok(());
    }
    let marker = json!({"userId": user_id, "released": true});
    match p
        .store
        .put_document(FIRST_USER_MARKER, &marker, Some(&m.etag), None)
        .await
    {
        Ok(_) | Err(StoreError::PreconditionFailed) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

pub(crate) const SETUP_CODE_NEEDED: &str =
    "the first account needs the server's setup code (sign up with a password)";

/// Compare codes by their digests: equal time whatever the input.
fn same_code(expected: &str, given: &str) -> bool {
    use sha2::{Digest, Sha256};
    Sha256::digest(expected.as_bytes()) == Sha256::digest(given.as_bytes())
}

fn closed_message(policy: &crate::platform::Policy) -> &'static str {
    if policy.one_account {
        "sign-up is closed: this server runs every IDE as one OS user, so it \
         takes one account (DEV8_LOCAL_SHARED_USER=1 allows more)"
    } else {
        "sign-up is closed"
    }
}

/// Under the `first` policy (or one account only, or with a setup code),
/// claim the one-time marker for a just-created
/// account. Two racing first sign-ups both passed `signup_allowed`: the
/// marker decides, and the loser's account is removed again.
pub(crate) async fn claim_first_signup(p: &Platform, user: &User) -> ApiResult<()> {
    let exclusive = p.policy.first_account_only();
    if !exclusive && p.policy.setup_code.is_none() {
        return Ok(());
    }
    let marker = json!({"userId": user.id});
    // A released marker (its unconfirmed account was removed) is taken
    // over conditionally: of two racing sign-ups one wins.
    let current = first_user_marker(p)
        .await?
        .filter(|m| released(&m.value))
        .map(|m| m.etag);
    let written = match p
        .store
        .put_document(FIRST_USER_MARKER, &marker, current.as_ref(), None)
        .await
    {
        Err(StoreError::PreconditionFailed) => Err(StoreError::Conflict(FIRST_USER_MARKER.into())),
        other => other,
    };
    if let Err(e) = written {
        // With sign-up open and a setup code, the marker only says that an
        // account exists: someone else's having written it is no loss.
        if !exclusive && matches!(e, StoreError::Conflict(_)) {
            return Ok(());
        }
        p.store.delete_user(&user.id).await?;
        return Err(match e {
            StoreError::Conflict(_) => ApiError::Forbidden(closed_message(&p.policy).into()),
            other => other.into(),
        });
    }
    Ok(())
}

/// Check credentials under the sign-in limits (`signin_limits`); the same
/// 401 for an unknown email and a wrong password, in about the same time.
async fn authenticate(
    p: &Platform,
    addr: ClientAddr,
    headers: &HeaderMap,
    body: &serde_json::Map<String, serde_json::Value>,
) -> ApiResult<User> {
    let creds = validation::credentials(body).map_err(ApiError::Validation)?;
    let mut user = p.store.user_by_email(&creds.email).await?;
    if let Some(holder) = &user
        && free_address(p, holder, false, addr.0).await?
    {
        user = None;
    }
    let attempt = Attempt::begin(p, &addr, headers, &creds.email, user.as_ref()).await?;
    let hash = user.as_ref().and_then(|u| u.password_hash.clone());
    if password::verify(creds.password, hash).await
        && let Some(user) = user
    {
        attempt.succeeded(p).await?;
        return Ok(user);
    }
    // A failure is recorded for the account it targeted (its owner sees
    // it), or in the anonymous partition when no account has the email.
    let owner = user.as_ref().map_or(audit::ANONYMOUS, |u| u.id.as_str());
    audit::record(
        p,
        Entry::ok(owner, Action::SignIn)
            .failed()
            .from(addr.0)
            .detail("password: wrong email or password"),
    )
    .await;
    Err(ApiError::Unauthorized("the email or password is wrong"))
}

pub async fn signin(
    State(p): State<AppState>,
    addr: ClientAddr,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    require_same_origin(&headers, &p.policy)?;
    let user = authenticate(&p, addr, &headers, &body).await?;
    let (token, _) = start_session(&p, &user).await?;
    audit::record(
        &p,
        Entry::ok(&user.id, Action::SignIn)
            .from(addr.0)
            .detail("password"),
    )
    .await;
    Ok(with_cookies(
        StatusCode::OK,
        json!({"user": UserView::from(&user)}),
        [session_cookie(&p, token), device_cookie(&p, &user)],
    ))
}

/// A bearer token for API clients (no cookie).
pub async fn token(
    State(p): State<AppState>,
    addr: ClientAddr,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    let user = authenticate(&p, addr, &headers, &body).await?;
    let (token, expires_at) = start_session(&p, &user).await?;
    audit::record(
        &p,
        Entry::ok(&user.id, Action::SignIn)
            .from(addr.0)
            .detail("password (API token)"),
    )
    .await;
    let mut resp = Json(json!({"token": token, "expiresAt": expires_at})).into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    Ok(resp)
}

fn clear_cookie(p: &Platform) -> Response {
    let cookie = Cookie::build((cookie_name(&p.policy), ""))
        .path("/")
        .http_only(true)
        .secure(p.policy.secure_cookies())
        .same_site(SameSite::Lax)
        .max_age(time_duration(0))
        .build();
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = cookie.to_string().parse() {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

pub async fn signout(
    State(p): State<AppState>,
    addr: ClientAddr,
    AnyCaller(caller): AnyCaller,
) -> ApiResult<Response> {
    p.store.revoke_session(&caller.session_id).await?;
    p.sessions.forget_session(&caller.session_id);
    audit::record(&p, Entry::ok(&caller.user.id, Action::SignOut).from(addr.0)).await;
    Ok(clear_cookie(&p))
}

/// Change the caller's password: the current one must be right (a wrong
/// one counts against a per-account limit, as sign-in failures do), the new
/// one must pass `validation::password_rule`. Every other session of the
/// account is signed out; this one stays.
pub async fn change_password(
    State(p): State<AppState>,
    addr: ClientAddr,
    caller: Caller,
    JsonObject(body): JsonObject,
) -> ApiResult<StatusCode> {
    let user = &caller.user;
    let strength = strength_of(&p, body.get("newPassword"), &[&user.email, &user.name]).await;
    let input = validation::password_change(&body, strength).map_err(ApiError::Validation)?;
    let Some(hash) = user.password_hash.clone() else {
        let mut errs = validation::FieldErrors::new();
        errs.insert(
            "currentPassword".into(),
            "this account has no password: it signs in with a provider".into(),
        );
        return Err(ApiError::Validation(errs));
    };
    limit(
        &p,
        "password-change",
        &user.id,
        p.policy.signin_limit_per_account,
    )
    .await?;
    if !password::verify(input.current_password, Some(hash)).await {
        audit::record(
            &p,
            Entry::ok(&user.id, Action::PasswordChange)
                .failed()
                .from(addr.0)
                .detail("wrong current password"),
        )
        .await;
        let mut errs = validation::FieldErrors::new();
        errs.insert("currentPassword".into(), "is wrong".into());
        return Err(ApiError::Validation(errs));
    }
    let new_hash = password::hash(input.new_password).await?;
    p.store.set_password_hash(&user.id, &new_hash).await?;
    p.store
        .revoke_user_sessions(&user.id, Some(&caller.session_id))
        .await?;
    p.sessions.forget_user(&user.id);
    audit::record(&p, Entry::ok(&user.id, Action::PasswordChange).from(addr.0)).await;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn me(AnyCaller(caller): AnyCaller) -> Json<serde_json::Value> {
    Json(json!({"user": UserView::from(&caller.user)}))
}

/// Delete the account (`lifecycle::delete_account`) and clear the cookie.
pub async fn delete_me(
    State(p): State<AppState>,
    addr: ClientAddr,
    AnyCaller(caller): AnyCaller,
) -> ApiResult<Response> {
    let by = crate::lifecycle::Actor {
        user_id: &caller.user.id,
        client: addr.0,
    };
    crate::lifecycle::delete_account(&p, by).await?;
    Ok(clear_cookie(&p))
}

/// The strength estimate's verdict on a new password as the body gives it
/// (`auth::strength`: in a child in `serve` and `functions`), for this
/// person (`context`). A value that is no string or has the wrong length
/// gets no estimate: validation reports those.
async fn strength_of(
    p: &AppState,
    password: Option<&serde_json::Value>,
    context: &[&str],
) -> Result<(), String> {
    match password.and_then(serde_json::Value::as_str) {
        Some(pw) if validation::password_length(pw).is_ok() => {
            crate::auth::strength::verdict(&p.policy.password_estimator, pw, context).await
        }
        _ => Ok(()),
    }
}
