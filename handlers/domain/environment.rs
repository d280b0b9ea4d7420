//! The environment record and its lifecycle. Every status change the API or
//! the reconcile job makes goes through a function in this file.

use super::Template;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// The observed status, written by the reconcile job (and optimistically by
/// the API when it asks for a change).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Starting,
    Running,
    Stopping,
    Stopped,
    Error,
    Deleting,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Creating,
        Status::Starting,
        Status::Running,
        Status::Stopping,
        Status::Stopped,
        Status::Error,
        Status::Deleting,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Starting => "starting",
            Status::Running => "running",
            Status::Stopping => "stopping",
            Status::Stopped => "stopped",
            Status::Error => "error",
            Status::Deleting => "deleting",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Work is in progress: the reconcile job keeps coming back.
    pub fn is_transitional(self) -> bool {
        matches!(
            self,
            Status::Creating | Status::Starting | Status::Stopping | Status::Deleting
        )
    }
}

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DesiredState {
    Running,
    Stopped,
    Deleted,
}

/// Why the environment last stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StopCause {
    User,
    Idle,
}

/// An exclusive claim on the record by one reconcile delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    pub owner: String,
    pub until: DateTime<Utc>,
}

/// The one delayed reconcile message that is allowed to exist for a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Chain {
    pub token: String,
    pub due_at: DateTime<Utc>,
}

/// The stored environment document (same shape in SQLite and Cosmos).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Environment {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub status: Status,
    pub desired_state: DesiredState,
    pub status_reason: Option<String>,
    #[serde(default)]
    pub stop_cause: Option<StopCause>,
    pub base_image: Template,
    pub cpu_cores: u8,
    #[serde(rename = "memoryGB")]
    pub memory_gb: u8,
    #[serde(rename = "storageGB")]
    pub storage_gb: u16,
    pub ide_url: Option<String>,
    pub idle_timeout_minutes: u16,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_activity_at: DateTime<Utc>,
    /// When `status` last changed: the stuck-status sweep measures from here.
    pub status_changed_at: DateTime<Utc>,
    /// Has the environment ever been running? Decides `creating` vs `starting`.
    #[serde(default)]
    pub provisioned: bool,
    #[serde(default)]
    pub lease: Option<Lease>,
    #[serde(default)]
    pub chain: Option<Chain>,
    /// Consecutive failed reconcile attempts (deletion backoff, error reasons).
    #[serde(default)]
    pub failures: u32,
    /// Id of the agent token currently valid for this environment; rotated on
    /// every start so a stopped environment's agent can no longer report.
    #[serde(default)]
    pub agent_token_id: Option<String>,
    /// Provider references owned by the compute backend (opaque here).
    #[serde(default)]
    pub compute: serde_json::Value,
}

/// Parameters for a new environment, already validated.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEnvironment {
    pub name: String,
    pub base_image: Template,
    pub cpu_cores: u8,
    pub memory_gb: u8,
    pub storage_gb: u16,
    pub idle_timeout_minutes: u16,
}

/// An action a user may take now; the dashboard draws its buttons from these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Open,
    Start,
    Stop,
    Delete,
}

/// A requested change that the current state does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("the environment is being deleted")]
    Deleting,
}

/// What the compute backend reports about an environment's resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// Nothing exists (never created, or fully deleted).
    Absent,
    /// Resources are being created or started; not answering yet.
    Starting,
    /// The IDE answers at this URL.
    Running { ide_url: String },
    /// Being stopped.
    Stopping,
    /// Stopped; the workspace is kept.
    Stopped,
    /// Being deleted.
    Deleting,
    /// Failed and will not recover by waiting.
    Failed { reason: String },
}

/// The next call the reconcile job makes to the compute backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Create or start the resources.
    Start,
    Stop,
    Delete,
    /// Nothing to call; wait and look again.
    Wait,
    /// The desired state is reached.
    Done,
    /// Deletion is complete: remove the record.
    Forget,
}

impl Environment {
    pub fn new(id: String, user_id: String, spec: NewEnvironment, now: DateTime<Utc>) -> Self {
        Environment {
            id,
            user_id,
            name: spec.name,
            status: Status::Creating,
            desired_state: DesiredState::Running,
            status_reason: None,
            stop_cause: None,
            base_image: spec.base_image,
            cpu_cores: spec.cpu_cores,
            memory_gb: spec.memory_gb,
            storage_gb: spec.storage_gb,
            ide_url: None,
            idle_timeout_minutes: spec.idle_timeout_minutes,
            created_at: now,
            updated_at: now,
            last_activity_at: now,
            status_changed_at: now,
            provisioned: false,
            lease: None,
            chain: None,
            failures: 0,
            agent_token_id: None,
            compute: serde_json::Value::Null,
        }
    }

    /// The actions the owner may take now.
    pub fn actions(&self) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.desired_state == DesiredState::Deleted {
            return actions;
        }
        let running_wanted = self.desired_state == DesiredState::Running;
        if running_wanted && self.status == Status::Running {
            actions.push(Action::Open);
        }
        let start_underway = running_wanted
            && matches!(
                self.status,
                Status::Creating | Status::Starting | Status::Running
            );
        if !start_underway {
            actions.push(Action::Start);
        }
        if running_wanted {
            actions.push(Action::Stop);
        }
        actions.push(Action::Delete);
        actions
    }

    fn set_status(&mut self, status: Status, now: DateTime<Utc>) {
        if self.status != status {
            self.status = status;
            self.status_changed_at = now;
        }
        self.updated_at = now;
    }

    /// The user (or the API on their behalf) asks for the environment to run.
    /// Starting a running or starting environment changes nothing.
    pub fn request_start(&mut self, now: DateTime<Utc>) -> Result<bool, TransitionError> {
        if self.desired_state == DesiredState::Deleted {
            return Err(TransitionError::Deleting);
        }
        if self.desired_state == DesiredState::Running && self.status != Status::Error {
            return Ok(false);
        }
        self.desired_state = DesiredState::Running;
        self.stop_cause = None;
        self.status_reason = None;
        self.failures = 0;
        let next = if self.provisioned {
            Status::Starting
        } else {
            Status::Creating
        };
        if !matches!(
            self.status,
            Status::Creating | Status::Starting | Status::Running
        ) {
            self.set_status(next, now);
        }
        // A fresh start is activity: an environment must not be idle-stopped
        // the moment it comes up.
        self.last_activity_at = now;
        self.chain = None;
        self.updated_at = now;
        Ok(true)
    }

    /// Ask for the environment to stop (keeping its workspace).
    pub fn request_stop(
        &mut self,
        cause: StopCause,
        now: DateTime<Utc>,
    ) -> Result<bool, TransitionError> {
        if self.desired_state == DesiredState::Deleted {
            return Err(TransitionError::Deleting);
        }
        if self.desired_state == DesiredState::Stopped {
            return Ok(false);
        }
        self.desired_state = DesiredState::Stopped;
        self.stop_cause = Some(cause);
        self.status_reason = match cause {
            StopCause::User => None,
            StopCause::Idle => Some(format!(
                "Stopped after {} minutes without activity",
                self.idle_timeout_minutes
            )),
        };
        self.failures = 0;
        if self.status != Status::Stopped {
            self.set_status(Status::Stopping, now);
        }
        self.chain = None;
        self.updated_at = now;
        Ok(true)
    }

    /// Ask for deletion. Always allowed, from every status; repeating it is a no-op.
    pub fn request_delete(&mut self, now: DateTime<Utc>) -> bool {
        if self.desired_state == DesiredState::Deleted {
            return false;
        }
        self.desired_state = DesiredState::Deleted;
        self.status_reason = None;
        self.failures = 0;
        self.set_status(Status::Deleting, now);
        self.chain = None;
        true
    }

    /// Decide the next step from the desired state and what compute observes,
    /// and write the status that follows from the observation.
    pub fn plan(&mut self, observed: &Observed, now: DateTime<Utc>) -> Step {
        match self.desired_state {
            DesiredState::Running => match observed {
                Observed::Running { ide_url } => {
                    if self.status != Status::Running {
                        // Coming up counts as activity for the idle clock.
                        self.last_activity_at = self.last_activity_at.max(now);
                    }
                    self.set_status(Status::Running, now);
                    self.provisioned = true;
                    self.ide_url = Some(ide_url.clone());
                    self.status_reason = None;
                    self.failures = 0;
                    Step::Done
                }
                Observed::Failed { reason } => {
                    self.fail(reason.clone(), now);
                    Step::Done
                }
                Observed::Starting => {
                    self.ide_url = None;
                    if self.status != Status::Error {
                        let s = if self.provisioned {
                            Status::Starting
                        } else {
                            Status::Creating
                        };
                        if !matches!(self.status, Status::Creating | Status::Starting) {
                            self.set_status(s, now);
                        }
                    }
                    Step::Wait
                }
                Observed::Absent | Observed::Stopped => {
                    self.ide_url = None;
                    if self.status == Status::Error {
                        // An error is final until the user starts again.
                        return Step::Done;
                    }
                    if self.status == Status::Running || self.status == Status::Stopped {
                        // Drift or a crash: the environment went away under us.
                        self.set_status(Status::Starting, now);
                    }
                    Step::Start
                }
                Observed::Stopping | Observed::Deleting => Step::Wait,
            },
            DesiredState::Stopped => {
                self.ide_url = None;
                match observed {
                    Observed::Absent | Observed::Stopped | Observed::Failed { .. } => {
                        self.set_status(Status::Stopped, now);
                        self.agent_token_id = None;
                        self.failures = 0;
                        Step::Done
                    }
                    Observed::Running { .. } | Observed::Starting => {
                        self.set_status(Status::Stopping, now);
                        Step::Stop
                    }
                    Observed::Stopping | Observed::Deleting => {
                        self.set_status(Status::Stopping, now);
                        Step::Wait
                    }
                }
            }
            DesiredState::Deleted => {
                self.ide_url = None;
                self.set_status(Status::Deleting, now);
                match observed {
                    Observed::Absent => Step::Forget,
                    Observed::Deleting => Step::Wait,
                    _ => Step::Delete,
                }
            }
        }
    }

    /// Mark the environment failed with a reason a person can act on.
    pub fn fail(&mut self, reason: String, now: DateTime<Utc>) {
        if self.desired_state == DesiredState::Deleted {
            // Deletion never ends in error; it is retried until it finishes.
            self.status_reason = Some(reason);
            self.updated_at = now;
            return;
        }
        self.ide_url = None;
        self.set_status(Status::Error, now);
        self.status_reason = Some(reason);
        self.chain = None;
    }

    /// Is the idle timeout over? Only running environments that should run idle out.
    pub fn is_idle(&self, now: DateTime<Utc>) -> bool {
        self.desired_state == DesiredState::Running
            && self.status == Status::Running
            && now - self.last_activity_at
                >= Duration::minutes(i64::from(self.idle_timeout_minutes))
    }

    /// Is another delivery holding the lease right now?
    pub fn leased_by_other(&self, owner: &str, now: DateTime<Utc>) -> bool {
        matches!(&self.lease, Some(l) if l.owner != owner && l.until > now)
    }

    /// How long a transitional status may last before the sweep calls it stuck.
    pub fn deadline(&self) -> Option<Duration> {
        match self.status {
            Status::Creating => Some(Duration::minutes(15)),
            Status::Starting => Some(Duration::minutes(10)),
            Status::Stopping => Some(Duration::minutes(10)),
            // Deletion is never given up on.
            Status::Deleting => None,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(now: DateTime<Utc>) -> Environment {
        Environment::new(
            "e1".into(),
            "u1".into(),
            NewEnvironment {
                name: "app".into(),
                base_image: Template::Node,
                cpu_cores: 1,
                memory_gb: 2,
                storage_gb: 20,
                idle_timeout_minutes: 30,
            },
            now,
        )
    }

    fn running(now: DateTime<Utc>) -> Environment {
        let mut e = env(now);
        e.plan(
            &Observed::Running {
                ide_url: "http://x/".into(),
            },
            now,
        );
        e
    }

    #[test]
    fn create_runs_through_creating_to_running() {
        let now = Utc::now();
        let mut e = env(now);
        assert_eq!(e.status, Status::Creating);
        assert_eq!(e.plan(&Observed::Absent, now), Step::Start);
        assert_eq!(e.status, Status::Creating);
        assert_eq!(e.plan(&Observed::Starting, now), Step::Wait);
        assert_eq!(e.status, Status::Creating);
        assert_eq!(
            e.plan(
                &Observed::Running {
                    ide_url: "u".into()
                },
                now
            ),
            Step::Done
        );
        assert_eq!(e.status, Status::Running);
        assert_eq!(e.ide_url.as_deref(), Some("u"));
        assert!(e.provisioned);
    }

    #[test]
    fn restart_after_stop_is_starting_not_creating() {
        let now = Utc::now();
        let mut e = running(now);
        assert!(e.request_stop(StopCause::User, now).unwrap());
        assert_eq!(e.status, Status::Stopping);
        assert_eq!(
            e.plan(
                &Observed::Running {
                    ide_url: "u".into()
                },
                now
            ),
            Step::Stop
        );
        assert_eq!(e.ide_url, None);
        assert_eq!(e.plan(&Observed::Stopped, now), Step::Done);
        assert_eq!(e.status, Status::Stopped);
        assert!(e.request_start(now).unwrap());
        assert_eq!(e.status, Status::Starting);
        assert_eq!(e.plan(&Observed::Stopped, now), Step::Start);
        assert_eq!(e.status, Status::Starting);
    }

    #[test]
    fn start_and_stop_are_idempotent_but_refused_after_delete() {
        let now = Utc::now();
        let mut e = running(now);
        assert!(!e.request_start(now).unwrap());
        assert!(e.request_stop(StopCause::User, now).unwrap());
        assert!(!e.request_stop(StopCause::User, now).unwrap());
        assert!(e.request_delete(now));
        assert!(!e.request_delete(now));
        assert_eq!(e.request_start(now), Err(TransitionError::Deleting));
        assert_eq!(
            e.request_stop(StopCause::User, now),
            Err(TransitionError::Deleting)
        );
    }

    #[test]
    fn deletion_from_error_finishes() {
        let now = Utc::now();
        let mut e = env(now);
        e.fail("image pull failed".into(), now);
        assert_eq!(e.status, Status::Error);
        assert!(e.request_delete(now));
        assert_eq!(e.status, Status::Deleting);
        assert_eq!(
            e.plan(&Observed::Failed { reason: "x".into() }, now),
            Step::Delete
        );
        assert_eq!(e.plan(&Observed::Deleting, now), Step::Wait);
        assert_eq!(e.plan(&Observed::Absent, now), Step::Forget);
        // A failure while deleting never turns into `error`.
        e.fail("boom".into(), now);
        assert_eq!(e.status, Status::Deleting);
    }

    #[test]
    fn error_is_final_until_started_again() {
        let now = Utc::now();
        let mut e = env(now);
        e.fail("no capacity".into(), now);
        assert_eq!(e.plan(&Observed::Absent, now), Step::Done);
        assert_eq!(e.status, Status::Error);
        assert!(e.request_start(now).unwrap());
        assert_eq!(e.status, Status::Creating);
        assert_eq!(e.status_reason, None);
        assert_eq!(e.plan(&Observed::Absent, now), Step::Start);
    }

    #[test]
    fn vanished_running_environment_is_restarted() {
        let now = Utc::now();
        let mut e = running(now);
        assert_eq!(e.plan(&Observed::Absent, now), Step::Start);
        assert_eq!(e.status, Status::Starting);
        assert_eq!(e.ide_url, None);
    }

    #[test]
    fn actions_follow_the_state() {
        let now = Utc::now();
        let mut e = env(now);
        assert_eq!(e.actions(), vec![Action::Stop, Action::Delete]);
        e.plan(
            &Observed::Running {
                ide_url: "u".into(),
            },
            now,
        );
        assert_eq!(
            e.actions(),
            vec![Action::Open, Action::Stop, Action::Delete]
        );
        e.request_stop(StopCause::User, now).unwrap();
        assert_eq!(e.actions(), vec![Action::Start, Action::Delete]);
        e.plan(&Observed::Stopped, now);
        assert_eq!(e.actions(), vec![Action::Start, Action::Delete]);
        e.request_start(now).unwrap();
        e.fail("x".into(), now);
        assert_eq!(
            e.actions(),
            vec![Action::Start, Action::Stop, Action::Delete]
        );
        e.request_delete(now);
        assert!(e.actions().is_empty());
    }

    #[test]
    fn idle_stop_records_its_cause_and_reason() {
        let t0 = Utc::now();
        let e = running(t0);
        assert!(!e.is_idle(t0 + Duration::minutes(29)));
        assert!(e.is_idle(t0 + Duration::minutes(30)));
        let mut e = e;
        e.request_stop(StopCause::Idle, t0).unwrap();
        assert_eq!(e.stop_cause, Some(StopCause::Idle));
        assert!(e.status_reason.as_deref().unwrap().contains("30 minutes"));
        assert!(!e.is_idle(t0 + Duration::days(1)));
    }

    #[test]
    fn status_changed_at_moves_only_on_change() {
        let t0 = Utc::now();
        let mut e = env(t0);
        let t1 = t0 + Duration::seconds(5);
        e.plan(&Observed::Starting, t1);
        assert_eq!(e.status_changed_at, t0);
        e.plan(
            &Observed::Running {
                ide_url: "u".into(),
            },
            t1,
        );
        assert_eq!(e.status_changed_at, t1);
    }

    #[test]
    fn leases_belong_to_one_owner_until_they_expire() {
        let t0 = Utc::now();
        let mut e = env(t0);
        assert!(!e.leased_by_other("a", t0));
        e.lease = Some(Lease {
            owner: "a".into(),
            until: t0 + Duration::seconds(60),
        });
        assert!(!e.leased_by_other("a", t0));
        assert!(e.leased_by_other("b", t0));
        assert!(!e.leased_by_other("b", t0 + Duration::seconds(61)));
    }
}
