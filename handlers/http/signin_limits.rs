//! The limits on password sign-in. Only failures count: an attempt is
//! counted before its password is checked (so parallel guesses cannot slip
//! past) and taken back when it succeeds. A known client address is limited
//! on its own and per account, so someone guessing from elsewhere never
//! locks the owner out; unknown addresses share one generous ceiling (a
//! proxy that hides addresses must not turn the limit into a lockout for
//! everyone) plus the per-account limit. A browser that signed in to the
//! account before carries a signed device cookie (OWASP's authentication
//! cheat sheet) and is counted on its own instead, so others' guessing from
//! the same address does not lock it out either.

use super::auth_routes::time_duration;
use super::error::{ApiError, ApiResult};
use super::extract::ClientAddr;
use crate::auth::ratelimit::{self, Decision, Limit};
use crate::auth::tokens::{DEVICE_AUDIENCE, TokenKind, claims};
use crate::domain::User;
use crate::platform::{Platform, Policy};
use axum::http::HeaderMap;
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use chrono::Duration;

pub const DEVICE_COOKIE_PLAIN: &str = "dev8_device";
pub const DEVICE_COOKIE_SECURE: &str = "__Host-dev8_device";
/// How long a browser stays a known device of the account.
const DEVICE_DAYS: i64 = 180;

fn device_cookie_name(policy: &Policy) -> &'static str {
    if policy.secure_cookies() {
        DEVICE_COOKIE_SECURE
    } else {
        DEVICE_COOKIE_PLAIN
    }
}

/// The per-address limit for this client: its own window, or the shared
/// ceiling when the address is unknown.
pub fn per_address(policy: &Policy, addr: &ClientAddr) -> Limit {
    if addr.0.is_some() {
        policy.signin_limit_per_address
    } else {
        policy.signin_limit_unknown
    }
}

/// The device cookie for a browser that just signed in as `user`.
pub fn device_cookie(p: &Platform, user: &User) -> Cookie<'static> {
    let c = claims(
        TokenKind::Device,
        p.policy.issuer(),
        &user.id,
        "",
        p.clock.now(),
        Duration::days(DEVICE_DAYS),
    );
    Cookie::build((device_cookie_name(&p.policy), p.keys.sign(&c)))
        .path("/")
        .http_only(true)
        .secure(p.policy.secure_cookies())
        .same_site(SameSite::Strict)
        .max_age(time_duration(DEVICE_DAYS * 86_400))
        .build()
}

/// The id of the request's device cookie when it is valid for `user`.
fn known_device(p: &Platform, headers: &HeaderMap, user: Option<&User>) -> Option<String> {
    let user = user?;
    let jar = CookieJar::from_headers(headers);
    let token = jar.get(device_cookie_name(&p.policy))?.value().to_string();
    let c = p
        .keys
        .verify(
            &token,
            TokenKind::Device,
            DEVICE_AUDIENCE,
            p.policy.issuer(),
        )
        .ok()?;
    (c.sub == user.id).then_some(c.jti)
}

/// One password attempt, counted against every window that applies.
pub struct Attempt {
    counted: Vec<(&'static str, String, Limit)>,
}

impl Attempt {
    /// Count the attempt, or refuse it (429) when a window is full.
    pub async fn begin(
        p: &Platform,
        addr: &ClientAddr,
        headers: &HeaderMap,
        email: &str,
        user: Option<&User>,
    ) -> ApiResult<Attempt> {
        let per_account = p.policy.signin_limit_per_account;
        let counted = match known_device(p, headers, user) {
            Some(device) => vec![("signin-device", device, per_account)],
            None => {
                let address = addr.key();
                vec![
                    ("signin-addr", address.clone(), per_address(&p.policy, addr)),
                    (
                        "signin-account-addr",
                        format!("{email}\0{address}"),
                        per_account,
                    ),
                ]
            }
        };
        let now = p.clock.now();
        let mut attempt = Attempt {
            counted: Vec::new(),
        };
        let mut retry = None;
        for (scope, key, limit) in counted {
            match ratelimit::hit(p.store.as_ref(), scope, &key, limit, now).await? {
                Decision::Allowed => attempt.counted.push((scope, key, limit)),
                Decision::Limited { retry_after_secs } => {
                    retry = retry.max(Some(retry_after_secs));
                }
            }
        }
        if let Some(retry_after_secs) = retry {
            // Refused unchecked: neither a failure nor a success.
            attempt.succeeded(p).await?;
            return Err(ApiError::TooManyRequests { retry_after_secs });
        }
        Ok(attempt)
    }

    /// The password was right: take the attempt back everywhere.
    pub async fn succeeded(self, p: &Platform) -> ApiResult<()> {
        let now = p.clock.now();
        for (scope, key, limit) in &self.counted {
            ratelimit::forgive(p.store.as_ref(), scope, key, *limit, now).await?;
        }
        Ok(())
    }
}
