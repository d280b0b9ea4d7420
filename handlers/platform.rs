//! The wired control plane: the ports chosen at start plus the settings the
//! handlers and jobs need. Built once by `startup`.
//!
//! Two views, so the rule "only jobs call `Compute`" is a type, not a
//! convention: `Platform` (what HTTP handlers and the lifecycle service get)
//! has no `Compute` and no raw queue — it can only *ask* for a reconcile;
//! `JobContext` (what the reconcile job, the sweep and shutdown get) adds
//! the compute backend and the queue the worker drains.

use crate::auth::KeySet;
use crate::clock::Clock;
use crate::compute::Compute;
use crate::config::SignupPolicy;
use crate::queue::JobQueue;
use crate::quota::Limits;
use crate::reconciles::Reconciles;
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;

pub struct Platform {
    pub store: Arc<dyn Store>,
    /// The one way to ask for a reconcile.
    pub reconciles: Arc<dyn Reconciles>,
    pub clock: Arc<dyn Clock>,
    pub keys: Arc<KeySet>,
    /// Seals personal secrets at rest (`sealing`).
    pub secrets_key: Arc<crate::sealing::SecretsKey>,
    pub policy: Policy,
    /// The external sign-in providers configured (possibly none).
    pub providers: Arc<crate::auth::oauth::Providers>,
    /// Every metric (and, when configured, the Application Insights exporter).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Verified session tokens, believed for at most
    /// `auth::sessions::REVOCATION_DELAY`.
    pub sessions: crate::auth::sessions::SessionCache,
    /// Where confirmation mail goes: SMTP, `serve`'s log, or nowhere (then
    /// password sign-up under an allowlist is refused).
    pub mailer: Option<Arc<dyn crate::mail::Mailer>>,
    /// Where renewed snapshot SAS come from (the periodic report's answer):
    /// set when environments keep snapshots in Blob storage.
    pub snapshot_grants: Option<Arc<dyn crate::snapshot_grant::GrantAuthority>>,
}

/// The platform as jobs see it: plus the compute backend and the job queue.
pub struct JobContext {
    pub platform: Arc<Platform>,
    pub compute: Arc<dyn Compute>,
    pub queue: Arc<dyn JobQueue>,
}

impl std::ops::Deref for JobContext {
    type Target = Platform;

    fn deref(&self) -> &Platform {
        &self.platform
    }
}

/// Settings that shape behaviour (not wiring).
#[derive(Debug, Clone)]
pub struct Policy {
    /// Origin of the dashboard and API as browsers see it; also the token issuer.
    pub public_url: String,
    pub signup: SignupPolicy,
    /// The code the first account's sign-up must give (`DEV8_SETUP_CODE`).
    pub setup_code: Option<secrecy::SecretString>,
    /// Only one account may exist (local compute, where every IDE runs as
    /// one OS user, without `DEV8_LOCAL_SHARED_USER`).
    pub one_account: bool,
    /// Lower-case email domains allowed to sign up; empty = any.
    pub signup_domains: Vec<String>,
    pub quotas: Limits,
    pub default_idle_minutes: u16,
    /// Which repository URLs are accepted (loopback only in tests).
    pub git_url_rules: crate::domain::UrlRules,
    /// How idle timeouts are measured (the warning's lead; a minute's
    /// length, shorter only under `DEV8_TEST_IDLE_MINUTE_SECONDS`).
    pub idle: crate::domain::IdleRules,
    /// How long a reconcile in progress waits before looking again.
    pub reconcile_interval: Duration,
    /// How a new environment's home mode is chosen (local: the setting;
    /// ACI: whether it fits the group's local disk).
    pub home_modes: crate::domain::HomeModeRule,
    /// Snapshot mode: a full snapshot this often while running (what a
    /// crash may lose; the dashboard says so).
    pub snapshot_interval: Duration,
    pub trusted_proxy_hops: usize,
    /// Bearer token for `GET /metrics` from anywhere but a direct loopback peer.
    pub metrics_token: Option<secrecy::SecretString>,
    pub session_hours: i64,
    pub signin_limit_per_account: crate::auth::ratelimit::Limit,
    pub signin_limit_per_address: crate::auth::ratelimit::Limit,
    /// Shared by every request whose client address is unknown (sign-in
    /// failures, sign-ups): generous, so it never locks everyone out.
    pub signin_limit_unknown: crate::auth::ratelimit::Limit,
    /// Where new passwords' strength is estimated (`auth::strength`).
    pub password_estimator: crate::auth::strength::Estimator,
}

impl Policy {
    /// Is the public URL https (cookies get `Secure` and the `__Host-` prefix)?
    pub fn secure_cookies(&self) -> bool {
        self.public_url.starts_with("https://")
    }

    pub fn issuer(&self) -> &str {
        &self.public_url
    }

    /// Is sign-up open only until the first account exists (the `first`
    /// policy, or one account only)?
    pub fn first_account_only(&self) -> bool {
        self.signup == SignupPolicy::First || self.one_account
    }
}
