//! Opening the IDE and hearing from agents: `GET .../ide` (a page
//! navigation: a one-time ticket and a 303 to the agent), `POST .../open`
//! (the same URL for API clients), and from agents only, with the
//! environment's current agent token: `POST .../activity` (use),
//! `POST .../report` (the periodic report: usage) and `POST .../sessions`
//! (which of the sign-in sessions the agent serves are still live).

use super::error::{ApiError, ApiResult};
use super::extract::{AppState, Caller, ClientAddr, IdPath, JsonObject};
use super::views::IdleView;
use crate::audit::{self, Action, Entry};
use crate::auth::tokens::{Claims, TokenKind, claims};
use crate::domain::{DesiredState, Environment, Status, validation};
use crate::lifecycle::{self, ActivityOutcome, ReportOutcome};
use crate::platform::Platform;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use secrecy::ExposeSecret;
use serde_json::json;

/// How long an IDE ticket is valid.
pub const TICKET_TTL: Duration = Duration::seconds(60);

/// The most session ids one check may name.
pub const MAX_CHECKED_SESSIONS: usize = 1000;

/// The agent URL that redeems a fresh ticket, if the environment runs. The
/// ticket names the caller's sign-in session (`sid`), which the agent checks
/// with `POST .../sessions` for as long as it serves the browser.
fn ticket_url(
    p: &Platform,
    env: &Environment,
    session_id: &str,
) -> Option<(String, DateTime<Utc>)> {
    let ide = env
        .ide_url
        .as_deref()
        .filter(|_| env.status == Status::Running && env.desired_state == DesiredState::Running)?;
    let now = p.clock.now();
    let mut c = claims(
        TokenKind::IdeTicket,
        p.policy.issuer(),
        &env.user_id,
        &env.id,
        now,
        TICKET_TTL,
    );
    c.sid = Some(session_id.to_string());
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
    Ok(match ticket_url(&p, &env, &caller.session_id) {
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
    let (url, expires_at) = ticket_url(&p, &env, &caller.session_id)
        .ok_or_else(|| ApiError::Conflict("the environment is not running".into(), None))?;
    record_open(&p, &caller, &env, addr).await;
    Ok(Json(json!({"url": url, "expiresAt": expires_at})))
}

const AGENT_REJECTED: ApiError =
    ApiError::Unauthorized("an agent token for this environment is required");

/// The agent token of a request from an environment's agent: `aud=agent:<id>`
/// for this id. Whether it is the *current* one (its `jti` the record's
/// `agentTokenId`) the lifecycle function decides against the record.
fn agent_claims(p: &Platform, id: &str, headers: &HeaderMap) -> ApiResult<Claims> {
    let token = super::extract::bearer(headers).ok_or(AGENT_REJECTED)?.token;
    p.keys
        .verify(
            token,
            TokenKind::Agent,
            &TokenKind::Agent.audience(id),
            p.policy.issuer(),
        )
        .map_err(|_| AGENT_REJECTED)
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
    let c = agent_claims(&p, &id, &headers)?;
    match lifecycle::record_activity(&p, &c.sub, &id, &c.jti).await? {
        ActivityOutcome::Recorded(env) => Ok(Json(idle_answer(&p, &env))),
        ActivityOutcome::NotCurrentAgent => Err(AGENT_REJECTED),
    }
}

/// `POST /api/environments/{id}/sessions` with `{"sessions": [sid, ...]}`:
/// an agent asks which of the sign-in sessions it serves are still live. It
/// answers `{"live": [...]}`, the subset that exists, is neither revoked nor
/// expired, and belongs to the environment's owner, whose account still
/// exists. Any other id (another user's, unknown, revoked) is simply not in
/// the answer, so nothing is revealed about it. Only the environment's
/// current agent token is accepted; a read, it changes nothing.
pub async fn sessions(
    State(p): State<AppState>,
    IdPath(id): IdPath,
    headers: HeaderMap,
    body: Result<JsonObject, ApiError>,
) -> ApiResult<Json<serde_json::Value>> {
    let c = agent_claims(&p, &id, &headers)?;
    let JsonObject(body) = body?;
    let asked = checked_session_ids(&body)?;
    let env = p
        .store
        .environment(&c.sub, &id)
        .await?
        .ok_or(ApiError::NotFound)?
        .value;
    if env.agent_token_id.as_deref() != Some(c.jti.as_str()) {
        return Err(AGENT_REJECTED);
    }
    let mut live = Vec::new();
    if p.store.user(&env.user_id).await?.is_some() {
        let now = p.clock.now();
        for sid in asked {
            let Some(s) = p.store.session(&sid).await? else {
                continue;
            };
            if !s.revoked && s.expires_at > now && s.user_id == env.user_id {
                live.push(sid);
            }
        }
    }
    Ok(Json(json!({ "live": live })))
}

/// The `sessions` field: at most `MAX_CHECKED_SESSIONS` session ids
/// (base64url, as sign-in makes them), duplicates dropped.
fn checked_session_ids(
    body: &serde_json::Map<String, serde_json::Value>,
) -> ApiResult<Vec<String>> {
    const FIELD: &str = "sessions";
    let invalid = || {
        ApiError::field(
            FIELD,
            format!("a list of at most {MAX_CHECKED_SESSIONS} session ids"),
        )
    };
    if let Some(other) = body.keys().find(|k| *k != FIELD) {
        return Err(ApiError::field(other, "unknown field"));
    }
    let list = body
        .get(FIELD)
        .and_then(|v| v.as_array())
        .ok_or_else(invalid)?;
    if list.len() > MAX_CHECKED_SESSIONS {
        return Err(invalid());
    }
    let mut seen = std::collections::HashSet::new();
    let mut ids = Vec::with_capacity(list.len());
    for v in list {
        let sid = v
            .as_str()
            .filter(|s| {
                (1..=128).contains(&s.len())
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
            .ok_or_else(invalid)?;
        if seen.insert(sid) {
            ids.push(sid.to_string());
        }
    }
    Ok(ids)
}

/// `POST /api/environments/{id}/report`: the agent's periodic report
/// (`{"usage": {...}}`, see docs/agent.md), authorised exactly as
/// `activity`. The usage is kept while the environment runs; the idle clock
/// is not touched. The answer is a JSON object the agent reads leniently:
/// later fields carry instructions.
pub async fn report(
    State(p): State<AppState>,
    IdPath(id): IdPath,
    headers: HeaderMap,
    body: Result<JsonObject, ApiError>,
) -> ApiResult<Json<serde_json::Value>> {
    let c = agent_claims(&p, &id, &headers)?;
    let JsonObject(body) = body?;
    let usage = validation::agent_report(&body, p.clock.now()).map_err(ApiError::Validation)?;
    let clone_error = validation::agent_setup(&body).map_err(ApiError::Validation)?;
    let sas_expires_on = validation::agent_snapshot_sas(&body).map_err(ApiError::Validation)?;
    match lifecycle::record_report(&p, &c.sub, &id, &c.jti, usage, clone_error).await? {
        ReportOutcome::Accepted { usage_kept, env } => {
            let mut answer = idle_answer(&p, &env);
            answer["usageRecorded"] = json!(usage_kept);
            if let Some(expires_on) = sas_expires_on
                && let Some(grant) = renewed_snapshot_sas(&p, &env, expires_on).await
            {
                answer["snapshotSas"] = json!({
                    "sas": grant.sas.expose_secret(),
                    "expiresOn": grant.expires_on,
                });
            }
            Ok(Json(answer))
        }
        ReportOutcome::NotCurrentAgent => Err(AGENT_REJECTED),
    }
}

/// A new SAS for the agent's Blob snapshot store, when its own is past half
/// its life and the environment is to run (a stopping or stopped one gets
/// none: its final snapshot has at least half a lifetime left). SAS times
/// are judged by the storage service's clock, so they are the system
/// clock's, not `Platform::clock`. A failure to mint is logged and the
/// agent asks again with its next report.
async fn renewed_snapshot_sas(
    p: &Platform,
    env: &Environment,
    expires_on: DateTime<Utc>,
) -> Option<crate::snapshot_grant::SnapshotGrant> {
    let authority = p.snapshot_grants.as_ref()?;
    let to_run = env.desired_state == DesiredState::Running
        && matches!(
            env.status,
            Status::Creating | Status::Starting | Status::Running
        );
    if !to_run {
        return None;
    }
    let now = Utc::now();
    let minted = async {
        let account = authority.account().await?;
        if !crate::snapshot_grant::needs_renewal(expires_on, account.lifetime, now) {
            return Ok(None);
        }
        account.mint(&env.id, now).map(Some)
    };
    match minted.await {
        Ok(grant) => grant,
        Err(e) => {
            tracing::warn!(environment = %env.id, error = %format!("{e:#}"), "could not renew the snapshot SAS");
            None
        }
    }
}

/// What the answers to an agent's activity post and periodic report carry
/// about the idle stop: `idleStopAt`, `idleWarningAt` and the control
/// plane's `now` (so the agent counts in seconds from now, whatever its own
/// clock says).
fn idle_answer(p: &Platform, env: &Environment) -> serde_json::Value {
    let mut answer = json!(IdleView::new(env, p.policy.idle_warning));
    answer["now"] = json!(p.clock.now());
    answer
}
