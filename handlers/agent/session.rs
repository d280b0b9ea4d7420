//! IDE sessions: a one-time ticket from the control plane (EdDSA,
//! `typ=ide-ticket`, `aud=env:<id>`, at most 60 s, single use) is redeemed
//! for the agent's own HttpOnly cookie. Sessions live in memory: they end
//! when the agent (the environment) stops, and after at most 12 hours.

use crate::auth::keys::VerifyingKeys;
use crate::auth::tokens::{LEEWAY_SECONDS, TokenKind};
use base64::Engine;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

pub struct Sessions {
    keys: VerifyingKeys,
    audience: String,
    issuer: String,
    /// Redeemed ticket ids with their expiry (unix seconds); pruned as they expire.
    used: Mutex<HashMap<String, i64>>,
    /// Session id -> when it ends.
    live: Mutex<HashMap<String, Instant>>,
}

impl Sessions {
    pub fn new(keys: VerifyingKeys, environment_id: &str, issuer: &str) -> Self {
        Sessions {
            keys,
            audience: TokenKind::IdeTicket.audience(environment_id),
            issuer: issuer.to_string(),
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
        let mut live = self.live.lock().expect("session lock");
        let now = Instant::now();
        live.retain(|_, until| *until > now);
        live.insert(id.clone(), now + SESSION_TTL);
        Ok(id)
    }

    /// Is this session id live?
    pub fn check(&self, id: &str) -> bool {
        let live = self.live.lock().expect("session lock");
        live.get(id).is_some_and(|until| *until > Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::KeySet;
    use crate::auth::tokens::claims;
    use chrono::{Duration as D, Utc};

    const ISS: &str = "http://127.0.0.1:9";

    fn setup() -> (KeySet, Sessions) {
        let keys = KeySet::generate();
        let verifier = KeySet::verifier_from_jwks(&keys.jwks()).unwrap();
        (keys, Sessions::new(verifier, "e1", ISS))
    }

    #[test]
    fn a_ticket_opens_one_session_once() {
        let (keys, s) = setup();
        let t = keys.sign(&claims(
            TokenKind::IdeTicket,
            ISS,
            "u1",
            "e1",
            Utc::now(),
            D::seconds(60),
        ));
        let id = s.redeem(&t).unwrap();
        assert!(s.check(&id));
        assert!(!s.check("forged"));
        assert_eq!(s.redeem(&t), Err(TicketError::Used));
    }

    #[test]
    fn foreign_expired_long_and_wrong_kind_tickets_are_refused() {
        let (keys, s) = setup();
        let now = Utc::now();
        let other_env = keys.sign(&claims(
            TokenKind::IdeTicket,
            ISS,
            "u1",
            "e2",
            now,
            D::seconds(60),
        ));
        let expired = keys.sign(&claims(
            TokenKind::IdeTicket,
            ISS,
            "u1",
            "e1",
            now - D::seconds(120),
            D::seconds(60),
        ));
        let too_long = keys.sign(&claims(
            TokenKind::IdeTicket,
            ISS,
            "u1",
            "e1",
            now,
            D::seconds(3600),
        ));
        let agent = keys.sign(&claims(
            TokenKind::Agent,
            ISS,
            "u1",
            "e1",
            now,
            D::seconds(60),
        ));
        let foreign = KeySet::generate().sign(&claims(
            TokenKind::IdeTicket,
            ISS,
            "u1",
            "e1",
            now,
            D::seconds(60),
        ));
        for t in [
            other_env,
            expired,
            too_long,
            agent,
            foreign,
            "garbage".to_string(),
        ] {
            assert_eq!(s.redeem(&t), Err(TicketError::Invalid));
        }
    }
}
