//! What every sign-in provider shares: the request it is sent, the identity
//! it yields, how it fails, and the OAuth wire helpers. A leaf: `github` and
//! `oidc` build on it, `oauth` puts them together.

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

/// Send a request to a provider: unreachable or a 5xx is `Unavailable`
/// (naming `what` answered); any other answer is the caller's to read.
pub async fn send(
    req: reqwest::RequestBuilder,
    what: &str,
) -> Result<reqwest::Response, ProviderError> {
    let resp = req.send().await.map_err(ProviderError::unavailable)?;
    let status = resp.status();
    if status.is_server_error() {
        return Err(ProviderError::unavailable(anyhow::anyhow!(
            "{what} answered {status}"
        )));
    }
    Ok(resp)
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

/// The `error` of an OAuth error answer (token endpoint or redirect).
#[derive(Debug, serde::Deserialize)]
pub struct OAuthErrorBody {
    pub error: String,
}

/// `application/x-www-form-urlencoded` pairs.
pub fn form_urlencoded(pairs: &[(&str, &str)]) -> String {
    fn enc(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    out.push(b as char)
                }
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}
