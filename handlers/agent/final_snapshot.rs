//! The final snapshot a stop asks for (snapshot mode on ACI, where the
//! container group is stopped by ARM and the agent cannot count on a grace
//! period of its own): `POST /_dev8/final-snapshot` with an `agent-control`
//! token for this environment in `X-Dev8-Authorization`. The first request
//! ends the IDE and every process of the environment and takes the final
//! snapshot (the same way out as a shutdown, `run`); every request, that one
//! included, answers how it is going:
//!
//! * `202 {"state":"saving"}` while it is being taken;
//! * `200 {"state":"saved","lastAt":…}` once it is in the store;
//! * `200 {"state":"failed","error":…}` when it failed (the previous
//!   snapshot is kept).
//!
//! So the request is idempotent: the control plane asks again until it is
//! told the snapshot is saved (or its own bound passes). Without snapshot
//! mode there is nothing to save: 404. A token of any other kind, for
//! another environment, or expired: 401.

use crate::auth::keys::VerifyingKeys;
use crate::auth::tokens::{DEV8_AUTHORIZATION, TokenKind};
use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use std::sync::Mutex;
use tokio::sync::watch;

/// Where the final snapshot is.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// Not asked for.
    Running,
    Saving,
    Saved {
        last_at: Option<DateTime<Utc>>,
    },
    Failed {
        error: String,
    },
}

/// The agent's side of the final snapshot.
pub struct Finals {
    keys: VerifyingKeys,
    audience: String,
    issuer: String,
    /// Snapshot mode (otherwise there is nothing to save).
    enabled: bool,
    state: Mutex<State>,
    asked: watch::Sender<bool>,
}

impl Finals {
    pub fn new(keys: VerifyingKeys, environment_id: &str, issuer: &str, enabled: bool) -> Self {
        Finals {
            keys,
            audience: TokenKind::AgentControl.audience(environment_id),
            issuer: issuer.to_string(),
            enabled,
            state: Mutex::new(State::Running),
            asked: watch::channel(false).0,
        }
    }

    /// Resolves once the control plane has asked for the final snapshot.
    pub async fn asked(&self) {
        let mut rx = self.asked.subscribe();
        let _ = rx.wait_for(|a| *a).await;
    }

    pub fn state(&self) -> State {
        self.state.lock().expect("finals lock").clone()
    }

    /// The way out ended: what the final snapshot came to.
    pub fn finish(&self, outcome: State) {
        *self.state.lock().expect("finals lock") = outcome;
    }

    fn authorised(&self, headers: &HeaderMap) -> bool {
        let token = headers
            .get(DEV8_AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        token.is_some_and(|t| {
            self.keys
                .verify(t, TokenKind::AgentControl, &self.audience, &self.issuer)
                .is_ok()
        })
    }

    /// `POST /_dev8/final-snapshot`.
    pub fn ask(&self, headers: &HeaderMap) -> Response {
        if !self.authorised(headers) {
            return (
                StatusCode::UNAUTHORIZED,
                "an agent-control token is required",
            )
                .into_response();
        }
        if !self.enabled {
            return (
                StatusCode::NOT_FOUND,
                Json(serde_json::json!({"error": "not in snapshot mode"})),
            )
                .into_response();
        }
        let state = {
            let mut s = self.state.lock().expect("finals lock");
            if *s == State::Running {
                tracing::info!("the control plane asked for the final snapshot");
                *s = State::Saving;
                self.asked.send_replace(true);
            }
            s.clone()
        };
        match state {
            State::Running | State::Saving => (
                StatusCode::ACCEPTED,
                Json(serde_json::json!({"state": "saving"})),
            )
                .into_response(),
            State::Saved { last_at } => (
                StatusCode::OK,
                Json(serde_json::json!({"state": "saved", "lastAt": last_at})),
            )
                .into_response(),
            State::Failed { error } => (
                StatusCode::OK,
                Json(serde_json::json!({"state": "failed", "error": error})),
            )
                .into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::KeySet;
    use crate::auth::tokens::claims;

    const ISS: &str = "https://dev8.example";

    fn bearer(t: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(DEV8_AUTHORIZATION, format!("Bearer {t}").parse().unwrap());
        h
    }

    fn finals(keys: &KeySet, enabled: bool) -> Finals {
        Finals::new(
            KeySet::verifier_from_jwks(&keys.jwks()).unwrap(),
            "e1",
            ISS,
            enabled,
        )
    }

    fn token(keys: &KeySet, kind: TokenKind, env: &str) -> String {
        keys.sign(&claims(
            kind,
            ISS,
            "u1",
            env,
            Utc::now(),
            chrono::Duration::minutes(2),
        ))
    }

    #[tokio::test]
    async fn only_a_control_token_for_this_environment_asks_and_asking_again_reports() {
        let keys = KeySet::generate();
        let f = finals(&keys, true);
        for refused in [
            HeaderMap::new(),
            bearer(&token(&keys, TokenKind::Agent, "e1")),
            bearer(&token(&keys, TokenKind::AgentControl, "e2")),
            bearer(&token(&KeySet::generate(), TokenKind::AgentControl, "e1")),
        ] {
            assert_eq!(f.ask(&refused).status(), StatusCode::UNAUTHORIZED);
        }
        assert_eq!(
            f.state(),
            State::Running,
            "a refused request changes nothing"
        );
        let ok = bearer(&token(&keys, TokenKind::AgentControl, "e1"));
        assert_eq!(f.ask(&ok).status(), StatusCode::ACCEPTED);
        // The way out was told, once.
        tokio::time::timeout(std::time::Duration::from_secs(1), f.asked())
            .await
            .unwrap();
        assert_eq!(f.ask(&ok).status(), StatusCode::ACCEPTED);
        assert_eq!(f.state(), State::Saving);
        let at = Utc::now();
        f.finish(State::Saved { last_at: Some(at) });
        let r = f.ask(&ok);
        assert_eq!(r.status(), StatusCode::OK);
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["state"], "saved");
        assert_eq!(
            body["lastAt"]
                .as_str()
                .unwrap()
                .parse::<DateTime<Utc>>()
                .unwrap(),
            at
        );
    }

    #[tokio::test]
    async fn without_snapshot_mode_there_is_nothing_to_save() {
        let keys = KeySet::generate();
        let f = finals(&keys, false);
        let ok = bearer(&token(&keys, TokenKind::AgentControl, "e1"));
        assert_eq!(f.ask(&ok).status(), StatusCode::NOT_FOUND);
        assert_eq!(f.state(), State::Running);
    }
}
