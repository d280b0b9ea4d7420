//! Sign-in with external providers: the configured set (`Providers`), what
//! a finished exchange yields (`ExternalIdentity`), PKCE and random values.
//! The provider clients are small and hand-written over `reqwest` and
//! `jsonwebtoken` (see `github` and `oidc`).

use super::github::GitHub;
use super::oidc::Oidc;
pub use super::provider::{AuthRequest, ExternalIdentity, ProviderError};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use clap::Args;
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use std::time::Duration;

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

/// The sign-in providers' settings (flattened into `config::Settings`).
#[derive(Debug, Clone, Args)]
pub struct OAuthSettings {
    /// GitHub OAuth app client id; "Continue with GitHub" is offered when set
    /// (with the secret). Callback: `<DEV8_PUBLIC_URL>/api/auth/github/callback`.
    #[arg(long, env = "DEV8_GITHUB_CLIENT_ID")]
    pub github_client_id: Option<String>,
    /// GitHub OAuth app client secret.
    #[arg(long, env = "DEV8_GITHUB_CLIENT_SECRET", value_parser = secret, hide_env_values = true)]
    pub github_client_secret: Option<SecretString>,
    /// GitHub's web origin (GitHub Enterprise Server, or a stand-in in tests).
    #[arg(long, env = "DEV8_GITHUB_URL", default_value = "https://github.com")]
    pub github_url: String,
    /// GitHub's REST API base URL.
    #[arg(
        long,
        env = "DEV8_GITHUB_API_URL",
        default_value = "https://api.github.com"
    )]
    pub github_api_url: String,
    /// Issuer of the one OpenID Connect provider (discovery at
    /// `<issuer>/.well-known/openid-configuration`). Callback:
    /// `<DEV8_PUBLIC_URL>/api/auth/oidc/callback`.
    #[arg(long, env = "DEV8_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    /// The OpenID Connect client id.
    #[arg(long, env = "DEV8_OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,
    /// The OpenID Connect client secret (a confidential client).
    #[arg(long, env = "DEV8_OIDC_CLIENT_SECRET", value_parser = secret, hide_env_values = true)]
    pub oidc_client_secret: Option<SecretString>,
    /// The name on the sign-in button: "Continue with <name>".
    #[arg(long, env = "DEV8_OIDC_NAME", default_value = "single sign-on")]
    pub oidc_name: String,
}

fn secret(s: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(s.to_string()))
}

impl Providers {
    pub fn none() -> Self {
        Providers {
            github: None,
            oidc: None,
        }
    }

    /// Build the providers whose settings are complete.
    pub fn from_settings(s: &OAuthSettings) -> anyhow::Result<Self> {
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
