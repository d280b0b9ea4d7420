//! The domain: environments, their lifecycle, templates, presets and input
//! validation. Pure code: no I/O, no clocks (times are passed in).

mod environment;
mod secret;
mod repository;
mod templates;
mod usage;
pub mod validation;

pub use environment::*;
pub use secret::*;
pub use repository::*;
pub use templates::*;
pub use usage::*;

/// A fresh, sortable, URL-safe id (lower-case ULID). Monotonic within this
/// process: an id made later sorts after one made earlier, even within the
/// same millisecond, so records written in order list in order when their
/// times tie.
pub fn new_id() -> String {
    static GENERATOR: std::sync::Mutex<ulid::Generator> =
        std::sync::Mutex::new(ulid::Generator::new());
    let generated = GENERATOR.lock().ok().and_then(|mut g| g.generate().ok());
    // On a poisoned lock or an overflow within one millisecond, a plain
    // random ULID (not `Ulid::default()`, which is the all-zero id).
    let id = match generated {
        Some(id) => id,
        None => ulid::Ulid::new(),
    };
    id.to_string().to_ascii_lowercase()
}

#[cfg(test)]
mod id_tests {
    #[test]
    fn ids_made_in_order_sort_in_order() {
        let ids: Vec<String> = (0..1000).map(|_| super::new_id()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        assert!(
            ids.iter()
                .all(|i| i.len() == 26 && i.chars().all(|c| c.is_ascii_alphanumeric()))
        );
    }
}

/// A user account. `password_hash` is an argon2id PHC string.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    pub email: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// A signed-in session; revocable server-side.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub id: String,
    pub user_id: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    #[serde(default)]
    pub revoked: bool,
}

/// A sign-in identity at an external provider, keyed by (issuer, subject) —
/// never by email. `email_verified` is what the provider asserted when the
/// identity was last used.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    pub id: String,
    pub user_id: String,
    /// The configured provider id (`github`, `oidc`).
    pub provider: String,
    pub issuer: String,
    pub subject: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub email_verified: bool,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// Did an action succeed?
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AuditOutcome {
    Success,
    Failure,
}

/// One audit-log entry: who did what, to which environment, when, from
/// where, and how it ended. Never holds secrets. Stored partitioned by
/// `userId`; ids written by jobs are deterministic (see `crate::audit`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    pub id: String,
    pub user_id: String,
    pub at: chrono::DateTime<chrono::Utc>,
    /// What happened, e.g. `auth.signin`, `environment.start`.
    pub action: String,
    pub outcome: AuditOutcome,
    #[serde(default)]
    pub environment_id: Option<String>,
    #[serde(default)]
    pub client_address: Option<String>,
    /// A short, secret-free note (sign-in method, failure reason).
    #[serde(default)]
    pub detail: Option<String>,
    /// `environment.idle_stop`: the idle timeout (minutes) the stop honoured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_minutes: Option<u16>,
    /// `job.failure`: the cause, as the environment's `statusReason` shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `job.failure`: what the failed work was heading for (`running` for a
    /// create or start, `stopped`, `deleted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_state: Option<DesiredState>,
}
