//! One error type at the HTTP edge, rendered as `application/problem+json`.
//! 5xx bodies are opaque; their cause chain goes to the log.

use crate::domain::validation::FieldErrors;
use crate::quota::QuotaError;
use crate::store::StoreError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The problem type of a request an unconfirmed account may not make (a
/// tag URI, RFC 4151: a stable name that is not meant to be fetched).
pub const EMAIL_UNCONFIRMED: &str = "tag:dev8.dev,2026:problem:email-unconfirmed";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("validation failed")]
    Validation(FieldErrors),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("not signed in")]
    Unauthorized(&'static str),
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The account has not confirmed its email address yet (problem type
    /// `EMAIL_UNCONFIRMED`).
    #[error("email not confirmed")]
    Unconfirmed,
    #[error("quota exceeded: {0}")]
    Quota(String),
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String, Option<FieldErrors>),
    #[error("payload too large")]
    PayloadTooLarge,
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("too many requests")]
    TooManyRequests { retry_after_secs: u64 },
    #[error("service unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// The handler has not finished starting (`handler functions` retries
    /// its initialisation); the cause is named, with secrets taken out.
    #[error("not ready: {0}")]
    NotReady(String),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        let mut e = FieldErrors::new();
        e.insert(field.into(), message.into());
        ApiError::Validation(e)
    }

    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            ApiError::Validation(errs) => (
                StatusCode::BAD_REQUEST,
                "Validation failed",
                format!(
                    "{} field{} invalid",
                    errs.len(),
                    if errs.len() == 1 { " is" } else { "s are" }
                ),
            ),
            ApiError::BadRequest(d) => (StatusCode::BAD_REQUEST, "Bad request", d.clone()),
            ApiError::Unauthorized(d) => {
                (StatusCode::UNAUTHORIZED, "Not signed in", (*d).to_string())
            }
            ApiError::Forbidden(d) => (StatusCode::FORBIDDEN, "Forbidden", d.clone()),
            ApiError::Unconfirmed => (
                StatusCode::FORBIDDEN,
                "Email not confirmed",
                "confirm your email address with the link mailed to it first (or ask for a new link)"
                    .into(),
            ),
            ApiError::Quota(d) => (StatusCode::FORBIDDEN, "Quota exceeded", d.clone()),
            ApiError::NotFound => (
                StatusCode::NOT_FOUND,
                "Not found",
                "no such resource".into(),
            ),
            ApiError::Conflict(d, _) => (StatusCode::CONFLICT, "Conflict", d.clone()),
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "Payload too large",
                "the body is too large".into(),
            ),
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Unsupported media type",
                "send the body as application/json".into(),
            ),
            ApiError::TooManyRequests { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests",
                "too many attempts; wait and try again".into(),
            ),
            ApiError::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Service unavailable",
                "a backing service is unavailable; try again shortly".into(),
            ),
            ApiError::NotReady(cause) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Not ready",
                format!("the handler is not ready: {cause}"),
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal error",
                "something went wrong on our side".into(),
            ),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::NotFound,
            StoreError::Conflict(what) => {
                ApiError::Conflict(format!("{what} already exists"), None)
            }
            StoreError::PreconditionFailed => {
                ApiError::Conflict("the resource changed meanwhile; try again".into(), None)
            }
            StoreError::Contended => {
                ApiError::Conflict("the resource keeps changing; try again".into(), None)
            }
            StoreError::Unavailable(e) => ApiError::Unavailable(e),
        }
    }
}

impl From<QuotaError> for ApiError {
    fn from(e: QuotaError) -> Self {
        match e {
            QuotaError::Exceeded(msg) => ApiError::Quota(msg),
            QuotaError::Store(e) => e.into(),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::Internal(e)
    }
}

/// A 5xx answer's cause, for the log only (never the body): every `/api`
/// route's counting layer (`metrics_route::Count`) takes it off the response
/// and logs it once, at ERROR, with the route's name and the method. The
/// request's own span is DEBUG (free when off), so the route is named here
/// rather than by a span around the handler.
#[derive(Clone, Debug)]
pub struct Failure(pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, title, detail) = self.parts();
        // A not-ready answer's cause is logged once per attempt by `host`.
        let failure = (status.is_server_error() && !matches!(self, ApiError::NotReady(_))).then(
            || match &self {
                ApiError::Unavailable(e) | ApiError::Internal(e) => Failure(format!("{e:#}")),
                other => Failure(other.to_string()),
            },
        );
        let kind = match self {
            ApiError::Unconfirmed => EMAIL_UNCONFIRMED,
            _ => "about:blank",
        };
        let mut body =
            json!({"type": kind, "title": title, "status": status.as_u16(), "detail": detail});
        match &self {
            ApiError::Validation(errs) | ApiError::Conflict(_, Some(errs)) => {
                body["errors"] = json!(errs)
            }
            _ => {}
        }
        let mut resp = (status, body.to_string()).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match self {
            ApiError::TooManyRequests { retry_after_secs } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            ApiError::NotReady(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(failure) = failure {
            resp.extensions_mut().insert(failure);
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
