//! The domain: environments, their lifecycle, templates, presets and input
//! validation. Pure code: no I/O, no clocks (times are passed in).

mod environment;
mod templates;
pub mod validation;

pub use environment::*;
pub use templates::*;

/// A fresh, sortable, URL-safe id (lower-case ULID).
pub fn new_id() -> String {
    ulid::Ulid::new().to_string().to_ascii_lowercase()
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
