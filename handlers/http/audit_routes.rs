//! `GET /api/audit`: the caller's own audit records, newest first, paged
//! with an opaque cursor (`?before=<next>&limit=`); `?environmentId=` narrows
//! them to one of the caller's environments (its history). The history of an
//! environment that is not the caller's, or no longer exists (forgotten after
//! deletion), is 404: its records stay in the account's log.

use super::error::{ApiError, ApiResult};
use super::extract::{AppState, Caller};
use crate::domain::{AuditRecord, validation};
use crate::store::AuditCursor;
use axum::Json;
use axum::extract::{Query, State};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;
use std::collections::HashMap;

pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 200;

fn encode_cursor(r: &AuditRecord) -> String {
    B64.encode(format!(
        "{}|{}",
        r.at.to_rfc3339_opts(SecondsFormat::Micros, true),
        r.id
    ))
}

fn decode_cursor(s: &str) -> Option<AuditCursor> {
    let raw = String::from_utf8(B64.decode(s).ok()?).ok()?;
    let (at, id) = raw.split_once('|')?;
    Some(AuditCursor {
        at: DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&Utc),
        id: id.to_string(),
    })
}

pub async fn list(
    State(p): State<AppState>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<serde_json::Value>> {
    let limit = match q.get("limit") {
        None => DEFAULT_LIMIT,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => return Err(ApiError::field("limit", format!("must be 1-{MAX_LIMIT}"))),
        },
    };
    let before = match q.get("before") {
        None => None,
        Some(c) => Some(
            decode_cursor(c)
                .ok_or_else(|| ApiError::field("before", "is not a cursor from this API"))?,
        ),
    };
    let environment_id = match q.get("environmentId") {
        None => None,
        Some(id) if validation::is_id(id) => Some(id.as_str()),
        Some(_) => {
            return Err(ApiError::field("environmentId", "is not an environment id"));
        }
    };
    if let Some(id) = environment_id {
        // Another user's environment is simply not found in this partition.
        p.store
            .environment(&caller.user.id, id)
            .await?
            .ok_or(ApiError::NotFound)?;
    }
    // One more than asked tells whether another page exists.
    let mut records = p
        .store
        .audit_records(&caller.user.id, environment_id, before.as_ref(), limit + 1)
        .await?;
    let more = records.len() > limit;
    records.truncate(limit);
    let next = if more {
        records.last().map(encode_cursor)
    } else {
        None
    };
    Ok(Json(json!({"records": records, "next": next})))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::AuditOutcome;

    #[test]
    fn cursors_round_trip() {
        let r = AuditRecord {
            id: "abc".into(),
            user_id: "u".into(),
            at: Utc::now(),
            action: "auth.signin".into(),
            outcome: AuditOutcome::Success,
            environment_id: None,
            client_address: None,
            detail: None,
            idle_timeout_minutes: None,
            reason: None,
            desired_state: None,
        };
        let c = decode_cursor(&encode_cursor(&r)).unwrap();
        assert_eq!(c.id, "abc");
        assert_eq!(c.at.timestamp_micros(), r.at.timestamp_micros());
        assert!(decode_cursor("not a cursor").is_none());
    }
}
