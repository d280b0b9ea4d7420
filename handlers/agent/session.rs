//! IDE sessions: a one-time ticket from the control plane (EdDSA,
//! `typ=ide-ticket`, `aud=env:<id>`, at most 60 s, single use, naming the
//! sign-in session `sid` it was minted for) is redeemed for the agent's own
//! HttpOnly cookie. Sessions live in memory: they end when the agent (the
//! environment) stops, after at most 12 hours, when the control plane says
//! their sign-in session is gone (`check_loop`), and when no check has
//! confirmed them for two check intervals (the control plane unreachable:
//! fail closed). An ended session's WebSockets close.

use crate::auth::keys::VerifyingKeys;
use crate::auth::tokens::{LEEWAY_SECONDS, TokenKind};
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long an IDE session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// The longest ticket lifetime accepted.
pub const MAX_TICKET_SECONDS: i64 = 60;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TicketError {
    #[error("the ticket is not valid for this environment")]
    Invalid,
    #[error("the ticket was already used")]
    Used,
}

/// One IDE session.
struct Live {
    /// The control plane's sign-in session the ticket named.
    sid: String,
    /// When it ends at the latest.
    until: Instant,
    /// When the control plane last vouched for `sid` (the ticket, or a check).
    confirmed: Instant,
    /// Dropped when the session ends, which ends every WebSocket it opened.
    open: watch::Sender<()>,
}

/// Resolves when the session it came from has ended.
pub struct Ended(watch::Receiver<()>);

impl Ended {
    pub async fn wait(mut self) {
        while self.0.changed().await.is_ok() {}
    }
}

pub struct Sessions {
    keys: VerifyingKeys,
    audience: String,
    issuer: String,
    /// A session no check confirmed for this long is refused.
    stale_after: Duration,
    /// Redeemed ticket ids with their expiry (unix seconds); pruned as they expire.
    used: Mutex<HashMap<String, i64>>,
    /// Session id -> the session.
    live: Mutex<HashMap<String, Live>>,
}

impl Sessions {
    /// Sessions for one environment, checked every `check_interval`.
    pub fn new(
        keys: VerifyingKeys,
        environment_id: &str,
        issuer: &str,
        check_interval: Duration,
    ) -> Self {
        Sessions {
            keys,
            audience: TokenKind::IdeTicket.audience(environment_id),
            issuer: issuer.to_string(),
            stale_after: check_interval * 2,
            used: Mutex::new(HashMap::new()),
            live: Mutex::new(HashMap::new()),
        }
    }

    /// Redeem a ticket: returns a new session id.
    pub fn redeem(&self, ticket: &str) -> Result<String, TicketError> {
        let claims = self
            .keys
            .verify(ticket, TokenKind::IdeTicket, &self.audience, &self.issuer)
            .map_err(|_| TicketError::Invalid)?;
        if claims.exp - claims.iat > MAX_TICKET_SECONDS || claims.jti.is_empty() {
            return Err(TicketError::Invalid);
        }
        let sid = claims
            .sid
            .filter(|s| !s.is_empty())
            .ok_or(TicketError::Invalid)?;
        let now = chrono::Utc::now().timestamp();
        {
            let mut used = self.used.lock().expect("ticket set lock");
            used.retain(|_, exp| *exp + LEEWAY_SECONDS as i64 >= now);
            if used.insert(claims.jti, claims.exp).is_some() {
                return Err(TicketError::Used);
            }
        }
        let mut bytes = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let now = Instant::now();
        let mut live = self.live.lock().expect("session lock");
        self.prune(&mut live, now);
        live.insert(
            id.clone(),
            Live {
                sid,
                until: now + SESSION_TTL,
                confirmed: now,
                open: watch::channel(()).0,
            },
        );
        Ok(id)
    }

    /// Is this session id live? Then its end, for a WebSocket to wait on.
    pub fn check(&self, id: &str) -> Option<Ended> {
        let live = self.live.lock().expect("session lock");
        live.get(id)
            .filter(|s| self.serves(s, Instant::now()))
            .map(|s| Ended(s.open.subscribe()))
    }

    fn serves(&self, s: &Live, now: Instant) -> bool {
        now < s.until && now < s.confirmed + self.stale_after
    }

    fn prune(&self, live: &mut HashMap<String, Live>, now: Instant) {
        live.retain(|_, s| self.serves(s, now));
    }

    /// End the sessions past their time or unconfirmed for too long; then
    /// the distinct sign-in sessions the rest were opened from.
    pub fn sign_in_sessions(&self, now: Instant) -> Vec<String> {
        let mut live = self.live.lock().expect("session lock");
        self.prune(&mut live, now);
        let sids: HashSet<&String> = live.values().map(|s| &s.sid).collect();
        sids.into_iter().cloned().collect()
    }

    /// When the next session ends unless a check confirms it.
    pub fn next_end(&self) -> Option<Instant> {
        let live = self.live.lock().expect("session lock");
        live.values()
            .map(|s| s.until.min(s.confirmed + self.stale_after))
            .min()
    }

    /// The control plane answered a check made at `at` about `asked`: the
    /// sessions of `live` sign-in sessions are confirmed, those of the other
    /// asked ones end. Sessions opened meanwhile (not asked about) stay.
    pub fn confirm(&self, asked: &[String], live_sids: &HashSet<String>, at: Instant) {
        let asked: HashSet<&String> = asked.iter().collect();
        let mut live = self.live.lock().expect("session lock");
        live.retain(|_, s| {
            if live_sids.contains(&s.sid) {
                s.confirmed = s.confirmed.max(at);
                true
            } else {
                !asked.contains(&s.sid)
            }
        });
    }

    /// End every session (the control plane no longer knows this agent).
    pub fn end_all(&self) {
        self.live.lock().expect("session lock").clear();
    }
}

/// Where and how the sign-in sessions are checked.
pub struct Checker {
    /// `<control plane>/api/environments/{id}/sessions`.
    pub url: String,
    pub token: SecretString,
    pub every: Duration,
}

/// What a check found out.
enum Verdict {
    /// These of the asked sign-in sessions are live.
    Live(HashSet<String>),
    /// The control plane refuses this agent (401/403/404: its token was
    /// rotated, or the environment is gone): nothing it serves is live.
    AgentRefused(u16),
}

/// Every `checker.every`, ask the control plane which of the sign-in
/// sessions behind the IDE sessions are still live, and end the others. A
/// check that fails confirms nothing, so sessions end two intervals after
/// their last confirmation (fail closed); the loop also wakes at that time.
pub async fn check_loop(
    sessions: std::sync::Arc<Sessions>,
    checker: Checker,
    mut stop: watch::Receiver<bool>,
) {
    let client = reqwest::Client::builder()
        .timeout(checker.every.min(Duration::from_secs(10)))
        .build()
        .expect("HTTP client builds");
    let mut tick = tokio::time::interval(checker.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let next_end = sessions.next_end().map(tokio::time::Instant::from_std);
        let at = tokio::select! {
            at = tick.tick() => at.into_std(),
            _ = async { tokio::time::sleep_until(next_end.expect("guarded")).await }, if next_end.is_some() => {
                sessions.sign_in_sessions(Instant::now());
                continue;
            }
            _ = stop.wait_for(|s| *s) => return,
        };
        let asked = sessions.sign_in_sessions(Instant::now());
        if asked.is_empty() {
            continue;
        }
        match ask(&client, &checker, &asked).await {
            Ok(Verdict::Live(live)) => {
                let ended = asked.iter().filter(|s| !live.contains(*s)).count();
                if ended > 0 {
                    tracing::info!(ended, "sign-in sessions ended; closing their IDE sessions");
                }
                sessions.confirm(&asked, &live, at);
            }
            Ok(Verdict::AgentRefused(status)) => {
                tracing::warn!(
                    status,
                    "the control plane refused the session check; ending every IDE session"
                );
                sessions.end_all();
            }
            Err(e) => tracing::warn!(error = %e, "could not check the IDE sessions"),
        }
    }
}

async fn ask(
    client: &reqwest::Client,
    checker: &Checker,
    asked: &[String],
) -> anyhow::Result<Verdict> {
    let r = client
        .post(&checker.url)
        // Not `Authorization`: a proxy in front of the API (the Static Web
        // App) replaces that header with its own.
        .header(
            crate::auth::tokens::DEV8_AUTHORIZATION,
            format!("Bearer {}", checker.token.expose_secret()),
        )
        .json(&serde_json::json!({ "sessions": asked }))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(e.without_url()))?;
    let status = r.status().as_u16();
    if matches!(status, 401 | 403 | 404) {
        return Ok(Verdict::AgentRefused(status));
    }
    anyhow::ensure!(
        r.status().is_success(),
        "the control plane answered {status}"
    );
    #[derive(serde::Deserialize)]
    struct Answer {
        live: Vec<String>,
    }
    let a: Answer = r
        .json()
        .await
        .map_err(|e| anyhow::anyhow!(e.without_url()))?;
    Ok(Verdict::Live(a.live.into_iter().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::KeySet;
    use crate::auth::tokens::claims;
    use chrono::{Duration as D, Utc};

    const ISS: &str = "http://127.0.0.1:9";
    const EVERY: Duration = Duration::from_secs(30);

    fn setup() -> (KeySet, Sessions) {
        let keys = KeySet::generate();
        let verifier = KeySet::verifier_from_jwks(&keys.jwks()).unwrap();
        (keys, Sessions::new(verifier, "e1", ISS, EVERY))
    }

    fn ticket(
        keys: &KeySet,
        kind: TokenKind,
        env: &str,
        at: chrono::DateTime<Utc>,
        ttl: i64,
        sid: Option<&str>,
    ) -> String {
        let mut c = claims(kind, ISS, "u1", env, at, D::seconds(ttl));
        c.sid = sid.map(str::to_string);
        keys.sign(&c)
    }

    #[test]
    fn a_ticket_opens_one_session_once() {
        let (keys, s) = setup();
        let t = ticket(
            &keys,
            TokenKind::IdeTicket,
            "e1",
            Utc::now(),
            60,
            Some("s1"),
        );
        let id = s.redeem(&t).unwrap();
        assert!(s.check(&id).is_some());
        assert!(s.check("forged").is_none());
        assert_eq!(s.redeem(&t), Err(TicketError::Used));
        assert_eq!(s.sign_in_sessions(Instant::now()), vec!["s1".to_string()]);
    }

    #[test]
    fn foreign_expired_long_wrong_kind_and_sessionless_tickets_are_refused() {
        let (keys, s) = setup();
        let now = Utc::now();
        let refused = [
            ticket(&keys, TokenKind::IdeTicket, "e2", now, 60, Some("s1")),
            ticket(
                &keys,
                TokenKind::IdeTicket,
                "e1",
                now - D::seconds(120),
                60,
                Some("s1"),
            ),
            ticket(&keys, TokenKind::IdeTicket, "e1", now, 3600, Some("s1")),
            ticket(&keys, TokenKind::Agent, "e1", now, 60, Some("s1")),
            ticket(
                &KeySet::generate(),
                TokenKind::IdeTicket,
                "e1",
                now,
                60,
                Some("s1"),
            ),
            ticket(&keys, TokenKind::IdeTicket, "e1", now, 60, None),
            ticket(&keys, TokenKind::IdeTicket, "e1", now, 60, Some("")),
            "garbage".to_string(),
        ];
        for t in refused {
            assert_eq!(s.redeem(&t), Err(TicketError::Invalid));
        }
    }

    #[tokio::test]
    async fn a_check_ends_the_sessions_of_signed_out_sign_ins_and_closes_their_sockets() {
        let (keys, s) = setup();
        let open = |sid| {
            s.redeem(&ticket(
                &keys,
                TokenKind::IdeTicket,
                "e1",
                Utc::now(),
                60,
                Some(sid),
            ))
            .unwrap()
        };
        let (a1, a2, b) = (open("a"), open("a"), open("b"));
        let ended = s.check(&b).unwrap();
        let mut asked = s.sign_in_sessions(Instant::now());
        asked.sort();
        assert_eq!(asked, vec!["a".to_string(), "b".to_string()]);
        // Opened after the question: not asked about, so not ended.
        let c = open("c");
        s.confirm(&asked, &HashSet::from(["a".to_string()]), Instant::now());
        assert!(s.check(&a1).is_some() && s.check(&a2).is_some());
        assert!(s.check(&b).is_none(), "a signed-out session still serves");
        assert!(s.check(&c).is_some());
        tokio::time::timeout(Duration::from_secs(5), ended.wait())
            .await
            .expect("the ended session's WebSockets are told");
        let still = s.check(&a1).unwrap();
        s.end_all();
        assert!(s.check(&a1).is_none() && s.check(&c).is_none());
        tokio::time::timeout(Duration::from_secs(5), still.wait())
            .await
            .expect("every WebSocket is told");
    }

    #[test]
    fn sessions_no_check_confirmed_for_two_intervals_end() {
        let (keys, s) = setup();
        let id = s
            .redeem(&ticket(
                &keys,
                TokenKind::IdeTicket,
                "e1",
                Utc::now(),
                60,
                Some("a"),
            ))
            .unwrap();
        let start = Instant::now();
        let end = s.next_end().unwrap();
        assert!(
            end >= start + EVERY && end <= start + EVERY * 2,
            "{:?}",
            end - start
        );
        // A confirmation one interval later moves the end on.
        s.confirm(
            &["a".to_string()],
            &HashSet::from(["a".to_string()]),
            start + EVERY,
        );
        assert!(s.next_end().unwrap() >= start + EVERY * 3);
        assert_eq!(s.sign_in_sessions(start + EVERY * 2), vec!["a".to_string()]);
        // Failed checks confirm nothing: two intervals on, it is gone.
        assert!(s.sign_in_sessions(start + EVERY * 3).is_empty());
        assert!(s.check(&id).is_none());
        assert!(s.next_end().is_none());
    }
}
