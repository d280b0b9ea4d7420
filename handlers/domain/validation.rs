//! Input validation, field by field. Bodies are read as JSON objects so that
//! unknown fields, fields a user may not set, and bad values are all reported
//! at once, and nothing is stored unless every field is valid.

use super::{
    NewEnvironment, Repository, SnapshotState, Template, UrlRules, Usage, git_ref, preset,
    repository_url,
};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Field name -> what is wrong with it.
pub type FieldErrors = BTreeMap<String, String>;

pub const NAME_MAX: usize = 50;
pub const IDLE_MIN: u16 = 5;
pub const IDLE_MAX: u16 = 480;
pub const PASSWORD_MIN: usize = 8;
pub const PASSWORD_MAX: usize = 128;
pub const EMAIL_MAX: usize = 254;
pub const USER_NAME_MAX: usize = 100;

/// Fields the server owns: a client that sends them gets told so by name.
const SERVER_OWNED: &[&str] = &[
    "id",
    "userId",
    "status",
    "desiredState",
    "statusReason",
    "stopCause",
    "ideUrl",
    "createdAt",
    "updatedAt",
    "lastActivityAt",
    "actions",
    "homeMode",
];

struct Fields<'a> {
    body: &'a Map<String, Value>,
    errors: FieldErrors,
}

impl<'a> Fields<'a> {
    fn new(body: &'a Map<String, Value>, allowed: &[&str]) -> Self {
        let mut errors = FieldErrors::new();
        for key in body.keys() {
            if allowed.contains(&key.as_str()) {
                continue;
            }
            let msg = if SERVER_OWNED.contains(&key.as_str()) {
                "is set by the server and cannot be given"
            } else {
                "is not a known field"
            };
            errors.insert(key.clone(), msg.into());
        }
        Fields { body, errors }
    }

    fn present(&self, field: &str) -> bool {
        self.body.get(field).is_some_and(|v| !v.is_null())
    }

    fn string(&mut self, field: &str, required: bool) -> Option<&'a str> {
        match self.body.get(field) {
            None | Some(Value::Null) => {
                if required {
                    self.errors.insert(field.into(), "is required".into());
                }
                None
            }
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => {
                self.errors.insert(field.into(), "must be a string".into());
                None
            }
        }
    }

    fn integer(&mut self, field: &str, min: i64, max: i64) -> Option<i64> {
        match self.body.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => match n.as_i64() {
                Some(v) if (min..=max).contains(&v) => Some(v),
                _ => {
                    self.errors.insert(
                        field.into(),
                        format!("must be a whole number from {min} to {max}"),
                    );
                    None
                }
            },
            Some(_) => {
                self.errors.insert(
                    field.into(),
                    format!("must be a whole number from {min} to {max}"),
                );
                None
            }
        }
    }

    fn error(&mut self, field: &str, msg: impl Into<String>) {
        self.errors
            .entry(field.into())
            .or_insert_with(|| msg.into());
    }

    fn finish<T>(self, value: Option<T>) -> Result<T, FieldErrors> {
        match value {
            Some(v) if self.errors.is_empty() => Ok(v),
            _ => Err(self.errors),
        }
    }
}

/// An environment name: trimmed, 1-50 characters, printable, no control characters.
/// Is this a well-formed id, as `domain::new_id` makes them (a ULID in
/// lower-case Crockford base32)? Anything else names nothing.
pub fn is_id(raw: &str) -> bool {
    raw.len() == 26
        && raw.as_bytes()[0] <= b'7'
        && raw
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'h' | b'j' | b'k' | b'm' | b'n' | b'p'..=b't' | b'v'..=b'z'))
}

pub fn environment_name(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    let len = name.chars().count();
    if len == 0 || len > NAME_MAX {
        return Err(format!("must be 1 to {NAME_MAX} characters"));
    }
    if name.chars().any(|c| c.is_control() || is_invisible(c)) {
        return Err("must contain printable characters only".into());
    }
    Ok(name.to_string())
}

fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}')
}

/// `POST /api/environments`: `{name, baseImage, preset}` or explicit sizes.
pub fn new_environment(
    body: &Map<String, Value>,
    default_idle: u16,
    url_rules: UrlRules,
) -> Result<NewEnvironment, FieldErrors> {
    let mut f = Fields::new(
        body,
        &[
            "name",
            "baseImage",
            "preset",
            "cpuCores",
            "memoryGB",
            "storageGB",
            "idleTimeoutMinutes",
            "repository",
        ],
    );
    let repository = repository(&mut f, url_rules);
    let name = f
        .string("name", true)
        .and_then(|raw| match environment_name(raw) {
            Ok(n) => Some(n),
            Err(e) => {
                f.error("name", e);
                None
            }
        });
    let base_image = f
        .string("baseImage", true)
        .and_then(|raw| match Template::parse(raw) {
            Some(t) => Some(t),
            None => {
                f.error("baseImage", "must be one of node, python, golang");
                None
            }
        });
    let explicit = ["cpuCores", "memoryGB", "storageGB"];
    let sizes = if f.present("preset") {
        for field in explicit {
            if f.present(field) {
                f.error(field, "cannot be given together with preset");
            }
        }
        f.string("preset", true).and_then(|raw| match preset(raw) {
            Some(p) => Some((p.cpu_cores, p.memory_gb, p.storage_gb)),
            None => {
                f.error("preset", "must be one of small, medium, large");
                None
            }
        })
    } else {
        let mut missing = false;
        for field in explicit {
            if !f.present(field) {
                f.error(field, "is required unless preset is given");
                missing = true;
            }
        }
        let cpu = f.integer("cpuCores", 1, 8);
        let mem = f.integer("memoryGB", 2, 16);
        let disk = f.integer("storageGB", 20, 200);
        match (cpu, mem, disk, missing) {
            (Some(c), Some(m), Some(d), false) => Some((c as u8, m as u8, d as u16)),
            _ => None,
        }
    };
    let idle = if f.present("idleTimeoutMinutes") {
        f.integer("idleTimeoutMinutes", IDLE_MIN.into(), IDLE_MAX.into())
            .map(|v| v as u16)
    } else {
        Some(default_idle)
    };
    let value = match (name, base_image, sizes, idle, repository) {
        (
            Some(name),
            Some(base_image),
            Some((cpu_cores, memory_gb, storage_gb)),
            Some(idle),
            Some(repository),
        ) => Some(NewEnvironment {
            name,
            base_image,
            cpu_cores,
            memory_gb,
            storage_gb,
            idle_timeout_minutes: idle,
            repository,
            dotfiles_repository: None,
            home_mode: Default::default(),
        }),
        _ => None,
    };
    f.finish(value)
}

/// The create body's optional `repository` (`{url, ref?}`); errors are
/// named `repository`, `repository.url`, `repository.ref`. `Some(None)`:
/// none given.
fn repository(f: &mut Fields<'_>, rules: UrlRules) -> Option<Option<Repository>> {
    let object = match f.body.get("repository") {
        None | Some(Value::Null) => return Some(None),
        Some(Value::Object(o)) => o,
        Some(_) => {
            f.error("repository", "must be an object with url and ref");
            return None;
        }
    };
    let mut ok = true;
    for key in object.keys() {
        if key != "url" && key != "ref" {
            f.error(&format!("repository.{key}"), "is not a known field");
            ok = false;
        }
    }
    let url = match object.get("url") {
        Some(Value::String(raw)) => match repository_url(raw, rules) {
            Ok(url) => Some(url),
            Err(e) => {
                f.error("repository.url", e);
                None
            }
        },
        None | Some(Value::Null) => {
            f.error("repository.url", "is required");
            None
        }
        Some(_) => {
            f.error("repository.url", "must be a string");
            None
        }
    };
    let git_ref = match object.get("ref") {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(raw)) => match git_ref(raw) {
            Ok(r) => Some(Some(r)),
            Err(e) => {
                f.error("repository.ref", e);
                None
            }
        },
        Some(_) => {
            f.error("repository.ref", "must be a string");
            None
        }
    };
    match (url, git_ref, ok) {
        (Some(url), Some(git_ref), true) => Some(Some(Repository { url, git_ref })),
        _ => None,
    }
}

/// `PATCH /api/settings`: `{dotfilesRepository}` (a URL, or null to remove it).
/// `Some(None)`: remove.
pub fn account_settings(
    body: &Map<String, Value>,
    rules: UrlRules,
) -> Result<Option<String>, FieldErrors> {
    let mut f = Fields::new(body, &["dotfilesRepository"]);
    let value = match body.get("dotfilesRepository") {
        None => {
            f.error("dotfilesRepository", "is required (null removes it)");
            None
        }
        Some(Value::Null) => Some(None),
        Some(Value::String(raw)) => match repository_url(raw, rules) {
            Ok(url) => Some(Some(url)),
            Err(e) => {
                f.error("dotfilesRepository", e);
                None
            }
        },
        Some(_) => {
            f.error("dotfilesRepository", "must be a string or null");
            None
        }
    };
    f.finish(value)
}

/// `PATCH /api/environments/{id}`: `{name?, idleTimeoutMinutes?}`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EnvironmentPatch {
    pub name: Option<String>,
    pub idle_timeout_minutes: Option<u16>,
}

pub fn environment_patch(body: &Map<String, Value>) -> Result<EnvironmentPatch, FieldErrors> {
    let mut f = Fields::new(body, &["name", "idleTimeoutMinutes"]);
    let mut patch = EnvironmentPatch::default();
    if f.present("name")
        && let Some(raw) = f.string("name", true)
    {
        match environment_name(raw) {
            Ok(n) => patch.name = Some(n),
            Err(e) => f.error("name", e),
        }
    }
    if f.present("idleTimeoutMinutes") {
        patch.idle_timeout_minutes = f
            .integer("idleTimeoutMinutes", IDLE_MIN.into(), IDLE_MAX.into())
            .map(|v| v as u16);
    }
    if f.errors.is_empty() && patch == EnvironmentPatch::default() {
        f.error("body", "give at least one of name, idleTimeoutMinutes");
    }
    f.finish(Some(patch))
}

/// Highest `cpuPercent` an agent may report (local limits are nominal, so
/// a busy machine can show more than 100%).
pub const CPU_PERCENT_MAX: f64 = 10_000.0;

/// An agent's periodic report (`POST /api/environments/{id}/report`).
/// Unknown top-level sections are ignored (a newer agent may send more);
/// `usage`, when present, is checked field by field (errors named
/// `usage.<field>`), and `at` is the time it was received.
pub fn agent_report(
    body: &Map<String, Value>,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<Option<Usage>, FieldErrors> {
    let usage = match body.get("usage") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(u)) => u,
        Some(_) => {
            return Err(FieldErrors::from([(
                "usage".to_string(),
                "must be an object".to_string(),
            )]));
        }
    };
    let mut errors = FieldErrors::new();
    let mut bytes = |field: &str, min: u64| match usage.get(field).and_then(Value::as_u64) {
        Some(v) if v >= min => v,
        _ => {
            errors.insert(
                format!("usage.{field}"),
                format!("must be a whole number of bytes, at least {min}"),
            );
            0
        }
    };
    let memory_bytes = bytes("memoryBytes", 0);
    let memory_limit_bytes = bytes("memoryLimitBytes", 1);
    let disk_bytes = bytes("diskBytes", 0);
    let disk_limit_bytes = bytes("diskLimitBytes", 1);
    let cpu_percent = match usage.get("cpuPercent").and_then(Value::as_f64) {
        Some(v) if (0.0..=CPU_PERCENT_MAX).contains(&v) => v,
        _ => {
            errors.insert(
                "usage.cpuPercent".into(),
                format!("must be a number from 0 to {CPU_PERCENT_MAX}"),
            );
            0.0
        }
    };
    let snapshot = match usage.get("snapshot") {
        None | Some(Value::Null) => None,
        Some(Value::Object(s)) => snapshot_state(s, &mut errors),
        Some(_) => {
            errors.insert("usage.snapshot".into(), "must be an object".into());
            None
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Some(Usage {
        cpu_percent,
        memory_bytes,
        memory_limit_bytes,
        disk_bytes,
        disk_limit_bytes,
        at,
        snapshot,
    }))
}

/// The `setup` section of an agent's periodic report: `{cloneError?}`, what
/// the first start's clone of the environment's repository ended with.
/// Unknown fields are ignored (a newer agent may say more).
pub fn agent_setup(body: &Map<String, Value>) -> Result<Option<String>, FieldErrors> {
    let setup = match body.get("setup") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(s)) => s,
        Some(_) => {
            return Err(FieldErrors::from([(
                "setup".to_string(),
                "must be an object".to_string(),
            )]));
        }
    };
    match setup.get("cloneError") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(e)) => Ok(Some(e.clone())),
        Some(_) => Err(FieldErrors::from([(
            "setup.cloneError".to_string(),
            "must be a string".to_string(),
        )])),
    }
}

/// `snapshotSas.expiresOn` of an agent's report: when the SAS of its Blob
/// snapshot store expires (agents with a folder store send none).
pub fn agent_snapshot_sas(
    body: &Map<String, Value>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, FieldErrors> {
    let sas = match body.get("snapshotSas") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(s)) => s,
        Some(_) => {
            return Err(FieldErrors::from([(
                "snapshotSas".to_string(),
                "must be an object".to_string(),
            )]));
        }
    };
    sas.get("expiresOn")
        .and_then(Value::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| Some(t.with_timezone(&chrono::Utc)))
        .ok_or_else(|| {
            FieldErrors::from([(
                "snapshotSas.expiresOn".to_string(),
                "must be an RFC 3339 time".to_string(),
            )])
        })
}

/// The longest snapshot warning kept (characters).
pub const SNAPSHOT_WARNING_MAX: usize = 1000;

/// `usage.snapshot` of an agent's report (snapshot mode).
fn snapshot_state(s: &Map<String, Value>, errors: &mut FieldErrors) -> Option<SnapshotState> {
    let before = errors.len();
    let last_at = match s.get("lastAt") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => chrono::DateTime::parse_from_rfc3339(t)
            .map(|t| t.with_timezone(&chrono::Utc))
            .map_err(|_| {
                errors.insert(
                    "usage.snapshot.lastAt".into(),
                    "must be an RFC 3339 time".into(),
                )
            })
            .ok(),
        Some(_) => {
            errors.insert(
                "usage.snapshot.lastAt".into(),
                "must be an RFC 3339 time".into(),
            );
            None
        }
    };
    let stored_bytes = match s.get("storedBytes") {
        None | Some(Value::Null) => None,
        Some(v) => v.as_u64().or_else(|| {
            errors.insert(
                "usage.snapshot.storedBytes".into(),
                "must be a whole number of bytes".into(),
            );
            None
        }),
    };
    let interval_seconds = match s.get("intervalSeconds").and_then(Value::as_u64) {
        Some(v) if v >= 1 => v,
        _ => {
            errors.insert(
                "usage.snapshot.intervalSeconds".into(),
                "must be a whole number of seconds, at least 1".into(),
            );
            0
        }
    };
    let warning = match s.get("warning") {
        None | Some(Value::Null) => None,
        Some(Value::String(w)) if w.chars().count() <= SNAPSHOT_WARNING_MAX => Some(w.clone()),
        Some(_) => {
            errors.insert(
                "usage.snapshot.warning".into(),
                format!("must be text of at most {SNAPSHOT_WARNING_MAX} characters"),
            );
            None
        }
    };
    (errors.len() == before).then_some(SnapshotState {
        last_at,
        stored_bytes,
        interval_seconds,
        warning,
    })
}

/// Sign-up input, normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct SignUp {
    pub email: String,
    pub password: String,
    pub name: String,
    /// `setupCode`: what the first account's sign-up gives when the server
    /// has a setup code.
    pub setup_code: Option<String>,
}

/// Credentials for sign-in and token requests, email normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct Credentials {
    pub email: String,
    pub password: String,
}

/// Lower-cased, trimmed; a plain shape check (one `@`, a dot in the domain).
pub fn normalise_email(raw: &str) -> Result<String, String> {
    let email = raw.trim().to_lowercase();
    if email.len() > EMAIL_MAX {
        return Err(format!("must be at most {EMAIL_MAX} characters"));
    }
    let Some((local, domain)) = email.split_once('@') else {
        return Err("must be an email address".into());
    };
    let ok = !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(email)
    } else {
        Err("must be an email address".into())
    }
}

/// The least zxcvbn score a new password needs: `Three`, more than 10^10
/// guesses, even for a guesser who knows the person's email and name.
const PASSWORD_MIN_SCORE: zxcvbn::Score = zxcvbn::Score::Three;

/// A new password (sign-up, change), NIST SP 800-63B style: a length range,
/// no composition rules, and refused when it is common, breached-looking or
/// built from the person's own details. The check is offline: zxcvbn (the
/// `zxcvbn` crate, a port of Dropbox's estimator) matches it against its
/// bundled lists — common passwords from leaked sets, English words, names —
/// and keyboard patterns, repeats, sequences and dates. `context`: the
/// person's email and name, and the product's name.
pub fn password_rule(password: &str, context: &[&str]) -> Result<(), String> {
    password_length(password)?;
    password_strength(password, context)
}

/// The length part of `password_rule`.
pub fn password_length(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if !(PASSWORD_MIN..=PASSWORD_MAX).contains(&n) {
        return Err(format!(
            "must be {PASSWORD_MIN} to {PASSWORD_MAX} characters"
        ));
    }
    Ok(())
}

/// The strength part of `password_rule` (zxcvbn). Where it runs is the
/// caller's choice (`auth::strength`): the validators below take its verdict.
pub fn password_strength(password: &str, context: &[&str]) -> Result<(), String> {
    // An email counts whole and by its local part ("ada.lovelace1815").
    let mut inputs: Vec<&str> = context.to_vec();
    inputs.extend(
        context
            .iter()
            .filter_map(|c| c.split_once('@').map(|(local, _)| local)),
    );
    inputs.push("dev8");
    let entropy = zxcvbn::zxcvbn(password, &inputs);
    if entropy.score() >= PASSWORD_MIN_SCORE {
        return Ok(());
    }
    let why = entropy
        .feedback()
        .and_then(|f| f.warning())
        .map(|w| w.to_string().trim_end_matches('.').to_lowercase())
        .unwrap_or_else(|| "it is easy to guess".into());
    Err(format!(
        "is too easy to guess ({why}): use a longer one, e.g. a few unrelated words"
    ))
}

/// The strings a sign-up's password is judged against: its email and name
/// as given (`auth::strength` estimates with them before `sign_up`).
pub fn sign_up_context(body: &Map<String, Value>) -> [&str; 2] {
    ["email", "name"].map(|k| body.get(k).and_then(Value::as_str).unwrap_or_default())
}

/// `strength`: the estimate's verdict on the body's password (for this
/// person, `sign_up_context`), reported on the `password` field beside any
/// other field's error.
pub fn sign_up(
    body: &Map<String, Value>,
    strength: Result<(), String>,
) -> Result<SignUp, FieldErrors> {
    let mut f = Fields::new(body, &["email", "password", "name", "setupCode"]);
    let setup_code = f.string("setupCode", false).map(str::to_string);
    let email = f
        .string("email", true)
        .and_then(|raw| match normalise_email(raw) {
            Ok(e) => Some(e),
            Err(e) => {
                f.error("email", e);
                None
            }
        });
    let password =
        f.string("password", true)
            .and_then(|p| match password_length(p).and(strength) {
                Ok(()) => Some(p.to_string()),
                Err(e) => {
                    f.error("password", e);
                    None
                }
            });
    let name = match f.string("name", false) {
        Some(raw) => {
            let n = raw.trim();
            if n.chars().count() > USER_NAME_MAX || n.chars().any(char::is_control) {
                f.error(
                    "name",
                    format!("must be at most {USER_NAME_MAX} printable characters"),
                );
            }
            n.to_string()
        }
        None => String::new(),
    };
    let value = match (email, password) {
        (Some(email), Some(password)) => {
            let name = if name.is_empty() {
                email.split('@').next().unwrap_or_default().to_string()
            } else {
                name
            };
            Some(SignUp {
                email,
                password,
                name,
                setup_code,
            })
        }
        _ => None,
    };
    f.finish(value)
}

/// `POST /api/auth/password`: the current password (shape only; whether it
/// is right is the route's question) and a new one that passes
/// `password_rule` for this person (`strength`: the estimate's verdict on
/// `newPassword` with their email and name).
#[derive(Debug, Clone, PartialEq)]
pub struct PasswordChange {
    pub current_password: String,
    pub new_password: String,
}

pub fn password_change(
    body: &Map<String, Value>,
    strength: Result<(), String>,
) -> Result<PasswordChange, FieldErrors> {
    let mut f = Fields::new(body, &["currentPassword", "newPassword"]);
    let current = f.string("currentPassword", true).map(str::to_string);
    if let Some(p) = &current
        && p.chars().count() > PASSWORD_MAX
    {
        f.error("currentPassword", "is wrong");
    }
    let new = f
        .string("newPassword", true)
        .and_then(|p| match password_length(p).and(strength) {
            Ok(()) => Some(p.to_string()),
            Err(e) => {
                f.error("newPassword", e);
                None
            }
        });
    if let (Some(c), Some(n)) = (&current, &new)
        && c == n
    {
        f.error("newPassword", "must differ from the current password");
    }
    let value = current
        .zip(new)
        .map(|(current_password, new_password)| PasswordChange {
            current_password,
            new_password,
        });
    f.finish(value)
}

/// Sign-in and token requests: only shape is checked; wrong values are a 401.
pub fn credentials(body: &Map<String, Value>) -> Result<Credentials, FieldErrors> {
    let mut f = Fields::new(body, &["email", "password"]);
    let email = f.string("email", true).map(|e| e.trim().to_lowercase());
    let password = f.string("password", true).map(str::to_string);
    if let Some(p) = &password
        && p.chars().count() > PASSWORD_MAX
    {
        f.error(
            "password",
            format!("must be at most {PASSWORD_MAX} characters"),
        );
    }
    let value = email
        .zip(password)
        .map(|(email, password)| Credentials { email, password });
    f.finish(value)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_lower_case_ulids() {
        assert!(is_id(&crate::domain::new_id()));
        assert!(is_id("01j0000000000000000000000a"));
        assert!(is_id("7zzzzzzzzzzzzzzzzzzzzzzzzz"));
        for bad in [
            "",
            "01j000000000000000000000",
            "01j0000000000000000000000a0",
            "01J0000000000000000000000A",
            "81j0000000000000000000000a",
            "01j000000000000000000000ua",
            "01j000000000000000000000la",
            "01j00000000000000000000/.a",
        ] {
            assert!(!is_id(bad), "{bad}");
        }
    }

    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn repository_is_checked_field_by_field() {
        let body =
            |r: Value| obj(json!({"name":"a","baseImage":"node","preset":"small","repository":r}));
        let ok = new_environment(
            &body(json!({"url":"https://github.com/dev8/app.git","ref":"v1"})),
            30,
            UrlRules::Public,
        )
        .unwrap();
        let repo = ok.repository.unwrap();
        assert_eq!(
            (repo.url.as_str(), repo.git_ref.as_deref()),
            ("https://github.com/dev8/app.git", Some("v1"))
        );
        for (bad, field) in [
            (json!("https://github.com/dev8/app"), "repository"),
            (json!({}), "repository.url"),
            (json!({"url":"http://github.com/a/b"}), "repository.url"),
            (
                json!({"url":"https://github.com/a/b","ref":"a..b"}),
                "repository.ref",
            ),
            (
                json!({"url":"https://github.com/a/b","ref":7}),
                "repository.ref",
            ),
            (
                json!({"url":"https://github.com/a/b","token":"x"}),
                "repository.token",
            ),
        ] {
            let errs = new_environment(&body(bad.clone()), 30, UrlRules::Public).unwrap_err();
            assert!(errs.contains_key(field), "{bad}: {errs:?}");
        }
    }

    #[test]
    fn dotfiles_setting_takes_a_url_or_null() {
        let rules = UrlRules::Public;
        assert_eq!(
            account_settings(
                &obj(json!({"dotfilesRepository":"https://github.com/a/dotfiles"})),
                rules
            )
            .unwrap(),
            Some("https://github.com/a/dotfiles".to_string())
        );
        assert_eq!(
            account_settings(&obj(json!({"dotfilesRepository":null})), rules).unwrap(),
            None
        );
        for bad in [
            json!({}),
            json!({"dotfilesRepository":"https://localhost/x"}),
            json!({"dotfilesRepository":1}),
        ] {
            assert!(
                account_settings(&obj(bad.clone()), rules)
                    .unwrap_err()
                    .contains_key("dotfilesRepository"),
                "{bad}"
            );
        }
    }

    #[test]
    fn preset_expands_to_sizes() {
        let e = new_environment(
            &obj(json!({"name":" app ","baseImage":"python","preset":"medium"})),
            30,
            UrlRules::Public,
        )
        .unwrap();
        assert_eq!(
            (e.name.as_str(), e.cpu_cores, e.memory_gb, e.storage_gb),
            ("app", 2, 4, 50)
        );
        assert_eq!(e.idle_timeout_minutes, 30);
    }

    #[test]
    fn explicit_sizes_are_bounded() {
        let errs = new_environment(
            &obj(json!({"name":"a","baseImage":"node","cpuCores":9,"memoryGB":1,"storageGB":201})),
            30,
            UrlRules::Public,
        )
        .unwrap_err();
        assert_eq!(errs.len(), 3, "{errs:?}");
        let ok = new_environment(
            &obj(json!({"name":"a","baseImage":"golang","cpuCores":8,"memoryGB":16,"storageGB":200,"idleTimeoutMinutes":480})),
            30,
            UrlRules::Public,
        )
        .unwrap();
        assert_eq!(
            (
                ok.cpu_cores,
                ok.memory_gb,
                ok.storage_gb,
                ok.idle_timeout_minutes
            ),
            (8, 16, 200, 480)
        );
    }

    #[test]
    fn every_problem_is_reported_by_field() {
        let errs = new_environment(
            &obj(json!({"name":"","baseImage":"ruby","preset":"huge","userId":"x","status":"running","colour":"red","idleTimeoutMinutes":4})),
            30,
            UrlRules::Public,
        )
        .unwrap_err();
        for field in [
            "name",
            "baseImage",
            "preset",
            "userId",
            "status",
            "colour",
            "idleTimeoutMinutes",
        ] {
            assert!(errs.contains_key(field), "missing {field} in {errs:?}");
        }
        assert!(errs["userId"].contains("set by the server"));
        assert!(errs["colour"].contains("not a known field"));
    }

    #[test]
    fn names_are_trimmed_printable_and_short() {
        assert_eq!(environment_name("  x  ").unwrap(), "x");
        assert!(environment_name(&"a".repeat(50)).is_ok());
        assert!(environment_name(&"a".repeat(51)).is_err());
        assert!(environment_name("a\u{0007}b").is_err());
        assert!(environment_name("a\u{200B}b").is_err());
        assert!(environment_name("   ").is_err());
        assert!(environment_name("café ☕").is_ok());
    }

    #[test]
    fn preset_and_sizes_together_are_refused() {
        let errs = new_environment(
            &obj(json!({"name":"a","baseImage":"node","preset":"small","cpuCores":2})),
            30,
            UrlRules::Public,
        )
        .unwrap_err();
        assert!(errs.contains_key("cpuCores"));
    }

    #[test]
    fn wrong_types_are_field_errors() {
        let errs = new_environment(
            &obj(json!({"name":5,"baseImage":"node","preset":"small","idleTimeoutMinutes":"10"})),
            30,
            UrlRules::Public,
        )
        .unwrap_err();
        assert!(errs.contains_key("name") && errs.contains_key("idleTimeoutMinutes"));
    }

    #[test]
    fn patch_needs_something_valid() {
        assert!(environment_patch(&obj(json!({}))).is_err());
        assert!(
            environment_patch(&obj(json!({"status":"running"})))
                .unwrap_err()
                .contains_key("status")
        );
        let p = environment_patch(&obj(json!({"idleTimeoutMinutes":5}))).unwrap();
        assert_eq!(p.idle_timeout_minutes, Some(5));
        assert!(environment_patch(&obj(json!({"idleTimeoutMinutes":481}))).is_err());
    }

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            normalise_email(" Ada@Example.COM ").unwrap(),
            "ada@example.com"
        );
        for bad in [
            "", "ada", "ada@", "@x.io", "a@b", "a@@b.io", "a b@c.io", "a@.io",
        ] {
            assert!(normalise_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sign_up_checks_password_length() {
        assert!(sign_up(&obj(json!({"email":"a@b.io","password":"1234567"})), Ok(())).is_err());
        assert!(
            sign_up(
                &obj(json!({"email":"a@b.io","password":"x".repeat(129)})),
                Ok(())
            )
            .is_err()
        );
        let s = sign_up(
            &obj(json!({"email":"A@b.io","password":"correct-horse-battery"})),
            Ok(()),
        )
        .unwrap();
        assert_eq!((s.email.as_str(), s.name.as_str()), ("a@b.io", "a"));
    }

    #[test]
    fn a_weak_verdict_is_the_password_fields_error_beside_the_others() {
        let body = obj(json!({"email":"nope","password":"password12345","name":"Ada"}));
        assert_eq!(sign_up_context(&body), ["nope", "Ada"]);
        let errs = sign_up(&body, Err("is too easy to guess".into())).unwrap_err();
        assert_eq!(errs["password"], "is too easy to guess");
        assert!(errs.contains_key("email"));
        // The length is judged here whatever the verdict.
        let short = obj(json!({"email":"a@b.io","password":"1234567"}));
        assert!(sign_up(&short, Ok(())).unwrap_err()["password"].starts_with("must be"));
    }

    #[test]
    fn common_and_personal_passwords_are_refused() {
        for weak in [
            "password",
            "12345678",
            "qwertyuiop",
            "iloveyou1",
            "Password1!",
        ] {
            let err = password_rule(weak, &[]).expect_err(weak);
            assert!(err.starts_with("is too easy to guess"), "{weak}: {err}");
        }
        // Built from the person's own email: refused for them only.
        assert!(password_rule("adalovelace1815", &["adalovelace1815@example.com"]).is_err());
        for strong in [
            "correct-horse-battery",
            "correct horse battery staple",
            "vivid-otter-marble-7",
        ] {
            assert_eq!(
                password_rule(strong, &["ada@example.com", "Ada"]),
                Ok(()),
                "{strong}"
            );
        }
    }
}
