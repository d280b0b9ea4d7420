//! The HTTP API and the dashboard's static files. Every `/api` route is
//! listed once in `ROUTES` (with the Functions function that serves it in
//! Azure); the router is built from that table, so the table is complete.

pub mod audit_routes;
pub mod auth_routes;
pub mod env_routes;
pub mod error;
pub mod extract;
pub mod ide_routes;
mod meta;
pub mod oauth_routes;
pub mod views;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Request, header};
use axum::routing::{MethodRouter, delete, get, patch, post};
use error::ApiError;
use extract::AppState;
use std::path::Path;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

/// Largest JSON body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

/// One API route: the Functions function name, method and path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteSpec {
    pub function: &'static str,
    pub method: &'static str,
    pub path: &'static str,
}

const fn r(function: &'static str, method: &'static str, path: &'static str) -> RouteSpec {
    RouteSpec {
        function,
        method,
        path,
    }
}

pub const ROUTES: &[RouteSpec] = &[
    r("Health", "GET", "/api/health"),
    r("AuthConfig", "GET", "/api/auth/config"),
    r("AuthSignup", "POST", "/api/auth/signup"),
    r("AuthSignin", "POST", "/api/auth/signin"),
    r("AuthToken", "POST", "/api/auth/token"),
    r("AuthSignout", "POST", "/api/auth/signout"),
    r("AuthMe", "GET", "/api/auth/me"),
    r("AuthDeleteMe", "DELETE", "/api/auth/me"),
    r("AuthKeys", "GET", "/api/auth/keys"),
    r("AuthIdentities", "GET", "/api/auth/identities"),
    r("AuthIdentityDelete", "DELETE", "/api/auth/identities/{id}"),
    r("AuthProviderStart", "GET", "/api/auth/{provider}/start"),
    r(
        "AuthProviderCallback",
        "GET",
        "/api/auth/{provider}/callback",
    ),
    r("AuthProviderLink", "POST", "/api/auth/{provider}/link"),
    r("Audit", "GET", "/api/audit"),
    r("Templates", "GET", "/api/templates"),
    r("EnvironmentsList", "GET", "/api/environments"),
    r("EnvironmentsCreate", "POST", "/api/environments"),
    r("EnvironmentGet", "GET", "/api/environments/{id}"),
    r("EnvironmentPatch", "PATCH", "/api/environments/{id}"),
    r("EnvironmentDelete", "DELETE", "/api/environments/{id}"),
    r("EnvironmentStatus", "GET", "/api/environments/{id}/status"),
    r("EnvironmentStart", "POST", "/api/environments/{id}/start"),
    r("EnvironmentStop", "POST", "/api/environments/{id}/stop"),
    r("EnvironmentIde", "GET", "/api/environments/{id}/ide"),
    r("EnvironmentOpen", "POST", "/api/environments/{id}/open"),
    r(
        "EnvironmentActivity",
        "POST",
        "/api/environments/{id}/activity",
    ),
];

fn handler(function: &str) -> MethodRouter<AppState> {
    match function {
        "Health" => get(meta::health),
        "AuthConfig" => get(meta::auth_config),
        "AuthSignup" => post(auth_routes::signup),
        "AuthSignin" => post(auth_routes::signin),
        "AuthToken" => post(auth_routes::token),
        "AuthSignout" => post(auth_routes::signout),
        "AuthMe" => get(auth_routes::me),
        "AuthDeleteMe" => delete(auth_routes::delete_me),
        "AuthKeys" => get(meta::keys),
        "AuthIdentities" => get(oauth_routes::identities),
        "AuthIdentityDelete" => delete(oauth_routes::unlink),
        "AuthProviderStart" => get(oauth_routes::start),
        "AuthProviderCallback" => get(oauth_routes::callback),
        "AuthProviderLink" => post(oauth_routes::link),
        "Audit" => get(audit_routes::list),
        "Templates" => get(meta::templates),
        "EnvironmentsList" => get(env_routes::list),
        "EnvironmentsCreate" => post(env_routes::create),
        "EnvironmentGet" => get(env_routes::get),
        "EnvironmentPatch" => patch(env_routes::patch),
        "EnvironmentDelete" => delete(env_routes::delete),
        "EnvironmentStatus" => get(env_routes::status),
        "EnvironmentStart" => post(env_routes::start),
        "EnvironmentStop" => post(env_routes::stop),
        "EnvironmentIde" => get(ide_routes::ide),
        "EnvironmentOpen" => post(ide_routes::open),
        "EnvironmentActivity" => post(ide_routes::activity),
        other => panic!("route table names an unknown function {other}"),
    }
}

/// The `/api` router (what the Functions host forwards to).
pub fn api_router(state: AppState) -> Router {
    let mut router: Router<AppState> = Router::new();
    for spec in ROUTES {
        router = router.route(spec.path, handler(spec.function));
    }
    router
        .route("/api/{*rest}", axum::routing::any(|| async { ApiError::NotFound }))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(SetResponseHeaderLayer::if_not_present(header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(
            // Spans carry the method and path only: query strings may hold tickets.
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                tracing::info_span!("http", method = %req.method(), path = %req.uri().path())
            }),
        )
        .with_state(state)
}

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The API plus the dashboard from `static_dir` (unknown paths fall back to
/// `index.html` so client-side routes work).
pub fn app_router(state: AppState, static_dir: &Path) -> Router {
    let files = ServeDir::new(static_dir).fallback(ServeFile::new(static_dir.join("index.html")));
    let static_app = Router::new()
        .fallback_service(files)
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("x-frame-options"),
            HeaderValue::from_static("DENY"),
        ));
    api_router(state).merge(static_app)
}
