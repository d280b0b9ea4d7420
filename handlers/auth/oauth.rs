//! Sign-in with external providers: the configured set (`Providers`), what
//! a finished exchange yields (`ExternalIdentity`), PKCE and random values.
//! The provider clients are small and hand-written over `reqwest` and
//! `jsonwebtoken` (see `github` and `oidc`).

use super::github::GitHub;
use super::oidc::Oidc;
use crate::config::Settings;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// What a provider told us about the person, after every check passed.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalIdentity {
    /// Who vouches for the subject: the OIDC issuer, or GitHub's web URL.
    pub issuer: String,
    pub subject: String,
    /// Lower-case.
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
}

/// Why a sign-in with a provider did not finish. `code()` is what the
/// dashboard gets (`/#/signin?error=<code>`); details go to the log only.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The person declined (`error=access_denied`).
    #[error("the person declined at the provider")]
    Denied,
    /// The provider refused the request (a bad, expired or replayed code, a
    /// PKCE mismatch, an error redirect).
    #[error("the provider refused: {0}")]
    Rejected(String),
    /// The ID token failed a check.
    #[error("the ID token is not valid: {0}")]
    InvalidToken(String),
    /// The provider could not be reached or answered nonsense.
    #[error("the provider is unavailable")]
    Unavailable(#[source] anyhow::Error),
}

impl ProviderError {
    pub fn code(&self) -> &'static str {
        match self {
            ProviderError::Denied => "access_denied",
            ProviderError::Rejected(_) => "provider_rejected",
            ProviderError::InvalidToken(_) => "invalid_token",
            ProviderError::Unavailable(_) => "provider_unavailable",
        }
    }

    pub fn unavailable(e: impl Into<anyhow::Error>) -> Self {
        ProviderError::Unavailable(e.into())
    }
}

/// What the authorization request carries besides the client's own data.
#[derive(Debug, Clone)]
pub struct AuthRequest<'a> {
    pub redirect_uri: &'a str,
    pub state: &'a str,
    pub nonce: &'a str,
    pub code_challenge: &'a str,
}

/// The providers configured in settings; none configured = none offered.
pub struct Providers {
    pub github: Option<GitHub>,
    pub oidc: Option<Oidc>,
}

/// One configured provider.
pub enum Provider<'a> {
    GitHub(&'a GitHub),
    Oidc(&'a Oidc),
}

impl Provider<'_> {
    pub fn id(&self) -> &'static str {
        match self {
            Provider::GitHub(_) => "github",
            Provider::Oidc(_) => "oidc",
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Provider::GitHub(_) => "GitHub",
            Provider::Oidc(o) => o.name(),
        }
    }

    /// Where to send the browser.
    pub async fn authorize_url(&self, req: &AuthRequest<'_>) -> Result<String, ProviderError> {
        match self {
            Provider::GitHub(g) => Ok(g.authorize_url(req)),
            Provider::Oidc(o) => o.authorize_url(req).await,
        }
    }

    /// Exchange the code (with the PKCE verifier) and check what comes back.
    pub async fn exchange(
        &self,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
        nonce: &str,
    ) -> Result<ExternalIdentity, ProviderError> {
        match self {
            Provider::GitHub(g) => g.exchange(code, verifier, redirect_uri).await,
            Provider::Oidc(o) => o.exchange(code, verifier, redirect_uri, nonce).await,
        }
    }
}

impl Providers {
    pub fn none() -> Self {
        Providers {
            github: None,
            oidc: None,
        }
    }

    /// Build the providers whose settings are complete.
    pub fn from_settings(s: &Settings) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("dev8/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let github = match (&s.github_client_id, &s.github_client_secret) {
            (Some(id), Some(secret)) if !id.is_empty() => Some(GitHub::new(
                http.clone(),
                id.clone(),
                secret.clone(),
                &s.github_url,
                &s.github_api_url,
            )),
            (Some(_), None) => {
                anyhow::bail!("DEV8_GITHUB_CLIENT_SECRET is required with DEV8_GITHUB_CLIENT_ID")
            }
            _ => None,
        };
        let oidc = match (&s.oidc_issuer, &s.oidc_client_id) {
            (Some(issuer), Some(id)) if !issuer.is_empty() => Some(Oidc::new(
                http,
                issuer.clone(),
                id.clone(),
                s.oidc_client_secret.clone(),
                s.oidc_name.clone(),
            )),
            (Some(_), None) => {
                anyhow::bail!("DEV8_OIDC_CLIENT_ID is required with DEV8_OIDC_ISSUER")
            }
            _ => None,
        };
        Ok(Providers { github, oidc })
    }

    pub fn get(&self, id: &str) -> Option<Provider<'_>> {
        match id {
            "github" => self.github.as_ref().map(Provider::GitHub),
            "oidc" => self.oidc.as_ref().map(Provider::Oidc),
            _ => None,
        }
    }

    /// Every configured provider, in the order the dashboard shows them.
    pub fn all(&self) -> Vec<Provider<'_>> {
        ["github", "oidc"]
            .into_iter()
            .filter_map(|id| self.get(id))
            .collect()
    }
}

/// `n` random bytes, base64url without padding.
pub fn random_token(n: usize) -> String {
    let mut buf = vec![0u8; n];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut buf);
    B64.encode(buf)
}

/// The PKCE S256 challenge of a verifier.
pub fn pkce_challenge(verifier: &str) -> String {
    B64.encode(Sha256::digest(verifier.as_bytes()))
}

/// Constant-time string comparison (state values).
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The `error` of an OAuth error answer (token endpoint or redirect).
#[derive(Debug, serde::Deserialize)]
pub(crate) struct OAuthErrorBody {
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_matches_rfc7636_example() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn same_compares_whole_strings() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
    }
}
