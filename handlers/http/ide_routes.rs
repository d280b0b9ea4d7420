//! Opening the IDE and hearing from agents: `GET .../ide` (a page
//! navigation: a one-time ticket and a 303 to the agent), `POST .../open`
//! (the same URL for API clients), and `POST .../activity` (agents only,
//! with the environment's current agent token).

use super::error::{ApiError, ApiResult};
use super::extract::{AppState, Caller, ClientAddr, IdPath};
use super::views::IdleView;
use crate::audit::{self, Action, Entry};
use crate::auth::tokens::{TokenKind, claims};
use crate::domain::{DesiredState, Environment, Status};
use crate::lifecycle::{self, ActivityOutcome};
use crate::platform::Platform;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use serde_json::json;

/// How long an IDE ticket is valid.
pub const TICKET_TTL: Duration = Duration::seconds(60);

/// The agent URL that redeems a fresh ticket, if the environment runs.
fn ticket_url(p: &Platform, env: &Environment) -> Option<(String, DateTime<Utc>)> {
    let ide = env
        .ide_url
        .as_deref()
        .filter(|_| env.status == Status::Running && env.desired_state == DesiredState::Running)?;
    let now = p.clock.now();
    let c = claims(
        TokenKind::IdeTicket,
        p.policy.issuer(),
        &env.user_id,
        &env.id,
        now,
        TICKET_TTL,
    );
    let ticket = p.keys.sign(&c);
    Some((
        format!(
            "{}/_dev8/session?ticket={ticket}",
            ide.trim_end_matches('/')
        ),
        now + TICKET_TTL,
    ))
}

fn see_other(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

/// `GET /api/environments/{id}/ide`: a browser navigation. Signed out -> the
/// dashboard's sign-in; not running -> the environment's dashboard page with
/// a notice; running -> 303 to the agent with a one-time ticket.
pub async fn ide(
    State(p): State<AppState>,
    IdPath(id): IdPath,
    addr: ClientAddr,
    caller: Result<Caller, ApiError>,
) -> ApiResult<Response> {
    let caller = match caller {
        Ok(c) => c,
        Err(ApiError::Unauthorized(_)) => return Ok(see_other("/#/signin")),
        Err(e) => return Err(e),
    };
    let env = super::env_routes::owned(&p, &caller, &id).await?;
    Ok(match ticket_url(&p, &env) {
        Some((url, _)) => {
            record_open(&p, &caller, &env, addr).await;
            see_other(&url)
        }
        None => see_other(&format!("/#/environments/{}?notice=not-running", env.id)),
    })
}

/// One audit record per ticket handed out (page navigation or API client).
async fn record_open(p: &Platform, caller: &Caller, env: &Environment, addr: ClientAddr) {
    let entry = Entry::ok(&caller.user.id, Action::IdeOpen)
        .env(&env.id)
        .from(addr.0);
    audit::record(p, entry).await;
}

/// `POST /api/environments/{id}/open`: `{url, expiresAt}` for API clients.
pub async fn open(
    State(p): State<AppState>,
    IdPath(id): IdPath,
    addr: ClientAddr,
    caller: Caller,
) -> ApiResult<Json<serde_json::Value>> {
    let env = super::env_routes::owned(&p, &caller, &id).await?;
    let (url, expires_at) = ticket_url(&p, &env)
        .ok_or_else(|| ApiError::Conflict("the environment is not running".into(), None))?;
    record_open(&p, &caller, &env, addr).await;
    Ok(Json(json!({"url": url, "expiresAt": expires_at})))
}

/// `POST /api/environments/{id}/activity`: an agent reports use. Only the
/// environment's current agent token is accepted (`aud=agent:<id>`, `jti` =
/// the record's `agentTokenId`); `lastActivityAt` moves forward to now, with
/// a conditional write, and only while the environment is meant to run.
/// The answer says when it will be stopped for inactivity and when the
/// person is warned (`idleStopAt`, `idleWarningAt`), and the control plane's
/// `now` (so the agent need not trust its own clock): the agent learns them
/// from its first report at start and from every later one.
pub async fn activity(
    State(p): State<AppState>,
    IdPath(id): IdPath,
    headers: HeaderMap,
) -> ApiResult<Json<serde_json::Value>> {
    const REJECTED: ApiError =
        ApiError::Unauthorized("an agent token for this environment is required");
    let token = super::extract::bearer(&headers).ok_or(REJECTED)?.token;
    let c = p
        .keys
        .verify(
            token,
            TokenKind::Agent,
            &TokenKind::Agent.audience(&id),
            p.policy.issuer(),
        )
        .map_err(|_| REJECTED)?;
    match lifecycle::record_activity(&p, &c.sub, &id, &c.jti).await? {
        ActivityOutcome::Recorded(env) => {
            let mut answer = json!(IdleView::new(&env, p.policy.idle_warning));
            answer["now"] = json!(p.clock.now());
            Ok(Json(answer))
        }
        ActivityOutcome::NotCurrentAgent => Err(REJECTED),
    }
}
