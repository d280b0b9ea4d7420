//! The HTTP API and the dashboard's static files. Every `/api` route is
//! listed once in `ROUTES` (with the Functions function that serves it in
//! Azure); the router is built from that table, so the table is complete.

pub mod audit_routes;
pub mod auth_routes;
pub mod confirm_routes;
mod dashboard;
pub mod env_routes;
pub mod error;
pub mod extract;
pub mod ide_routes;
mod meta;
pub mod metrics_route;
pub mod oauth_routes;
pub mod secret_routes;
pub mod settings_routes;
pub mod signin_limits;
pub mod views;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Request, header};
use axum::routing::{MethodFilter, MethodRouter};
use error::ApiError;
use extract::AppState;
use std::path::Path;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

/// Largest JSON body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

/// One API route: the Functions function that serves it in Azure, its
/// method and path, and the handler. The table below is the only list.
#[derive(Clone, Copy)]
pub struct RouteSpec {
    pub function: &'static str,
    pub method: &'static str,
    pub path: &'static str,
    /// The axum method router for this route.
    pub handler: fn() -> MethodRouter<AppState>,
}

impl std::fmt::Debug for RouteSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} ({})", self.method, self.path, self.function)
    }
}

/// `route!(Function, METHOD, "/path", module::handler)`: method and handler
/// come from the same tokens, so they cannot disagree.
macro_rules! route {
    ($function:ident, $method:ident, $path:literal, $handler:path) => {
        RouteSpec {
            function: stringify!($function),
            method: stringify!($method),
            path: $path,
            handler: || axum::routing::on(MethodFilter::$method, $handler),
        }
    };
}

#[rustfmt::skip]
pub const ROUTES: &[RouteSpec] = &[
    route!(Health, GET, "/api/health", meta::health),
    route!(AuthConfig, GET, "/api/auth/config", meta::auth_config),
    route!(AuthSignup, POST, "/api/auth/signup", auth_routes::signup),
    route!(AuthSignin, POST, "/api/auth/signin", auth_routes::signin),
    route!(AuthToken, POST, "/api/auth/token", auth_routes::token),
    route!(AuthSignout, POST, "/api/auth/signout", auth_routes::signout),
    route!(AuthMe, GET, "/api/auth/me", auth_routes::me),
    route!(AuthConfirm, POST, "/api/auth/confirm", confirm_routes::confirm),
    route!(AuthConfirmResend, POST, "/api/auth/confirm/resend", confirm_routes::resend),
    route!(AuthDeleteMe, DELETE, "/api/auth/me", auth_routes::delete_me),
    route!(AuthPassword, POST, "/api/auth/password", auth_routes::change_password),
    route!(AuthKeys, GET, "/api/auth/keys", meta::keys),
    route!(AuthIdentities, GET, "/api/auth/identities", oauth_routes::identities),
    route!(AuthIdentityDelete, DELETE, "/api/auth/identities/{id}", oauth_routes::unlink),
    route!(AuthProviderStart, GET, "/api/auth/{provider}/start", oauth_routes::start),
    route!(AuthProviderCallback, GET, "/api/auth/{provider}/callback", oauth_routes::callback),
    route!(AuthProviderLink, POST, "/api/auth/{provider}/link", oauth_routes::link),
    route!(Audit, GET, "/api/audit", audit_routes::list),
    route!(Secrets, GET, "/api/secrets", secret_routes::list),
    route!(SecretPut, PUT, "/api/secrets/{name}", secret_routes::put),
    route!(SecretDelete, DELETE, "/api/secrets/{name}", secret_routes::delete),
    route!(AccountSettings, GET, "/api/settings", settings_routes::get),
    route!(AccountSettingsPatch, PATCH, "/api/settings", settings_routes::patch),
    route!(Templates, GET, "/api/templates", meta::templates),
    route!(EnvironmentsList, GET, "/api/environments", env_routes::list),
    route!(EnvironmentsCreate, POST, "/api/environments", env_routes::create),
    route!(EnvironmentGet, GET, "/api/environments/{id}", env_routes::get),
    route!(EnvironmentPatch, PATCH, "/api/environments/{id}", env_routes::patch),
    route!(EnvironmentDelete, DELETE, "/api/environments/{id}", env_routes::request::<{ env_routes::DELETE }>),
    route!(EnvironmentStatus, GET, "/api/environments/{id}/status", env_routes::status),
    route!(EnvironmentStart, POST, "/api/environments/{id}/start", env_routes::request::<{ env_routes::START }>),
    route!(EnvironmentStop, POST, "/api/environments/{id}/stop", env_routes::request::<{ env_routes::STOP }>),
    route!(EnvironmentIde, GET, "/api/environments/{id}/ide", ide_routes::ide),
    route!(EnvironmentOpen, POST, "/api/environments/{id}/open", ide_routes::open),
    route!(EnvironmentActivity, POST, "/api/environments/{id}/activity", ide_routes::activity),
    route!(EnvironmentSessions, POST, "/api/environments/{id}/sessions", ide_routes::sessions),
    route!(EnvironmentReport, POST, "/api/environments/{id}/report", ide_routes::report),
];

/// The `/api` router (what the Functions host forwards to).
pub fn api_router(state: AppState) -> Router {
    let mut router: Router<AppState> = Router::new();
    for spec in ROUTES {
        // Counted under the route's name: the label set is ROUTES, not the paths seen.
        let counted = metrics_route::Counted::new(state.clone(), spec.function, spec.path);
        let handler = (spec.handler)().layer(metrics_route::Count(counted));
        router = router.route(spec.path, handler);
    }
    let unmatched = metrics_route::Counted::new(
        state.clone(),
        crate::metrics::UNMATCHED_ROUTE,
        "/api/{*rest}",
    );
    let router = router
        .route(
            "/api/{*rest}",
            axum::routing::any(|| async { ApiError::NotFound })
                .layer(metrics_route::Count(unmatched)),
        )
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ));
    // Spans carry the method and path only: query strings may hold tickets.
    // DEBUG, so that at the default level a request makes no span at all (a
    // span per request cost /api/health ~10% of its throughput,
    // docs/performance.md); a failed request is logged at ERROR with its
    // route and method by the counting layer instead. With DEBUG off when
    // the router is built (the filter is fixed at start), the trace layer is
    // left out altogether.
    let router = if tracing::enabled!(tracing::Level::DEBUG) {
        router.layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request<_>| {
                    tracing::debug_span!("http", method = %req.method(), path = %req.uri().path())
                })
                // Not tower-http's own 5xx line too: one line per failure.
                .on_failure(()),
        )
    } else {
        router
    };
    router.with_state(state)
}

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The API plus the dashboard: embedded, or from `static_dir` when given
/// (unknown paths fall back to `index.html` so client-side routes work).
pub fn app_router(state: AppState, static_dir: Option<&Path>) -> Router {
    let static_app = dashboard::router(static_dir)
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
    // Outside `/api`: Functions never serves it (`host::router` has no such route).
    let metrics = Router::new()
        .route(
            metrics_route::PATH,
            axum::routing::get(metrics_route::metrics),
        )
        .with_state(state.clone());
    api_router(state).merge(metrics).merge(static_app)
}
