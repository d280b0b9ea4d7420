//! The `Store` port: every piece of state the control plane keeps. Adapters:
//! `sqlite` (embedded, `serve`) and `cosmos` (Azure). Both keep the
//! same contract: conditional writes by ETag never silently overwrite, a
//! duplicate id or unique key is `Conflict`, a stale ETag is
//! `PreconditionFailed`.

pub mod cosmos;
mod sqlite;
pub mod update;

pub use cosmos::{CosmosConfig, CosmosStore};
pub use sqlite::{ACTIVE_ENVIRONMENTS_SQL, ENVIRONMENT_AUDIT_SQL, SqliteStore};

use crate::domain::{AuditRecord, Environment, Identity, Session, Status, StoredSecret, User};
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
    /// A record kept changing under a read-modify-write (see `update`).
    #[error("the record keeps changing")]
    Contended,
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
/// The form of an environment name that must be unique per user: names
/// differing only in case collide (both adapters; Unicode lower case).
pub fn name_key(name: &str) -> String {
    name.to_lowercase()
}

/// The conflict key reported when an email is taken.
pub const CONFLICT_EMAIL: &str = "email";
/// The conflict key reported when an (issuer, subject) identity is taken.
pub const CONFLICT_IDENTITY: &str = "identity";

/// Where a page of audit records starts: records strictly older than this
/// (`at` descending, then `id` descending).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCursor {
    pub at: DateTime<Utc>,
    pub id: String,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    // Users. Emails are unique (normalised by the caller).
    async fn insert_user(&self, user: &User) -> StoreResult<()>;
    async fn user(&self, id: &str) -> StoreResult<Option<User>>;
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>>;
    /// Replace an existing account's record (last write wins; the account
    /// holds no counters). `NotFound` when the account is gone; the email
    /// cannot change here (`Conflict(CONFLICT_EMAIL)`).
    async fn update_user(&self, user: &User) -> StoreResult<()>;
    async fn delete_user(&self, id: &str) -> StoreResult<()>;
    /// Replace the user's password hash; `NotFound` when there is no such user.
    async fn set_password_hash(&self, user_id: &str, hash: &str) -> StoreResult<()>;

    // Sessions.
    async fn insert_session(&self, session: &Session) -> StoreResult<()>;
    async fn session(&self, id: &str) -> StoreResult<Option<Session>>;
    async fn revoke_session(&self, id: &str) -> StoreResult<()>;
    /// Revoke every session of the user except `keep` (the one changing the
    /// password stays signed in).
    async fn revoke_user_sessions(&self, user_id: &str, keep: Option<&str>) -> StoreResult<()>;

    // Environments, partitioned by user. Names are unique per user regardless
    // of case (`name_key`); a write that keeps a name never fails on it.
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
    /// How many environments there are in each status (for the metrics
    /// gauge); a status with none may be missing.
    async fn environment_counts(&self) -> StoreResult<Vec<(Status, u64)>>;

    // Small JSON documents with conditional writes: quota counters, rate-limit
    // windows, one-time markers. `if_match: None` creates (Conflict if present).
    // A document past its `expires_at` (wall clock) is gone: reads miss it, a
    // create takes its key, a conditional write on it is PreconditionFailed.
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

    // External sign-in identities. (issuer, subject) is unique: a second
    // insert is `Conflict(CONFLICT_IDENTITY)`. Cosmos: container `identities`
    // partitioned by `/userId`, with a unique key on `/issuer,/subject`
    // enforced by a lookup document keyed by a hash of the pair (unique keys
    // are per partition there).
    async fn insert_identity(&self, identity: &Identity) -> StoreResult<()>;
    async fn identity_by_subject(
        &self,
        issuer: &str,
        subject: &str,
    ) -> StoreResult<Option<Identity>>;
    /// The user's identities, oldest first.
    async fn identities(&self, user_id: &str) -> StoreResult<Vec<Identity>>;
    /// `NotFound` when the user has no identity with this id.
    async fn delete_identity(&self, user_id: &str, id: &str) -> StoreResult<()>;

    // The audit log. Cosmos: container `audit` partitioned by `/userId`;
    // a create that answers 409 (duplicate id) is success.
    /// Append a record. Idempotent: a record whose id exists already is
    /// success (jobs write deterministic ids and may be delivered twice).
    async fn insert_audit(&self, record: &AuditRecord) -> StoreResult<()>;
    /// The user's records, newest first (`at` then `id`, both descending),
    /// only those about `environment_id` when given, strictly before
    /// `before` when given, at most `limit`. SQLite answers from the
    /// `audit_by_environment_recent` index; Cosmos from one partition.
    async fn audit_records(
        &self,
        user_id: &str,
        environment_id: Option<&str>,
        before: Option<&AuditCursor>,
        limit: usize,
    ) -> StoreResult<Vec<AuditRecord>>;

    // Personal secrets, sealed (`crate::sealing`); the store never sees a
    // plain value. Per user, unique by name. Cosmos: container `secrets`
    // partitioned by `/userId`, id = the name.
    /// Create or replace the user's secret by that name (last writer wins:
    /// a replace is what the user asked for).
    async fn put_secret(&self, secret: &StoredSecret) -> StoreResult<()>;
    /// The user's secrets, by name.
    async fn secrets(&self, user_id: &str) -> StoreResult<Vec<StoredSecret>>;
    /// `NotFound` when the user has no secret by that name.
    async fn delete_secret(&self, user_id: &str, name: &str) -> StoreResult<()>;
}
