//! One OpenID Connect provider by issuer: discovery, the code flow with
//! PKCE and nonce, and ID-token checks (signature by a key from the JWKS —
//! RS256, ES256 or EdDSA — then `iss`, `aud`/`azp`, `exp`, `iat`, `nonce`;
//! leeway 5 s). Discovery and the JWKS are cached; an unknown `kid` fetches
//! the JWKS again once (key rotation). Claims the ID token leaves out are
//! read from the UserInfo endpoint with the access token (OpenID Connect
//! Core §5.4: with the code flow a provider may return `email` and
//! `profile` claims only there); its `sub` must be the ID token's (§5.3.4).

use super::provider::{
    AuthRequest, ExternalIdentity, OAuthErrorBody, ProviderError, form_urlencoded, send,
};
use base64::Engine;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Mutex;

/// Clock skew tolerated on `exp` and `iat`.
pub const LEEWAY_SECONDS: u64 = 5;
const ALGORITHMS: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

pub struct Oidc {
    http: reqwest::Client,
    issuer: String,
    client_id: String,
    client_secret: Option<SecretString>,
    name: String,
    discovery: Mutex<Option<Discovery>>,
    jwks: Mutex<Vec<Jwk>>,
}

#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    userinfo_endpoint: Option<String>,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    id_token: Option<String>,
    access_token: Option<String>,
}

/// The claims read from UserInfo when the ID token lacks them. `email` and
/// its verification come as a pair, from one source.
const EMAIL_CLAIMS: [&str; 3] = ["email", "email_verified", "xms_edov"];
const PROFILE_CLAIMS: [&str; 1] = ["name"];

impl Oidc {
    pub fn new(
        http: reqwest::Client,
        issuer: String,
        client_id: String,
        client_secret: Option<SecretString>,
        name: String,
    ) -> Self {
        Oidc {
            http,
            issuer,
            client_id,
            client_secret,
            name,
            discovery: Mutex::new(None),
            jwks: Mutex::new(Vec::new()),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    async fn discovery(&self) -> Result<Discovery, ProviderError> {
        if let Some(d) = self.discovery.lock().ok().and_then(|d| d.clone()) {
            return Ok(d);
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let d: Discovery = self.get_json(&url).await?;
        if d.issuer != self.issuer {
            return Err(ProviderError::unavailable(anyhow::anyhow!(
                "discovery names issuer {} instead of {}",
                d.issuer,
                self.issuer
            )));
        }
        if let Ok(mut slot) = self.discovery.lock() {
            *slot = Some(d.clone());
        }
        Ok(d)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
    ) -> Result<T, ProviderError> {
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(ProviderError::unavailable)?;
        if !resp.status().is_success() {
            return Err(ProviderError::unavailable(anyhow::anyhow!(
                "{url} answered {}",
                resp.status()
            )));
        }
        resp.json().await.map_err(ProviderError::unavailable)
    }

    pub async fn authorize_url(&self, req: &AuthRequest<'_>) -> Result<String, ProviderError> {
        let d = self.discovery().await?;
        let q = form_urlencoded(&[
            ("response_type", "code"),
            ("client_id", &self.client_id),
            ("redirect_uri", req.redirect_uri),
            ("scope", "openid email profile"),
            ("state", req.state),
            ("nonce", req.nonce),
            ("code_challenge", req.code_challenge),
            ("code_challenge_method", "S256"),
            ("response_mode", "query"),
        ]);
        let sep = if d.authorization_endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        Ok(format!("{}{sep}{q}", d.authorization_endpoint))
    }

    pub async fn exchange(
        &self,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
        nonce: &str,
    ) -> Result<ExternalIdentity, ProviderError> {
        let d = self.discovery().await?;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ];
        let mut req = self
            .http
            .post(&d.token_endpoint)
            .header(reqwest::header::ACCEPT, "application/json");
        let basic = d
            .token_endpoint_auth_methods_supported
            .as_ref()
            .is_none_or(|m| m.iter().any(|m| m == "client_secret_basic"));
        match &self.client_secret {
            Some(secret) if basic => {
                // RFC 6749 2.3.1: both parts form-encoded before base64.
                let pair = format!(
                    "{}:{}",
                    form_urlencoded(&[("", &self.client_id)]).trim_start_matches('='),
                    form_urlencoded(&[("", secret.expose_secret())]).trim_start_matches('=')
                );
                let b64 = base64::engine::general_purpose::STANDARD.encode(pair);
                req = req.header(reqwest::header::AUTHORIZATION, format!("Basic {b64}"));
            }
            Some(secret) => {
                form.push(("client_id", &self.client_id));
                form.push(("client_secret", secret.expose_secret()));
            }
            None => form.push(("client_id", &self.client_id)),
        }
        let resp = send(req.form(&form), "the token endpoint").await?;
        let status = resp.status();
        if !status.is_success() {
            let e = resp
                .json::<OAuthErrorBody>()
                .await
                .map(|b| b.error)
                .unwrap_or_else(|_| status.to_string());
            return Err(ProviderError::Rejected(e));
        }
        let answer: TokenAnswer = resp.json().await.map_err(ProviderError::unavailable)?;
        let id_token = answer
            .id_token
            .ok_or_else(|| ProviderError::InvalidToken("no id_token in the answer".into()))?;
        let mut claims = self.verify_id_token(&d, &id_token, nonce).await?;
        let lacks_email = !claims.contains_key("email");
        let lacks_profile = PROFILE_CLAIMS.iter().any(|c| !claims.contains_key(*c));
        if (lacks_email || lacks_profile)
            && let (Some(endpoint), Some(access_token)) =
                (&d.userinfo_endpoint, &answer.access_token)
        {
            let info = self.userinfo(endpoint, access_token).await?;
            if info.get("sub").and_then(Value::as_str) != claims.get("sub").and_then(Value::as_str)
            {
                return Err(ProviderError::InvalidToken(
                    "the UserInfo sub is not the ID token's".into(),
                ));
            }
            let wanted = PROFILE_CLAIMS
                .iter()
                .chain(EMAIL_CLAIMS.iter().filter(|_| lacks_email));
            for name in wanted {
                if !claims.contains_key(*name)
                    && let Some(v) = info.get(*name)
                {
                    claims.insert(name.to_string(), v.clone());
                }
            }
        }
        identity_from_claims(&claims)
    }

    /// The UserInfo response (§5.3.2), as JSON; a signed or encrypted one
    /// (`application/jwt`) is not accepted.
    async fn userinfo(
        &self,
        endpoint: &str,
        access_token: &str,
    ) -> Result<serde_json::Map<String, Value>, ProviderError> {
        let req = self
            .http
            .get(endpoint)
            .bearer_auth(access_token)
            .header(reqwest::header::ACCEPT, "application/json");
        let resp = send(req, "the UserInfo endpoint").await?;
        let status = resp.status();
        if !status.is_success() {
            return Err(ProviderError::Rejected(format!(
                "UserInfo answered {status}"
            )));
        }
        let json = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("application/json"));
        if !json {
            return Err(ProviderError::InvalidToken(
                "the UserInfo answer is not JSON".into(),
            ));
        }
        resp.json().await.map_err(ProviderError::unavailable)
    }

    async fn refresh_jwks(&self, d: &Discovery) -> Result<(), ProviderError> {
        let set: Value = self.get_json(&d.jwks_uri).await?;
        let keys: Vec<Jwk> = set["keys"]
            .as_array()
            .map(|ks| {
                ks.iter()
                    .filter(|k| k["use"].as_str().is_none_or(|u| u == "sig"))
                    .filter_map(|k| serde_json::from_value(k.clone()).ok())
                    .collect()
            })
            .unwrap_or_default();
        if let Ok(mut slot) = self.jwks.lock() {
            *slot = keys;
        }
        Ok(())
    }

    fn find_key(&self, kid: Option<&str>, alg: Algorithm) -> Option<Jwk> {
        let keys = self.jwks.lock().ok()?;
        let fits = |k: &&Jwk| {
            k.common
                .key_algorithm
                .is_none_or(|a| format!("{a:?}") == format!("{alg:?}"))
        };
        match kid {
            Some(kid) => keys
                .iter()
                .filter(fits)
                .find(|k| k.common.key_id.as_deref() == Some(kid))
                .cloned(),
            None => {
                let mut matching = keys.iter().filter(fits);
                match (matching.next(), matching.next()) {
                    (Some(k), None) => Some(k.clone()),
                    _ => None,
                }
            }
        }
    }

    /// Check an ID token and return its claims.
    async fn verify_id_token(
        &self,
        d: &Discovery,
        token: &str,
        nonce: &str,
    ) -> Result<serde_json::Map<String, Value>, ProviderError> {
        let bad = |m: &str| ProviderError::InvalidToken(m.to_string());
        let header = jsonwebtoken::decode_header(token).map_err(|_| bad("malformed"))?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(bad("unsupported signing algorithm"));
        }
        let kid = header.kid.as_deref();
        let jwk = match self.find_key(kid, header.alg) {
            Some(k) => k,
            None => {
                self.refresh_jwks(d).await?;
                self.find_key(kid, header.alg)
                    .ok_or_else(|| bad("no key in the JWKS matches"))?
            }
        };
        let key = DecodingKey::from_jwk(&jwk).map_err(|_| bad("unusable key in the JWKS"))?;
        let mut v = Validation::new(header.alg);
        v.leeway = LEEWAY_SECONDS;
        v.validate_exp = true;
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        v.set_audience(&[&self.client_id]);
        v.set_issuer(&[&self.issuer]);
        let data = jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &key, &v)
            .map_err(|e| ProviderError::InvalidToken(e.to_string()))?;
        let claims = data.claims;
        let now = chrono::Utc::now().timestamp();
        let iat = claims
            .get("iat")
            .and_then(Value::as_i64)
            .ok_or_else(|| bad("no iat"))?;
        if iat > now + LEEWAY_SECONDS as i64 {
            return Err(bad("issued in the future"));
        }
        if claims.get("nonce").and_then(Value::as_str) != Some(nonce) {
            return Err(bad("the nonce does not match"));
        }
        if let Some(Value::Array(auds)) = claims.get("aud")
            && auds.len() > 1
            && claims.get("azp").and_then(Value::as_str) != Some(self.client_id.as_str())
        {
            return Err(bad("azp does not name this client"));
        }
        Ok(claims)
    }
}

/// Is this issuer Microsoft Entra ID (whose `email` is verified only with
/// the `xms_edov` claim)?
fn is_entra(issuer: &str) -> bool {
    let host = issuer
        .trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap_or_default();
    host == "login.microsoftonline.com"
        || host.ends_with(".ciamlogin.com")
        || host == "sts.windows.net"
}

fn truthy(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true" || s == "1",
        Some(Value::Number(n)) => n.as_i64() == Some(1),
        _ => false,
    }
}

fn identity_from_claims(
    c: &serde_json::Map<String, Value>,
) -> Result<ExternalIdentity, ProviderError> {
    let s = |k: &str| c.get(k).and_then(Value::as_str).map(str::to_string);
    let issuer = s("iss").ok_or_else(|| ProviderError::InvalidToken("no iss".into()))?;
    let subject = s("sub")
        .filter(|x| !x.is_empty())
        .ok_or_else(|| ProviderError::InvalidToken("no sub".into()))?;
    let verified = if is_entra(&issuer) {
        truthy(c.get("xms_edov"))
    } else {
        truthy(c.get("email_verified"))
    };
    let email = s("email")
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| e.contains('@'));
    Ok(ExternalIdentity {
        issuer,
        subject,
        email_verified: verified && email.is_some(),
        email,
        name: s("name"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn entra_needs_xms_edov_to_vouch_for_the_email() {
        let iss = "https://login.microsoftonline.com/tid/v2.0";
        let plain = map(json!({"iss": iss, "sub": "s", "email": "A@x.io", "email_verified": true}));
        let i = identity_from_claims(&plain).unwrap();
        assert!(!i.email_verified);
        assert_eq!(i.email.as_deref(), Some("a@x.io"));
        let edov = map(json!({"iss": iss, "sub": "s", "email": "a@x.io", "xms_edov": true}));
        assert!(identity_from_claims(&edov).unwrap().email_verified);
    }

    #[test]
    fn other_issuers_use_email_verified() {
        let c = map(
            json!({"iss": "https://accounts.google.com", "sub": "1", "email": "a@x.io", "email_verified": true}),
        );
        assert!(identity_from_claims(&c).unwrap().email_verified);
        let c = map(json!({"iss": "https://accounts.google.com", "sub": "1", "email": "a@x.io"}));
        assert!(!identity_from_claims(&c).unwrap().email_verified);
    }
}
