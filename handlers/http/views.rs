//! What the API shows of domain records (internal fields stay inside).

use crate::domain::{
    Action, DesiredState, Environment, HomeMode, IdleRules, Progress, Repository, Status,
    StopCause, Usage, User,
};
use chrono::{DateTime, Utc};
use serde::Serialize;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserView<'a> {
    pub id: &'a str,
    pub email: &'a str,
    pub name: &'a str,
    pub created_at: DateTime<Utc>,
    /// False while the account has not confirmed its address (it can do
    /// nothing but confirm, ask for a new link, sign out, delete itself).
    pub email_confirmed: bool,
}

impl<'a> From<&'a User> for UserView<'a> {
    fn from(u: &'a User) -> Self {
        UserView {
            id: &u.id,
            email: &u.email,
            name: &u.name,
            created_at: u.created_at,
            email_confirmed: u.is_confirmed(),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentView<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub status: Status,
    pub desired_state: DesiredState,
    pub status_reason: Option<&'a str>,
    pub stop_cause: Option<StopCause>,
    pub base_image: &'static str,
    pub cpu_cores: u8,
    #[serde(rename = "memoryGB")]
    pub memory_gb: u8,
    #[serde(rename = "storageGB")]
    pub storage_gb: u16,
    pub ide_url: Option<&'a str>,
    pub idle_timeout_minutes: u16,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_activity_at: DateTime<Utc>,
    #[serde(flatten)]
    pub idle: IdleView,
    pub actions: Vec<Action>,
    /// The agent's latest measurement; null unless running and reported.
    pub usage: Option<&'a Usage>,
    /// The step a create or start is at; null otherwise.
    pub progress: Option<&'a Progress>,
    /// The repository cloned on the first start (`{url, ref}`); null if none.
    pub repository: Option<&'a Repository>,
    /// Why that clone failed; null unless it did.
    pub clone_error: Option<&'a str>,
    /// Where the home lives while it runs: `share` or `snapshot`.
    pub home_mode: HomeMode,
    /// Snapshot mode: a snapshot is taken this often while it runs (what a
    /// crash may lose); null in share mode.
    pub snapshot_interval_minutes: Option<u64>,
}

/// When the environment stops for inactivity unless used, and when the
/// person is warned; both `null` unless it is meant to run. The environment
/// JSON and the answer to an agent's activity report carry it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IdleView {
    pub idle_stop_at: Option<DateTime<Utc>>,
    pub idle_warning_at: Option<DateTime<Utc>>,
}

impl IdleView {
    pub fn new(e: &Environment, rules: IdleRules) -> Self {
        IdleView {
            idle_stop_at: e.idle_stop_at(rules),
            idle_warning_at: e.idle_warning_at(rules),
        }
    }
}

impl<'a> EnvironmentView<'a> {
    /// `policy` gives how idle timeouts are measured (`Policy::idle`) and
    /// the snapshot interval.
    pub fn new(e: &'a Environment, policy: &crate::platform::Policy) -> Self {
        let rules = policy.idle;
        EnvironmentView {
            id: &e.id,
            name: &e.name,
            status: e.status,
            desired_state: e.desired_state,
            status_reason: e.status_reason.as_deref(),
            stop_cause: e.stop_cause,
            base_image: e.base_image.id(),
            cpu_cores: e.cpu_cores,
            memory_gb: e.memory_gb,
            storage_gb: e.storage_gb,
            ide_url: e.ide_url.as_deref(),
            idle_timeout_minutes: e.idle_timeout_minutes,
            created_at: e.created_at,
            updated_at: e.updated_at,
            last_activity_at: e.last_activity_at,
            idle: IdleView::new(e, rules),
            actions: e.actions(),
            usage: e.usage.as_ref().filter(|_| e.status == Status::Running),
            progress: e.progress.as_ref().filter(|_| e.status.shows_progress()),
            repository: e.repository.as_ref(),
            clone_error: e.clone_error.as_deref(),
            home_mode: e.home_mode,
            snapshot_interval_minutes: (e.home_mode == HomeMode::Snapshot)
                .then(|| policy.snapshot_interval.as_secs().div_ceil(60)),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusView<'a> {
    pub status: Status,
    pub desired_state: DesiredState,
    pub status_reason: Option<&'a str>,
    pub ide_url: Option<&'a str>,
    pub actions: Vec<Action>,
    pub progress: Option<&'a Progress>,
}

impl<'a> From<&'a Environment> for StatusView<'a> {
    fn from(e: &'a Environment) -> Self {
        StatusView {
            status: e.status,
            desired_state: e.desired_state,
            status_reason: e.status_reason.as_deref(),
            ide_url: e.ide_url.as_deref(),
            actions: e.actions(),
            progress: e.progress.as_ref().filter(|_| e.status.shows_progress()),
        }
    }
}
