//! The `Store` port: every piece of state the control plane keeps. Adapters:
//! `sqlite` (embedded, `serve`) and, later, `cosmos` (Azure). Both keep the
//! same contract: conditional writes by ETag never silently overwrite, a
//! duplicate id or unique key is `Conflict`, a stale ETag is
//! `PreconditionFailed`.

mod sqlite;

pub use sqlite::SqliteStore;

use crate::domain::{Environment, Session, User};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// An opaque version tag; a write that names one applies only if it is current.
pub type Etag = String;

/// A value together with the ETag it was read at.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub etag: Etag,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A duplicate id or unique key; the string names what collided.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The ETag given is no longer current.
    #[error("precondition failed")]
    PreconditionFailed,
    #[error("store unavailable")]
    Unavailable(#[source] anyhow::Error),
}

impl StoreError {
    pub fn unavailable(e: impl Into<anyhow::Error>) -> Self {
        StoreError::Unavailable(e.into())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The conflict key reported when an environment name is taken.
pub const CONFLICT_ENVIRONMENT_NAME: &str = "environment name";
/// The conflict key reported when an email is taken.
pub const CONFLICT_EMAIL: &str = "email";

#[async_trait]
pub trait Store: Send + Sync + 'static {
    // Users. Emails are unique (normalised by the caller).
    async fn insert_user(&self, user: &User) -> StoreResult<()>;
    async fn user(&self, id: &str) -> StoreResult<Option<User>>;
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>>;
    async fn delete_user(&self, id: &str) -> StoreResult<()>;

    // Sessions.
    async fn insert_session(&self, session: &Session) -> StoreResult<()>;
    async fn session(&self, id: &str) -> StoreResult<Option<Session>>;
    async fn revoke_session(&self, id: &str) -> StoreResult<()>;
    async fn revoke_user_sessions(&self, user_id: &str) -> StoreResult<()>;

    // Environments, partitioned by user. Names are unique per user.
    async fn insert_environment(&self, env: &Environment) -> StoreResult<Etag>;
    async fn environment(
        &self,
        user_id: &str,
        id: &str,
    ) -> StoreResult<Option<Versioned<Environment>>>;
    /// The user's environments, most recently used first.
    async fn environments(&self, user_id: &str) -> StoreResult<Vec<Versioned<Environment>>>;
    async fn replace_environment(&self, env: &Environment, if_match: &Etag) -> StoreResult<Etag>;
    async fn delete_environment(&self, user_id: &str, id: &str, if_match: &Etag)
    -> StoreResult<()>;
    /// Every environment the sweeps look at: transitional or running.
    async fn active_environments(&self) -> StoreResult<Vec<Versioned<Environment>>>;

    // Small JSON documents with conditional writes: quota counters, rate-limit
    // windows, one-time markers. `if_match: None` creates (Conflict if present).
    async fn document(&self, key: &str) -> StoreResult<Option<Versioned<serde_json::Value>>>;
    async fn put_document(
        &self,
        key: &str,
        value: &serde_json::Value,
        if_match: Option<&Etag>,
        expires_at: Option<DateTime<Utc>>,
    ) -> StoreResult<Etag>;
    /// Remove documents whose `expires_at` has passed (Cosmos does this by TTL).
    async fn purge_expired_documents(&self, now: DateTime<Utc>) -> StoreResult<u64>;
}
