//! Personal secrets: the stored record (a sealed value, never the plain
//! one) and the rules for names and values. The sealing itself is
//! `crate::sealing`; the domain stays free of keys and I/O.

use super::validation::FieldErrors;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The longest name accepted.
pub const SECRET_NAME_MAX: usize = 128;
/// The largest value accepted, in UTF-8 bytes.
pub const SECRET_VALUE_MAX: usize = 32 * 1024;
/// How many secrets one account may keep: with `SECRET_VALUE_MAX` each, all of
/// them together stay well inside what one process's environment may hold
/// (the kernel's limit on argv + environment is a few MB at most).
pub const SECRETS_PER_USER: usize = 32;

/// Names the IDE's environment needs for itself (the shell, the locale,
/// the dynamic linker, code-server's own settings, the agent's variables):
/// a secret by one of these names or prefixes would break the environment
/// or the agent, so it is refused.
pub const RESERVED_SECRET_NAMES: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "PWD",
    "OLDPWD",
    "TERM",
    "TMPDIR",
    "TZ",
    "LANG",
    "LANGUAGE",
    "HOSTNAME",
    "IFS",
    "ENV",
    "BASH_ENV",
    "NODE_OPTIONS",
    "NODE_PATH",
];
/// Refused name prefixes (see `RESERVED_SECRET_NAMES`).
pub const RESERVED_SECRET_PREFIXES: &[&str] =
    &["DEV8_", "LC_", "XDG_", "LD_", "VSCODE_", "CODE_SERVER_"];

/// One stored secret. `sealed` is the AEAD ciphertext with its nonce
/// (`sealing`), bound to the user and the name; the plain value is never
/// in this record.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredSecret {
    pub user_id: String,
    pub name: String,
    pub sealed: String,
    pub updated_at: DateTime<Utc>,
}

impl std::fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSecret")
            .field("user_id", &self.user_id)
            .field("name", &self.name)
            .field("updated_at", &self.updated_at)
            .finish_non_exhaustive()
    }
}

/// Why a name is refused, or `None` when it is a good one.
pub fn name_problem(name: &str) -> Option<&'static str> {
    let mut chars = name.chars();
    let well_formed = chars
        .next()
        .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if name.is_empty() || name.len() > SECRET_NAME_MAX {
        Some("must be 1 to 128 characters")
    } else if !well_formed {
        Some("must match [A-Z_][A-Z0-9_]*")
    } else if RESERVED_SECRET_NAMES.contains(&name)
        || RESERVED_SECRET_PREFIXES.iter().any(|p| name.starts_with(p))
    {
        Some("is reserved for the environment itself")
    } else {
        None
    }
}

/// The body of `PUT /api/secrets/{name}`: exactly `{"value": "<string>"}`.
/// Errors name the field (`name` for the path's name, `value`, or an
/// unknown field); the value is never repeated in a message.
pub fn secret_value(
    name: &str,
    body: &serde_json::Map<String, serde_json::Value>,
) -> Result<String, FieldErrors> {
    let mut errors = FieldErrors::new();
    if let Some(problem) = name_problem(name) {
        errors.insert("name".into(), problem.into());
    }
    for key in body.keys().filter(|k| *k != "value") {
        errors.insert(key.clone(), "is not a known field".into());
    }
    let value = match body.get("value") {
        Some(serde_json::Value::String(s)) if s.len() > SECRET_VALUE_MAX => {
            errors.insert("value".into(), "must be at most 32 KB".into());
            None
        }
        Some(serde_json::Value::String(s)) if s.contains('\0') => {
            errors.insert("value".into(), "must not contain NUL characters".into());
            None
        }
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(_) => {
            errors.insert("value".into(), "must be a string".into());
            None
        }
        None => {
            errors.insert("value".into(), "is required".into());
            None
        }
    };
    match value {
        Some(v) if errors.is_empty() => Ok(v),
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_follow_the_pattern_and_spare_the_environment() {
        for good in ["GITHUB_TOKEN", "_X", "A1", "NPM_TOKEN_2", "NODE_ENV"] {
            assert_eq!(name_problem(good), None, "{good}");
        }
        for bad in [
            "",
            "github_token",
            "1A",
            "A-B",
            "A B",
            "ÄB",
            &"A".repeat(129),
        ] {
            assert!(name_problem(bad).is_some(), "{bad}");
        }
        for reserved in [
            "PATH",
            "HOME",
            "DEV8_AGENT_TOKEN",
            "LD_PRELOAD",
            "LC_ALL",
            "XDG_DATA_HOME",
        ] {
            assert_eq!(
                name_problem(reserved),
                Some("is reserved for the environment itself")
            );
        }
        assert_eq!(name_problem(&"A".repeat(128)), None);
    }

    #[test]
    fn values_are_bounded_strings_and_never_echoed() {
        let body = |v: serde_json::Value| v.as_object().unwrap().clone();
        assert_eq!(
            secret_value("T", &body(json!({"value": "s3cret"}))).unwrap(),
            "s3cret"
        );
        let big = "x".repeat(SECRET_VALUE_MAX + 1);
        let errs = secret_value("T", &body(json!({"value": big}))).unwrap_err();
        assert_eq!(errs["value"], "must be at most 32 KB");
        assert!(secret_value("T", &body(json!({"value": "x".repeat(SECRET_VALUE_MAX)}))).is_ok());
        let errs =
            secret_value("bad", &body(json!({"value": "hunter2\u{0}", "x": 1}))).unwrap_err();
        assert_eq!(errs.len(), 3);
        assert!(!format!("{errs:?}").contains("hunter2"));
        assert_eq!(
            secret_value("T", &body(json!({}))).unwrap_err()["value"],
            "is required"
        );
        assert_eq!(
            secret_value("T", &body(json!({"value": 5}))).unwrap_err()["value"],
            "must be a string"
        );
    }

    #[test]
    fn debug_shows_no_ciphertext() {
        let s = StoredSecret {
            user_id: "u".into(),
            name: "N".into(),
            sealed: "v1.CIPHERTEXT".into(),
            updated_at: Utc::now(),
        };
        assert!(!format!("{s:?}").contains("CIPHERTEXT"));
    }
}
