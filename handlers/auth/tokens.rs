//! JWTs: EdDSA only, a `kid` in every header, and a distinct `typ` and `aud`
//! per kind of token, each checked for exactly its kind. `exp`, `nbf`, `iat`,
//! `iss` and `aud` are required; leeway is 5 s.

use super::keys::{KeySet, VerifyingKeys};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

pub const LEEWAY_SECONDS: u64 = 5;
/// The header Dev8's own clients (the agent, API clients) send their bearer
/// token in, as `X-Dev8-Authorization: Bearer <token>`. A proxy in front of
/// the API may set its own `Authorization` (the Static Web App's linked
/// backend does, on every request), so the API looks at this one first.
pub const DEV8_AUTHORIZATION: &str = "x-dev8-authorization";
pub const SESSION_AUDIENCE: &str = "dev8-api";
/// The audience of device tokens (the sign-in limits' device cookie).
pub const DEVICE_AUDIENCE: &str = "dev8-device";
/// The audience of email confirmation links.
pub const EMAIL_CONFIRM_AUDIENCE: &str = "dev8-email-confirm";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A signed-in user's session (cookie or bearer), `aud=dev8-api`.
    Session,
    /// A one-time, short-lived ticket to open one environment's IDE, `aud=env:<id>`.
    IdeTicket,
    /// The agent of one environment talking to the control plane, `aud=agent:<id>`.
    Agent,
    /// A browser that signed in to this user's account before: exempts it
    /// from the sign-in limits others can fill, `aud=dev8-device`.
    Device,
    /// The link mailed to confirm a password account's address; its `jti`
    /// must be the account's current link id, `aud=dev8-email-confirm`.
    EmailConfirm,
    /// The control plane talking to one environment's agent (a stop asking
    /// for the final snapshot), `aud=agent-control:<id>`; minutes long.
    AgentControl,
}

impl TokenKind {
    pub fn typ(self) -> &'static str {
        match self {
            TokenKind::Session => "session",
            TokenKind::IdeTicket => "ide-ticket",
            TokenKind::Agent => "agent",
            TokenKind::Device => "device",
            TokenKind::EmailConfirm => "email-confirm",
            TokenKind::AgentControl => "agent-control",
        }
    }

    /// The audience for a token of this kind about `subject_id` (ignored for
    /// sessions and devices).
    pub fn audience(self, environment_id: &str) -> String {
        match self {
            TokenKind::Session => SESSION_AUDIENCE.to_string(),
            TokenKind::IdeTicket => format!("env:{environment_id}"),
            TokenKind::Agent => format!("agent:{environment_id}"),
            TokenKind::Device => DEVICE_AUDIENCE.to_string(),
            TokenKind::EmailConfirm => EMAIL_CONFIRM_AUDIENCE.to_string(),
            TokenKind::AgentControl => format!("agent-control:{environment_id}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The user id.
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
    /// Unique token id (single-use tickets, agent token rotation).
    pub jti: String,
    pub typ: String,
    /// The server-side session this token belongs to (sessions only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("token algorithm or key not accepted")]
    KeyRejected,
    #[error("token rejected: {0}")]
    Invalid(String),
    #[error("token is of the wrong kind")]
    WrongKind,
}

impl KeySet {
    /// Sign claims with the current key.
    pub fn sign(&self, claims: &Claims) -> String {
        let key = self.signing();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.encoding).expect("EdDSA signing does not fail")
    }

    /// Verify a token of `kind` whose audience must be exactly `audience`.
    pub fn verify(
        &self,
        token: &str,
        kind: TokenKind,
        audience: &str,
        issuer: &str,
    ) -> Result<Claims, TokenError> {
        verify_with(
            |kid| self.find(kid).map(|k| &k.decoding),
            token,
            kind,
            audience,
            issuer,
        )
    }
}

impl VerifyingKeys {
    pub fn verify(
        &self,
        token: &str,
        kind: TokenKind,
        audience: &str,
        issuer: &str,
    ) -> Result<Claims, TokenError> {
        verify_with(
            |kid| self.keys.iter().find(|(k, _)| k == kid).map(|(_, d)| d),
            token,
            kind,
            audience,
            issuer,
        )
    }
}

fn verify_with<'a>(
    find: impl Fn(&str) -> Option<&'a DecodingKey>,
    token: &str,
    kind: TokenKind,
    audience: &str,
    issuer: &str,
) -> Result<Claims, TokenError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
    if header.alg != Algorithm::EdDSA {
        return Err(TokenError::KeyRejected);
    }
    let key = header
        .kid
        .as_deref()
        .and_then(&find)
        .ok_or(TokenError::KeyRejected)?;
    let mut v = Validation::new(Algorithm::EdDSA);
    v.leeway = LEEWAY_SECONDS;
    v.validate_nbf = true;
    v.validate_exp = true;
    v.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
    v.set_audience(&[audience]);
    v.set_issuer(&[issuer]);
    let data = jsonwebtoken::decode::<Claims>(token, key, &v)
        .map_err(|e| TokenError::Invalid(e.to_string()))?;
    let claims = data.claims;
    if claims.typ != kind.typ() {
        return Err(TokenError::WrongKind);
    }
    let now = chrono::Utc::now().timestamp();
    if claims.iat > now + LEEWAY_SECONDS as i64 {
        return Err(TokenError::Invalid("issued in the future".into()));
    }
    Ok(claims)
}

/// Build claims for a token of `kind` valid for `ttl` from `now`.
pub fn claims(
    kind: TokenKind,
    issuer: &str,
    subject: &str,
    environment_id: &str,
    now: chrono::DateTime<chrono::Utc>,
    ttl: chrono::Duration,
) -> Claims {
    Claims {
        iss: issuer.to_string(),
        sub: subject.to_string(),
        aud: kind.audience(environment_id),
        iat: now.timestamp(),
        nbf: now.timestamp(),
        exp: (now + ttl).timestamp(),
        jti: crate::domain::new_id(),
        typ: kind.typ().to_string(),
        sid: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, Utc};

    const ISS: &str = "http://127.0.0.1:8080";

    #[test]
    fn a_token_verifies_only_as_its_own_kind_and_audience() {
        let keys = KeySet::generate();
        let c = claims(
            TokenKind::IdeTicket,
            ISS,
            "u1",
            "e1",
            Utc::now(),
            Duration::seconds(60),
        );
        let t = keys.sign(&c);
        assert_eq!(
            keys.verify(&t, TokenKind::IdeTicket, "env:e1", ISS)
                .unwrap(),
            c
        );
        assert!(
            keys.verify(&t, TokenKind::IdeTicket, "env:e2", ISS)
                .is_err()
        );
        assert!(keys.verify(&t, TokenKind::Session, "env:e1", ISS).is_err());
        assert!(
            keys.verify(&t, TokenKind::IdeTicket, "env:e1", "http://evil")
                .is_err()
        );
    }

    #[test]
    fn rotation_keeps_old_keys_verifying() {
        let old = KeySet::generate();
        let t = old.sign(&claims(
            TokenKind::Session,
            ISS,
            "u",
            "",
            Utc::now(),
            Duration::hours(1),
        ));
        let mut setting = KeySet::generate().to_setting();
        setting.push(',');
        setting.push_str(&old.to_setting());
        let rotated = KeySet::parse(&setting).unwrap();
        assert_ne!(rotated.signing().kid, old.signing().kid);
        assert!(
            rotated
                .verify(&t, TokenKind::Session, SESSION_AUDIENCE, ISS)
                .is_ok()
        );
    }

    #[test]
    fn jwks_verifier_matches_the_key_set() {
        let keys = KeySet::generate();
        let verifier = KeySet::verifier_from_jwks(&keys.jwks()).unwrap();
        let t = keys.sign(&claims(
            TokenKind::Agent,
            ISS,
            "u",
            "e",
            Utc::now(),
            Duration::hours(1),
        ));
        assert!(
            verifier
                .verify(&t, TokenKind::Agent, "agent:e", ISS)
                .is_ok()
        );
        let other = KeySet::generate();
        let t2 = other.sign(&claims(
            TokenKind::Agent,
            ISS,
            "u",
            "e",
            Utc::now(),
            Duration::hours(1),
        ));
        assert_eq!(
            verifier.verify(&t2, TokenKind::Agent, "agent:e", ISS),
            Err(TokenError::KeyRejected)
        );
    }

    #[test]
    fn parse_rejects_bad_settings() {
        for bad in [
            "",
            "nokid",
            "k:short",
            "k:!!!",
            "a b:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert!(KeySet::parse(bad).is_err(), "{bad}");
        }
    }
}
