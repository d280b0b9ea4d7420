//! GitHub OAuth apps: the authorization-code flow with PKCE
//! (`/login/oauth/authorize`, `/login/oauth/access_token`), then the user's
//! numeric id from `GET /user` and verified emails from `GET /user/emails`.
//! The identity is keyed by GitHub's URL and the numeric id (logins change).

use super::provider::{
    AuthRequest, ExternalIdentity, OAuthErrorBody, ProviderError, form_urlencoded, send,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

pub struct GitHub {
    http: reqwest::Client,
    client_id: String,
    client_secret: SecretString,
    url: String,
    api_url: String,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct GitHubUser {
    id: u64,
    login: String,
    name: Option<String>,
}

#[derive(Deserialize)]
struct GitHubEmail {
    email: String,
    verified: bool,
    primary: bool,
}

impl GitHub {
    pub fn new(
        http: reqwest::Client,
        client_id: String,
        client_secret: SecretString,
        url: &str,
        api_url: &str,
    ) -> Self {
        GitHub {
            http,
            client_id,
            client_secret,
            url: url.trim_end_matches('/').to_string(),
            api_url: api_url.trim_end_matches('/').to_string(),
        }
    }

    pub fn authorize_url(&self, req: &AuthRequest<'_>) -> String {
        let mut u = format!("{}/login/oauth/authorize", self.url);
        let q = [
            ("client_id", self.client_id.as_str()),
            ("redirect_uri", req.redirect_uri),
            ("scope", "read:user user:email"),
            ("state", req.state),
            ("code_challenge", req.code_challenge),
            ("code_challenge_method", "S256"),
            ("allow_signup", "true"),
        ];
        u.push('?');
        u.push_str(&form_urlencoded(&q));
        u
    }

    pub async fn exchange(
        &self,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<ExternalIdentity, ProviderError> {
        let req = self
            .http
            .post(format!("{}/login/oauth/access_token", self.url))
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&[
                ("client_id", self.client_id.as_str()),
                ("client_secret", self.client_secret.expose_secret()),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("code_verifier", verifier),
            ]);
        let resp = send(req, "GitHub's token endpoint").await?;
        let status = resp.status();
        let text = resp.text().await.map_err(ProviderError::unavailable)?;
        // GitHub answers errors with 200 and an `error` field.
        let answer: TokenAnswer = serde_json::from_str(&text).map_err(|_| {
            match serde_json::from_str::<OAuthErrorBody>(&text) {
                Ok(e) => ProviderError::Rejected(e.error),
                Err(e) => ProviderError::unavailable(e),
            }
        })?;
        let token = match (answer.access_token, answer.error) {
            (Some(t), None) if status.is_success() => t,
            (_, Some(e)) => return Err(ProviderError::Rejected(e)),
            _ => {
                return Err(ProviderError::Rejected(format!(
                    "token endpoint answered {status}"
                )));
            }
        };
        let user: GitHubUser = self.api(&token, "/user").await?;
        let emails: Vec<GitHubEmail> = self.api(&token, "/user/emails").await?;
        // The primary email if verified, else any verified one, else the
        // primary (unverified) one.
        let pick = emails
            .iter()
            .find(|e| e.primary && e.verified)
            .or_else(|| emails.iter().find(|e| e.verified))
            .or_else(|| emails.iter().find(|e| e.primary));
        Ok(ExternalIdentity {
            issuer: self.url.clone(),
            subject: user.id.to_string(),
            email: pick.map(|e| e.email.trim().to_ascii_lowercase()),
            email_verified: pick.is_some_and(|e| e.verified),
            name: user.name.filter(|n| !n.is_empty()).or(Some(user.login)),
        })
    }

    async fn api<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        path: &str,
    ) -> Result<T, ProviderError> {
        let resp = self
            .http
            .get(format!("{}{path}", self.api_url))
            .bearer_auth(token)
            .header(reqwest::header::ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .send()
            .await
            .map_err(ProviderError::unavailable)?;
        let status = resp.status();
        if status.is_client_error() {
            return Err(ProviderError::Rejected(format!(
                "GitHub {path} answered {status}"
            )));
        }
        if !status.is_success() {
            return Err(ProviderError::unavailable(anyhow::anyhow!(
                "GitHub {path} answered {status}"
            )));
        }
        resp.json().await.map_err(ProviderError::unavailable)
    }
}
