//! The audit log: one record per security-relevant action, written through
//! the `Store`. Request handlers call `record` (fresh ids); jobs call
//! `record_job`, whose ids are derived from the environment, the event and a
//! token that is stable across redeliveries, so a repeated job never writes
//! a second record. Records hold no secrets: no passwords, codes or tokens.

use crate::domain::{AuditOutcome, AuditRecord, DesiredState, new_id};
use crate::platform::Platform;
use sha2::{Digest, Sha256};
use std::net::IpAddr;

/// The partition for failures that belong to no known account (a sign-in
/// with an unknown email). `GET /api/audit` never returns it.
pub const ANONYMOUS: &str = "anonymous";

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    SignUp,
    SignIn,
    SignOut,
    EmailConfirm,
    PasswordChange,
    IdentityLink,
    IdentityUnlink,
    EnvironmentCreate,
    EnvironmentStart,
    EnvironmentStop,
    EnvironmentDelete,
    IdeOpen,
    IdleStop,
    JobFailure,
    SecretSet,
    SecretDelete,
    DotfilesChange,
    CloneFailed,
    FinalSnapshotMissed,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::SignUp => "auth.signup",
            Action::SignIn => "auth.signin",
            Action::SignOut => "auth.signout",
            Action::EmailConfirm => "auth.confirm",
            Action::PasswordChange => "auth.password",
            Action::IdentityLink => "identity.link",
            Action::IdentityUnlink => "identity.unlink",
            Action::EnvironmentCreate => "environment.create",
            Action::EnvironmentStart => "environment.start",
            Action::EnvironmentStop => "environment.stop",
            Action::EnvironmentDelete => "environment.delete",
            Action::IdeOpen => "ide.open",
            Action::IdleStop => "environment.idle_stop",
            Action::JobFailure => "job.failure",
            Action::SecretSet => "secret.set",
            Action::SecretDelete => "secret.deleted",
            Action::DotfilesChange => "settings.dotfiles",
            Action::CloneFailed => "environment.clone_failed",
            Action::FinalSnapshotMissed => "environment.final_snapshot_missed",
        }
    }
}

/// One entry to write.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub user_id: &'a str,
    pub action: Action,
    pub outcome: AuditOutcome,
    pub environment_id: Option<&'a str>,
    pub client: Option<IpAddr>,
    pub detail: Option<String>,
    pub idle_timeout_minutes: Option<u16>,
    pub reason: Option<String>,
    pub desired_state: Option<DesiredState>,
}

impl<'a> Entry<'a> {
    /// A successful action by `user_id`.
    pub fn ok(user_id: &'a str, action: Action) -> Self {
        Entry {
            user_id,
            action,
            outcome: AuditOutcome::Success,
            environment_id: None,
            client: None,
            detail: None,
            idle_timeout_minutes: None,
            reason: None,
            desired_state: None,
        }
    }

    pub fn failed(mut self) -> Self {
        self.outcome = AuditOutcome::Failure;
        self
    }

    pub fn env(mut self, id: &'a str) -> Self {
        self.environment_id = Some(id);
        self
    }

    pub fn from(mut self, client: Option<IpAddr>) -> Self {
        self.client = client;
        self
    }

    pub fn detail(mut self, d: impl Into<String>) -> Self {
        self.detail = Some(d.into());
        self
    }

    /// An idle stop: the timeout it honoured.
    pub fn idle_timeout(mut self, minutes: u16) -> Self {
        self.idle_timeout_minutes = Some(minutes);
        self
    }

    /// A failed job: its cause (the environment's `statusReason`) and what
    /// it was heading for, so the history can say what failed and what to do.
    pub fn cause(mut self, reason: impl Into<String>, toward: DesiredState) -> Self {
        self.reason = Some(reason.into());
        self.desired_state = Some(toward);
        self
    }

    fn into_record(self, id: String, p: &Platform) -> AuditRecord {
        AuditRecord {
            id,
            user_id: self.user_id.to_string(),
            at: p.clock.now(),
            action: self.action.as_str().to_string(),
            outcome: self.outcome,
            environment_id: self.environment_id.map(str::to_string),
            client_address: self.client.map(|a| a.to_string()),
            detail: self.detail,
            idle_timeout_minutes: self.idle_timeout_minutes,
            reason: self.reason,
            desired_state: self.desired_state,
        }
    }
}

/// Write a record for a request (a fresh id). The action has happened
/// already, so a store failure is logged rather than failing the request.
pub async fn record(p: &Platform, entry: Entry<'_>) {
    let rec = entry.into_record(new_id(), p);
    if let Err(e) = p.store.insert_audit(&rec).await {
        tracing::error!(action = %rec.action, user = %rec.user_id, error = %e, "audit record not written");
    }
}

/// The deterministic id of a job's record: the same environment, event and
/// token (a queue message id, a record's ETag) always give the same id.
pub fn job_record_id(environment_id: &str, action: Action, token: &str) -> String {
    let mut h = Sha256::new();
    for part in [environment_id, action.as_str(), token] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Write a record for a job with a deterministic id (idempotent). Errors are
/// returned so the job's delivery can be retried.
pub async fn record_job(p: &Platform, entry: Entry<'_>, token: &str) -> anyhow::Result<()> {
    let id = job_record_id(entry.environment_id.unwrap_or(""), entry.action, token);
    let rec = entry.into_record(id, p);
    p.store.insert_audit(&rec).await?;
    Ok(())
}
