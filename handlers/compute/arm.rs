//! A small typed client for Azure Resource Manager: bearer tokens from an
//! `azure_core` `TokenCredential` (scope `https://management.azure.com/.default`),
//! JSON over the tree's `reqwest`, bounded retries on throttling and server
//! errors that honour `Retry-After`, and long-running operations followed by
//! polling the resource's `properties.provisioningState`. No maintained crate
//! covers ACI on the current `azure_core`, so the ACI backend speaks ARM REST
//! through this.

use azure_core::credentials::TokenCredential;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// The Entra ID scope for ARM.
pub const ARM_SCOPE: &str = "https://management.azure.com/.default";

/// How hard to try before giving up on one call.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all (the first included).
    pub max_attempts: u32,
    /// First back-off when the answer names no `Retry-After`; doubled each time.
    pub base_delay: Duration,
    /// No wait is longer than this, whatever `Retry-After` says.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ArmError {
    /// ARM answered with an error status; `code`/`message` from its error body.
    #[error("ARM answered {status} ({code}): {message}")]
    Status {
        status: u16,
        code: String,
        message: String,
    },
    #[error("ARM request could not be sent")]
    Transport(#[source] reqwest::Error),
    #[error("no token for ARM")]
    Token(#[source] azure_core::Error),
    #[error("ARM answered with malformed JSON")]
    Malformed(#[source] serde_json::Error),
    #[error("{0}")]
    Other(String),
}

impl ArmError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ArmError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Worth trying again later (throttling, server trouble, the network, a conflict
    /// with an operation in progress)?
    pub fn is_transient(&self) -> bool {
        match self {
            ArmError::Status { status, .. } => retryable(*status) || *status == 409,
            ArmError::Transport(_) | ArmError::Token(_) | ArmError::Malformed(_) => true,
            ArmError::Other(_) => false,
        }
    }
}

fn retryable(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// An answer ARM gave with a 2xx status.
#[derive(Debug, Clone)]
pub struct ArmResponse {
    pub status: u16,
    /// The JSON body (`Null` when empty).
    pub body: Value,
}

/// How a long-running operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provisioning {
    Succeeded,
    /// `Failed` or `Canceled`, with the state ARM reported.
    Failed(String),
    /// The resource is gone (a delete finished).
    Gone,
    /// Still in progress when the budget ran out; look again later.
    InProgress(String),
}

pub struct ArmClient {
    http: reqwest::Client,
    base: String,
    credential: Arc<dyn TokenCredential>,
    retry: RetryPolicy,
}

impl std::fmt::Debug for ArmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArmClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl ArmClient {
    /// A client for `base` (e.g. `https://management.azure.com`).
    pub fn new(
        base: &str,
        credential: Arc<dyn TokenCredential>,
        retry: RetryPolicy,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(ArmClient {
            http,
            base: base.trim_end_matches('/').to_string(),
            credential,
            retry,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn token(&self) -> Result<String, ArmError> {
        let t = self
            .credential
            .get_token(&[ARM_SCOPE], None)
            .await
            .map_err(ArmError::Token)?;
        Ok(t.token.secret().to_string())
    }

    fn url(&self, path: &str, api_version: &str) -> String {
        let sep = if path.contains('?') { '&' } else { '?' };
        format!("{}{path}{sep}api-version={api_version}", self.base)
    }

    /// One call with bounded retries. 2xx answers are returned; every other
    /// status is an `ArmError::Status`.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        api_version: &str,
        body: Option<&Value>,
    ) -> Result<ArmResponse, ArmError> {
        self.send_url(method, &self.url(path, api_version), body)
            .await
    }

    async fn send_url(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<ArmResponse, ArmError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let token = self.token().await?;
            let mut req = self
                .http
                .request(method.clone(), url)
                .bearer_auth(token)
                .header("accept", "application/json");
            if let Some(b) = body {
                req = req.json(b);
            } else if method == Method::POST {
                req = req.header("content-length", "0");
            }
            let last = attempt >= self.retry.max_attempts;
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) if !last && (e.is_connect() || e.is_timeout()) => {
                    let wait = self.backoff(attempt, None);
                    tracing::debug!(%method, ?wait, "ARM unreachable; retrying");
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Err(e) => return Err(ArmError::Transport(e.without_url())),
            };
            let status = resp.status();
            if retryable(status.as_u16()) && !last {
                let wait = self.backoff(attempt, retry_after(resp.headers()));
                tracing::debug!(%method, status = status.as_u16(), ?wait, "ARM asked to retry");
                tokio::time::sleep(wait).await;
                continue;
            }
            let text = resp
                .text()
                .await
                .map_err(|e| ArmError::Transport(e.without_url()))?;
            if status.is_success() {
                let body = if text.trim().is_empty() {
                    Value::Null
                } else {
                    serde_json::from_str(&text).map_err(ArmError::Malformed)?
                };
                return Ok(ArmResponse {
                    status: status.as_u16(),
                    body,
                });
            }
            return Err(status_error(status, &text));
        }
    }

    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .retry
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
        retry_after.unwrap_or(exp).min(self.retry.max_delay)
    }

    /// GET a resource; `None` when it does not exist.
    pub async fn get(&self, path: &str, api_version: &str) -> Result<Option<Value>, ArmError> {
        match self.send(Method::GET, path, api_version, None).await {
            Ok(r) => Ok(Some(r.body)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// PUT (create or update) a resource; returns the resource as ARM answered.
    pub async fn put(
        &self,
        path: &str,
        api_version: &str,
        body: &Value,
    ) -> Result<Value, ArmError> {
        Ok(self
            .send(Method::PUT, path, api_version, Some(body))
            .await?
            .body)
    }

    /// POST an action (`start`, `stop`, `listKeys`).
    pub async fn post(&self, path: &str, api_version: &str) -> Result<ArmResponse, ArmError> {
        self.send(Method::POST, path, api_version, None).await
    }

    /// DELETE a resource. `false` when it was already gone.
    pub async fn delete(&self, path: &str, api_version: &str) -> Result<bool, ArmError> {
        match self.send(Method::DELETE, path, api_version, None).await {
            Ok(_) => Ok(true),
            Err(e) if e.status() == Some(404) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every item of a list, following `nextLink` only while it stays on this
    /// client's base URL (a token is never sent anywhere else).
    pub async fn list(&self, path: &str, api_version: &str) -> Result<Vec<Value>, ArmError> {
        let mut items = Vec::new();
        let mut url = self.url(path, api_version);
        for _ in 0..100 {
            let page = self.send_url(Method::GET, &url, None).await?.body;
            if let Some(v) = page.get("value").and_then(Value::as_array) {
                items.extend(v.iter().cloned());
            }
            match page.get("nextLink").and_then(Value::as_str) {
                Some(next) if next.starts_with(&format!("{}/", self.base)) => {
                    url = next.to_string()
                }
                Some(_) => {
                    return Err(ArmError::Other(
                        "ARM nextLink points outside the ARM endpoint".into(),
                    ));
                }
                None => return Ok(items),
            }
        }
        Ok(items)
    }

    /// Follow a long-running operation by polling the resource until its
    /// `provisioningState` is terminal, it is gone, or `budget` is spent.
    pub async fn wait_for_provisioning(
        &self,
        path: &str,
        api_version: &str,
        interval: Duration,
        budget: Duration,
    ) -> Result<Provisioning, ArmError> {
        let deadline = tokio::time::Instant::now() + budget;
        loop {
            let state = match self.get(path, api_version).await? {
                None => return Ok(Provisioning::Gone),
                Some(r) => provisioning_state(&r).to_string(),
            };
            match state.as_str() {
                "Succeeded" => return Ok(Provisioning::Succeeded),
                "Failed" | "Canceled" => return Ok(Provisioning::Failed(state)),
                _ => {}
            }
            if tokio::time::Instant::now() + interval > deadline {
                return Ok(Provisioning::InProgress(state));
            }
            tokio::time::sleep(interval).await;
        }
    }
}

/// `properties.provisioningState` of a resource (empty when missing).
pub fn provisioning_state(resource: &Value) -> &str {
    resource
        .pointer("/properties/provisioningState")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get("retry-after")?.to_str().ok()?;
    if let Ok(secs) = v.trim().parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v.trim()).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

fn status_error(status: StatusCode, text: &str) -> ArmError {
    let body: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let err = body.get("error").unwrap_or(&body);
    let field = |k: &str| err.get(k).and_then(Value::as_str).map(str::to_string);
    ArmError::Status {
        status: status.as_u16(),
        code: field("code").unwrap_or_else(|| status.canonical_reason().unwrap_or("").into()),
        message: field("message").unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("retry-after", "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn error_bodies_give_code_and_message() {
        let e = status_error(
            StatusCode::CONFLICT,
            r#"{"error":{"code":"ContainerGroupTransitioning","message":"busy"}}"#,
        );
        assert!(matches!(&e, ArmError::Status { status: 409, code, message }
            if code == "ContainerGroupTransitioning" && message == "busy"));
        assert!(e.is_transient());
        let e = status_error(StatusCode::BAD_REQUEST, "not json");
        assert!(!e.is_transient());
    }
}
