//! `GET /metrics` (serve only; not an `/api` route, not in `ROUTES`, not a
//! Functions function) and the layer that counts every `/api` request under
//! its route's name.
//!
//! Who may scrape: a direct loopback peer, when nothing can stand in front
//! of Dev8 (`DEV8_TRUSTED_PROXY_HOPS` is 0 and the request has no
//! `X-Forwarded-For` — behind a reverse proxy every request arrives from
//! loopback); anyone else only with `Authorization` or
//! `X-Dev8-Authorization: Bearer <DEV8_METRICS_TOKEN>`, compared in constant
//! time. Otherwise 401.

use super::error::Failure;
use super::extract::AppState;
use crate::metrics::{RequestRecord, RouteInstruments};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};
use subtle::ConstantTimeEq;

/// The path `serve` exposes metrics on.
pub const PATH: &str = "/metrics";

/// `GET /metrics`: the Prometheus text format, for a direct loopback peer or
/// a request carrying `DEV8_METRICS_TOKEN` (the module doc says when which).
pub async fn metrics(State(p): State<AppState>, req: Request) -> Response {
    let headers = req.headers();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_canonical());
    let open = peer.is_some_and(|ip| ip.is_loopback())
        && p.policy.trusted_proxy_hops == 0
        && !headers.contains_key("x-forwarded-for");
    if !open && !bearer_matches(headers, p.policy.metrics_token.as_ref()) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))],
            "a metrics token is needed\n",
        )
            .into_response();
    }
    match p.store.environment_counts().await {
        Ok(counts) => p.metrics.environments(&counts),
        Err(e) => tracing::warn!(error = %e, "counting environments failed"),
    }
    (
        [
            (header::CONTENT_TYPE, p.metrics.content_type()),
            (header::CACHE_CONTROL, "no-store"),
        ],
        p.metrics.encode(),
    )
        .into_response()
}

/// Whether the request's bearer token (`extract::bearer`: `X-Dev8-Authorization`
/// first, then `Authorization`) is the metrics token. Both sides are hashed
/// first, so the comparison is constant-time and length-blind.
fn bearer_matches(headers: &HeaderMap, token: Option<&SecretString>) -> bool {
    let Some(token) = token.map(|t| t.expose_secret()).filter(|t| !t.is_empty()) else {
        return false;
    };
    let Some(given) = super::extract::bearer(headers) else {
        return false;
    };
    let want = Sha256::digest(token.as_bytes());
    bool::from(Sha256::digest(given.token.as_bytes()).ct_eq(&want))
}

/// What the counting layer of one route holds: the route's names and its
/// instruments, looked up once when the router is built.
pub struct Counted {
    platform: AppState,
    route: &'static str,
    template: &'static str,
    instruments: RouteInstruments,
}

impl Counted {
    pub fn new(platform: AppState, route: &'static str, template: &'static str) -> Arc<Self> {
        let instruments = platform.metrics.route_instruments(route);
        Arc::new(Counted {
            platform,
            route,
            template,
            instruments,
        })
    }
}

/// The layer each `ROUTES` entry (and the `/api` fallback) gets: counts and
/// times the request under the route's function name and path template, and
/// logs a 5xx answer's cause (`error::Failure`) with the route and method.
///
/// A typed tower layer rather than `middleware::from_fn`: axum clones a
/// route's service for every request, and `from_fn` adds a boxed future and
/// a boxed clone of the inner service each time; this one wraps the route's
/// own future and clones one `Arc` (docs/performance.md, "/api/health").
#[derive(Clone)]
pub struct Count(pub Arc<Counted>);

impl<S> tower::Layer<S> for Count {
    type Service = CountService<S>;

    fn layer(&self, inner: S) -> CountService<S> {
        CountService {
            counted: self.0.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub struct CountService<S> {
    counted: Arc<Counted>,
    inner: S,
}

impl<S> tower::Service<Request> for CountService<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = CountFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let method = method_name(req.method());
        CountFuture {
            started: SystemTime::now(),
            clock: Instant::now(),
            method,
            counted: self.counted.clone(),
            inner: self.inner.call(req),
        }
    }
}

pin_project_lite::pin_project! {
    /// The route's own future, and what its record needs once it is ready.
    pub struct CountFuture<F> {
        #[pin]
        inner: F,
        counted: Arc<Counted>,
        method: &'static str,
        started: SystemTime,
        clock: Instant,
    }
}

impl<F, E> Future for CountFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut result = std::task::ready!(this.inner.poll(cx));
        if let Ok(response) = &mut result {
            let Counted {
                platform,
                route,
                template,
                instruments,
            } = &**this.counted;
            if let Some(Failure(cause)) = response.extensions_mut().remove::<Failure>() {
                tracing::error!(
                    route = *route,
                    method = *this.method,
                    status = response.status().as_u16(),
                    error = %cause,
                    "request failed"
                );
            }
            platform.metrics.http_request_on(
                instruments,
                RequestRecord {
                    route,
                    template,
                    method: this.method,
                    code: response.status().as_u16(),
                    started: *this.started,
                    elapsed: this.clock.elapsed(),
                },
            );
        }
        Poll::Ready(result)
    }
}

/// A fixed name per method (traces); anything unusual is `OTHER`.
fn method_name(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    [
        (Method::GET, "GET"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::PATCH, "PATCH"),
        (Method::DELETE, "DELETE"),
        (Method::HEAD, "HEAD"),
        (Method::OPTIONS, "OPTIONS"),
    ]
    .into_iter()
    .find(|(k, _)| k == m)
    .map_or("OTHER", |(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn only_the_exact_bearer_token_matches() {
        let token = SecretString::from("s3cret-token".to_string());
        let t = Some(&token);
        assert!(bearer_matches(
            &headers(&[("authorization", "Bearer s3cret-token")]),
            t
        ));
        assert!(bearer_matches(
            &headers(&[("x-dev8-authorization", "bearer s3cret-token")]),
            t
        ));
        assert!(bearer_matches(
            &headers(&[
                ("authorization", "Basic eA=="),
                ("x-dev8-authorization", "Bearer s3cret-token")
            ]),
            t
        ));
        for wrong in [
            "Bearer s3cret-toke",
            "Bearer s3cret-token2",
            "s3cret-token",
            "Token s3cret-token",
            "Bearer ",
        ] {
            assert!(
                !bearer_matches(&headers(&[("authorization", wrong)]), t),
                "{wrong}"
            );
        }
        // No token configured: nothing matches, not even an empty bearer.
        assert!(!bearer_matches(
            &headers(&[("authorization", "Bearer ")]),
            None
        ));
        let empty = SecretString::from(String::new());
        assert!(!bearer_matches(
            &headers(&[("authorization", "Bearer ")]),
            Some(&empty)
        ));
    }
}
