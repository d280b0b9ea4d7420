//! The domain: environments, their lifecycle, templates, presets and input
//! validation. Pure code: no I/O, no clocks (times are passed in).

mod environment;
mod home;
mod repository;
mod secret;
mod templates;
mod usage;
pub mod validation;

pub use environment::*;
pub use home::*;
pub use repository::*;
pub use secret::*;
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
    /// Present while a password account under an email-domain allowlist has
    /// not confirmed its address: such an account can do nothing but
    /// confirm, ask for a new link, sign out and delete itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unconfirmed: Option<Unconfirmed>,
}

/// The pending confirmation of an account's email address.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Unconfirmed {
    /// The `jti` of the one link that confirms (a new link replaces it; a
    /// used one is gone with this record).
    pub link_id: String,
    /// When the link and the unconfirmed account expire.
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// How long a confirmation link (and the unconfirmed account) lasts.
pub const CONFIRMATION_LIFETIME: chrono::Duration = chrono::Duration::hours(24);

impl User {
    /// Has the account proven its address (or never needed to)?
    pub fn is_confirmed(&self) -> bool {
        self.unconfirmed.is_none()
    }

    /// An unconfirmed account whose time has passed: it counts as gone, and
    /// whoever meets it removes it.
    pub fn unconfirmed_expired(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        self.unconfirmed
            .as_ref()
            .is_some_and(|u| u.expires_at <= now)
    }

    /// Start (or restart) the confirmation: a fresh link id, valid for
    /// `CONFIRMATION_LIFETIME` from `now`. Returns the link id.
    pub fn renew_confirmation(&mut self, now: chrono::DateTime<chrono::Utc>) -> String {
        let link_id = new_id();
        self.unconfirmed = Some(Unconfirmed {
            link_id: link_id.clone(),
            expires_at: now + CONFIRMATION_LIFETIME,
        });
        link_id
    }

    /// Confirm with the link whose id is `link_id`: true (and the account
    /// confirmed) only for the current, unexpired link.
    pub fn confirm(&mut self, link_id: &str, now: chrono::DateTime<chrono::Utc>) -> bool {
        match &self.unconfirmed {
            Some(u) if u.link_id == link_id && u.expires_at > now => {
                self.unconfirmed = None;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod confirmation_tests {
    use super::*;
    use chrono::{Duration, Utc};

    fn user() -> User {
        User {
            id: new_id(),
            email: "a@corp.example".into(),
            name: String::new(),
            password_hash: None,
            created_at: Utc::now(),
            unconfirmed: None,
        }
    }

    #[test]
    fn only_the_current_unexpired_link_confirms_once() {
        let now = Utc::now();
        let mut u = user();
        assert!(u.is_confirmed());
        let first = u.renew_confirmation(now);
        let second = u.renew_confirmation(now);
        assert!(!u.confirm(&first, now), "a replaced link confirms nothing");
        assert!(!u.is_confirmed());
        assert!(!u.confirm(&second, now + CONFIRMATION_LIFETIME), "expired");
        assert!(u.unconfirmed_expired(now + CONFIRMATION_LIFETIME));
        assert!(!u.unconfirmed_expired(now + Duration::hours(1)));
        assert!(u.confirm(&second, now + Duration::hours(1)));
        assert!(u.is_confirmed());
        assert!(!u.confirm(&second, now + Duration::hours(1)), "used once");
    }
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
