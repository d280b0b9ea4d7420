//! Confirming a password account's email address under an email-domain
//! allowlist: the mailed link (a single-use `EmailConfirm` token whose `jti`
//! is the account's current link id), confirming it, asking for a new one,
//! and giving the address back to its owner when an unconfirmed account
//! stands in the way (it expired, or the owner proved the address).

use super::error::{ApiError, ApiResult};
use super::extract::{AnyCaller, AppState, ClientAddr, JsonObject};
use super::views::UserView;
use crate::audit::{self, Action, Entry};
use crate::auth::ratelimit::Limit;
use crate::auth::tokens::{EMAIL_CONFIRM_AUDIENCE, TokenKind, claims};
use crate::domain::User;
use crate::lifecycle::{Actor, delete_account};
use crate::mail::Mail;
use crate::platform::Platform;
use crate::store::StoreError;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// At most this many new links per account and hour.
const RESEND_LIMIT: Limit = Limit {
    max: 5,
    window: chrono::Duration::hours(1),
};

const LINK_REFUSED: &str = "the link was used, replaced by a newer one, or has expired";

/// Mail the account's current confirmation link. The link carries the
/// token in the URL's fragment, so it reaches no server's request log.
pub(crate) async fn send_link(p: &Platform, user: &User) -> ApiResult<()> {
    let Some(mailer) = &p.mailer else {
        return Err(ApiError::Forbidden(NO_MAIL.into()));
    };
    let Some(pending) = &user.unconfirmed else {
        return Ok(());
    };
    let now = p.clock.now();
    let mut c = claims(
        TokenKind::EmailConfirm,
        p.policy.issuer(),
        &user.id,
        "",
        now,
        pending.expires_at - now,
    );
    c.jti = pending.link_id.clone();
    let link = format!(
        "{}/#/confirm?token={}",
        p.policy.public_url,
        p.keys.sign(&c)
    );
    let mail = Mail {
        to: user.email.clone(),
        subject: "Confirm your email address for Dev8".into(),
        text: format!(
            "Someone, hopefully you, signed up for Dev8 at {url} with this address.\r\n\
             \r\n\
             To confirm it, open this link within 24 hours:\r\n\
             \r\n\
             {link}\r\n\
             \r\n\
             If it was not you, ignore this mail: the account is removed when the link expires.\r\n",
            url = p.policy.public_url,
        ),
    };
    mailer
        .send(&mail)
        .await
        .map_err(|e| ApiError::Unavailable(e.context("sending the confirmation mail")))
}

pub(crate) const NO_MAIL: &str = "with an email-domain allowlist and no mail server, sign up with a provider that verifies your email";

/// `POST /api/auth/confirm` `{token}`: confirm the address. Needs no
/// session (the link may be opened in another browser); a link works once.
pub async fn confirm(
    State(p): State<AppState>,
    addr: ClientAddr,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    let token = body
        .get("token")
        .and_then(|v| v.as_str())
        .filter(|t| !t.is_empty() && t.len() <= 4096)
        .ok_or_else(|| ApiError::field("token", "is required (the token from the mailed link)"))?;
    let c = p
        .keys
        .verify(
            token,
            TokenKind::EmailConfirm,
            EMAIL_CONFIRM_AUDIENCE,
            p.policy.issuer(),
        )
        .map_err(|_| ApiError::field("token", LINK_REFUSED))?;
    let now = p.clock.now();
    let Some(mut user) = p.store.user(&c.sub).await? else {
        return Err(ApiError::field("token", LINK_REFUSED));
    };
    if !user.confirm(&c.jti, now) {
        return Err(ApiError::field("token", LINK_REFUSED));
    }
    match p.store.update_user(&user).await {
        Ok(()) => {}
        Err(StoreError::NotFound) => return Err(ApiError::field("token", LINK_REFUSED)),
        Err(e) => return Err(e.into()),
    }
    p.sessions.forget_user(&user.id);
    tracing::info!(user = %user.id, "email address confirmed");
    audit::record(
        &p,
        Entry::ok(&user.id, Action::EmailConfirm)
            .from(addr.0)
            .detail("mailed link"),
    )
    .await;
    Ok(Json(json!({"user": UserView::from(&user)})).into_response())
}

/// `POST /api/auth/confirm/resend`: a new link for the signed-in,
/// unconfirmed account (the previous link stops working).
pub async fn resend(
    State(p): State<AppState>,
    AnyCaller(caller): AnyCaller,
) -> ApiResult<Response> {
    // Read afresh: the session cache may not know of a confirmation made
    // through another instance, and a confirmed account must stay so.
    let Some(mut user) = p.store.user(&caller.user.id).await? else {
        return Err(ApiError::Unauthorized(
            "the session is not valid; sign in again",
        ));
    };
    if user.is_confirmed() {
        return Err(ApiError::Conflict(
            "the email address is confirmed already".into(),
            None,
        ));
    }
    super::auth_routes::limit(&p, "confirm-resend", &user.id, RESEND_LIMIT).await?;
    user.renew_confirmation(p.clock.now());
    p.store.update_user(&user).await?;
    p.sessions.forget_user(&user.id);
    send_link(&p, &user).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// The address is wanted by someone who may have it: remove an
/// unconfirmed account holding it when its time has passed, or always
/// when `proven` (the owner showed a provider-verified email). Returns
/// whether the address is free now. An unconfirmed account has nothing
/// but its record and sessions (it could do nothing), so nothing is lost.
pub(crate) async fn free_address(
    p: &Platform,
    holder: &User,
    proven: bool,
    client: Option<std::net::IpAddr>,
) -> ApiResult<bool> {
    if holder.is_confirmed() || !(proven || holder.unconfirmed_expired(p.clock.now())) {
        return Ok(false);
    }
    let by = Actor {
        user_id: &holder.id,
        client,
    };
    delete_account(p, by).await?;
    super::auth_routes::release_first_signup(p, &holder.id).await?;
    tracing::info!(user = %holder.id, proven, "unconfirmed account removed: its address is wanted");
    Ok(true)
}
