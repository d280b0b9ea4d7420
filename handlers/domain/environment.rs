//! The environment record and its lifecycle. Every status change the API or
//! the reconcile job makes goes through a function in this file.

use super::{HomeMode, Progress, Repository, StepNote, Template, Usage, new_id, steps};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// The longest clone error kept on a record (characters).
pub const CLONE_ERROR_MAX: usize = 500;
/// How long a lease protects a compute action.
pub const LEASE: Duration = Duration::minutes(2);
/// A chain whose follow-up is this late is presumed lost (the sweep restarts it).
pub const CHAIN_GRACE: Duration = Duration::seconds(90);
/// A running environment without a follow-up gets a drift check (a
/// reconcile that compares its compute with the record) once in every
/// period of this length, at a moment of the period fixed by its id, so the
/// checks of many environments are spread over the period instead of all
/// coming in every sweep. Drift is noticed within this period plus one
/// sweep interval.
pub const DRIFT_CHECK_EVERY: Duration = Duration::minutes(5);
/// How long a stop in snapshot mode waits for the agent's final snapshot
/// before it stops compute anyway (with a warning in the history): a full
/// snapshot of a few GB takes about a minute (docs/performance.md), so five
/// leave room for a slow upload while a stop still ends well inside the
/// stopping deadline (`deadline`, 10 minutes).
pub const FINAL_SNAPSHOT_WAIT: Duration = Duration::minutes(5);
/// How long a create may stay `creating` before the sweep calls it stuck.
pub const CREATE_DEADLINE: Duration = Duration::minutes(15);
/// How long a start (also a create's retry after an interrupted one) may
/// stay `starting` before the sweep calls it stuck.
pub const START_DEADLINE: Duration = Duration::minutes(10);
/// How long a stop may stay `stopping` before the sweep calls it stuck.
pub const STOP_DEADLINE: Duration = Duration::minutes(10);

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

    /// The record's `progress` means something: a create or start's step,
    /// or a stop saving the home (snapshot mode).
    pub fn shows_progress(self) -> bool {
        matches!(self, Status::Creating | Status::Starting | Status::Stopping)
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

/// How idle timeouts are measured: the length of one of their minutes,
/// and the idle warning's lead in those minutes. A minute lasts a minute,
/// except under the test-only `DEV8_TEST_IDLE_MINUTE_SECONDS`, which
/// shortens it so an end-to-end test can watch a real sweep stop an
/// environment (refused at start-up outside local compute on loopback).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdleRules {
    pub minute: Duration,
    /// `DEV8_IDLE_WARNING_MINUTES`; `None`: 5 minutes or a third of the
    /// timeout, whichever is less.
    pub warning_minutes: Option<u16>,
}

impl Default for IdleRules {
    fn default() -> Self {
        IdleRules {
            minute: Duration::minutes(1),
            warning_minutes: None,
        }
    }
}

impl IdleRules {
    /// `n` of these minutes.
    pub fn minutes(&self, n: u16) -> Duration {
        self.minute * i32::from(n)
    }
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
    /// The latest usage the agent reported; only while running.
    #[serde(default)]
    pub usage: Option<Usage>,
    /// The step a create or start is at; only while creating or starting.
    #[serde(default)]
    pub progress: Option<Progress>,
    /// The repository cloned into the workspace on the first start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<Repository>,
    /// The account's dotfiles repository when the environment was created
    /// (installed on the first start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dotfiles_repository: Option<String>,
    /// Why cloning `repository` failed on the first start, as the agent
    /// reported it; kept (the environment runs on without the clone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clone_error: Option<String>,
    /// Where the home lives while it runs, chosen at create and kept (a
    /// record from before home modes reads as `share`: it has a share;
    /// `share` is not written, so such records stay as they were).
    #[serde(default, skip_serializing_if = "HomeMode::is_share")]
    pub home_mode: HomeMode,
    /// Snapshot mode: when the stop under way first asked the agent for its
    /// final snapshot (the wait is bounded from here); cleared once compute
    /// is stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_snapshot_asked_at: Option<DateTime<Utc>>,
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
    pub repository: Option<Repository>,
    /// Copied from the account's settings at create time.
    pub dotfiles_repository: Option<String>,
    /// Chosen by the deployment's `HomeModeRule` at create time.
    pub home_mode: HomeMode,
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
    /// Resources are being created or started; not answering yet. Compute
    /// names the step it sees when it can.
    Starting(Option<StepNote>),
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
            usage: None,
            progress: Some(Progress {
                step: steps::QUEUED.to_string(),
                detail: None,
                at: now,
            }),
            repository: spec.repository,
            dotfiles_repository: spec.dotfiles_repository,
            clone_error: None,
            home_mode: spec.home_mode,
            final_snapshot_asked_at: None,
        }
    }

    /// The agent reported the repository's clone failed: keep the first
    /// reason. `true` when this changed the record (so it is audited once).
    pub fn note_clone_error(&mut self, reason: &str) -> bool {
        if self.repository.is_none() || self.clone_error.is_some() {
            return false;
        }
        let mut reason: String = reason.chars().take(CLONE_ERROR_MAX).collect();
        if reason.trim().is_empty() {
            reason = "the clone failed".into();
        }
        self.clone_error = Some(reason);
        true
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
            self.updated_at = now;
        }
        if status != Status::Running {
            self.usage = None;
        }
        if !matches!(status, Status::Creating | Status::Starting) {
            self.progress = None;
        }
        if matches!(status, Status::Stopped | Status::Deleting | Status::Error) {
            self.final_snapshot_asked_at = None;
        }
    }

    /// The agent measured usage: kept while the environment runs and is
    /// meant to. Never touches `last_activity_at` (usage is not use).
    pub fn record_usage(&mut self, usage: Usage) -> bool {
        if self.status != Status::Running || self.desired_state != DesiredState::Running {
            return false;
        }
        self.usage = Some(usage);
        true
    }

    /// A create or start reached `note`'s step. Only while creating or
    /// starting; the same step again changes nothing (not even its time).
    pub fn note_progress(&mut self, note: StepNote, now: DateTime<Utc>) -> bool {
        if !matches!(self.status, Status::Creating | Status::Starting) {
            return false;
        }
        if let Some(p) = &self.progress
            && p.step == note.step
            && p.detail == note.detail
        {
            return false;
        }
        self.progress = Some(Progress {
            step: note.step.to_string(),
            detail: note.detail,
            at: now,
        });
        true
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
            self.note_progress(StepNote::new(steps::QUEUED), now);
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
        if self.desired_state == DesiredState::Running && self.final_snapshot_asked_at.is_some() {
            // Started again while a stop waited for its final snapshot: the
            // agent has ended the IDE to save the home, so that stop
            // finishes first (snapshot, then compute stopped), and a fresh
            // start restores what it saved.
            match observed {
                Observed::Running { .. } | Observed::Starting(_) => {
                    self.ide_url = None;
                    return Step::Stop;
                }
                Observed::Stopping | Observed::Deleting => return Step::Wait,
                _ => self.final_snapshot_asked_at = None,
            }
        }
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
                Observed::Starting(note) => {
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
                        if let Some(note) = note {
                            self.note_progress(note.clone(), now);
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
                    Observed::Running { .. } | Observed::Starting(_) => {
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

    /// Snapshot mode, before compute is stopped: the agent is asked for its
    /// final snapshot. Notes when that was first asked for and shows it as
    /// the progress; `false` once `FINAL_SNAPSHOT_WAIT` has passed since
    /// (compute is stopped anyway).
    pub fn wait_for_final_snapshot(&mut self, now: DateTime<Utc>) -> bool {
        let asked = *self.final_snapshot_asked_at.get_or_insert(now);
        if self.progress.as_ref().map(|p| p.step.as_str()) != Some(steps::SAVING_FILES) {
            self.progress = Some(Progress {
                step: steps::SAVING_FILES.to_string(),
                detail: None,
                at: asked,
            });
        }
        now - asked < FINAL_SNAPSHOT_WAIT
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

    /// The idle timeout, measured in `rules`' minutes.
    pub fn idle_timeout(&self, rules: IdleRules) -> Duration {
        rules.minutes(self.idle_timeout_minutes)
    }

    /// Is the idle timeout over? Only running environments that should run idle out.
    pub fn is_idle(&self, now: DateTime<Utc>, rules: IdleRules) -> bool {
        self.desired_state == DesiredState::Running
            && self.status == Status::Running
            && now - self.last_activity_at >= self.idle_timeout(rules)
    }

    /// When the sweep will stop this environment for inactivity unless it is
    /// used before: `lastActivityAt` plus the idle timeout, while it is meant
    /// to run and is coming up or running (`None` otherwise). The sweep
    /// stops it at its first pass at or after this time (`is_idle`).
    pub fn idle_stop_at(&self, rules: IdleRules) -> Option<DateTime<Utc>> {
        (self.desired_state == DesiredState::Running
            && matches!(
                self.status,
                Status::Creating | Status::Starting | Status::Running
            ))
        .then(|| self.last_activity_at + self.idle_timeout(rules))
    }

    /// When the person is warned of the idle stop: the configured lead
    /// before `idle_stop_at` (`DEV8_IDLE_WARNING_MINUTES`), by default 5
    /// minutes or a third of the timeout, whichever is less.
    pub fn idle_warning_at(&self, rules: IdleRules) -> Option<DateTime<Utc>> {
        let timeout = self.idle_timeout(rules);
        let lead = rules
            .warning_minutes
            .map_or_else(|| (timeout / 3).min(rules.minutes(5)), |m| rules.minutes(m))
            .min(timeout);
        self.idle_stop_at(rules).map(|at| at - lead)
    }

    /// Is another delivery holding the lease right now?
    pub fn leased_by_other(&self, owner: &str, now: DateTime<Utc>) -> bool {
        matches!(&self.lease, Some(l) if l.owner != owner && l.until > now)
    }

    /// Is any delivery holding the lease right now?
    pub fn is_leased(&self, now: DateTime<Utc>) -> bool {
        matches!(&self.lease, Some(l) if l.until > now)
    }

    /// Claim the record for a compute action by `owner` (a queue message id,
    /// stable across redeliveries). Starting needs an agent token: the first
    /// start after a stop mints a new id, so an old agent can no longer report.
    pub fn take_lease(&mut self, owner: &str, step: Step, now: DateTime<Utc>) {
        self.lease = Some(Lease {
            owner: owner.to_string(),
            until: now + LEASE,
        });
        if step == Step::Start && self.agent_token_id.is_none() {
            self.agent_token_id = Some(new_id());
        }
    }

    pub fn release_lease(&mut self) {
        self.lease = None;
    }

    /// A compute action failed in a way worth retrying: give the lease back
    /// so the retry (or anyone) can act soon, and count the failure.
    pub fn count_failure(&mut self) {
        self.lease = None;
        self.failures += 1;
    }

    /// May the delivery that carries chain token `delivered` schedule the
    /// next follow-up? Only the chain's own message may, or any delivery once
    /// the chain is overdue (its message was lost). If so, the new chain is
    /// recorded and its token returned: the follow-up must carry it.
    pub fn continue_chain(
        &mut self,
        delivered: Option<&str>,
        interval: Duration,
        now: DateTime<Utc>,
    ) -> Option<String> {
        let may = match &self.chain {
            None => true,
            Some(c) => Some(c.token.as_str()) == delivered || c.due_at + CHAIN_GRACE <= now,
        };
        if !may {
            return None;
        }
        let token = new_id();
        self.chain = Some(Chain {
            token: token.clone(),
            due_at: now + interval,
        });
        Some(token)
    }

    /// The desired state is reached: no follow-up is needed.
    pub fn end_chain(&mut self) {
        self.chain = None;
    }

    /// Is this environment's drift check due in a sweep covering the time
    /// after `since` (the previous completed sweep; `None`: none known) up
    /// to `now`? Each environment's check falls at a fixed offset (from its
    /// id) in every `DRIFT_CHECK_EVERY` period; a window of a whole period
    /// or more covers everyone.
    pub fn drift_check_due(&self, since: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
        let every = DRIFT_CHECK_EVERY.num_milliseconds();
        let Some(since) = since.filter(|s| (now - *s).num_milliseconds() < every) else {
            return true;
        };
        if since >= now {
            return false;
        }
        // FNV-1a: stable across processes and versions (unlike std's hasher).
        let hash = self.id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let offset = i64::try_from(hash % every.unsigned_abs()).unwrap_or(0);
        let (from, to) = (
            since.timestamp_millis().rem_euclid(every),
            now.timestamp_millis().rem_euclid(every),
        );
        if from < to {
            from < offset && offset <= to
        } else {
            offset > from || offset <= to
        }
    }

    /// Is the record waiting on a follow-up that is overdue (or on none)?
    pub fn chain_is_stale(&self, now: DateTime<Utc>) -> bool {
        self.chain
            .as_ref()
            .is_none_or(|c| c.due_at + CHAIN_GRACE <= now)
    }

    /// The last allowed delivery failed: the environment shows `error` with
    /// the cause — except deletion, which never gives up: it is retried with
    /// an exponential back-off (1, 2, 4 ... 32 minutes) that the sweep
    /// honours through the chain's due time.
    pub fn fail_finally(&mut self, cause: &str, attempts: u32, now: DateTime<Utc>) {
        if self.desired_state == DesiredState::Deleted {
            self.failures += 1;
            let backoff = Duration::seconds(30 * 2i64.pow(self.failures.min(6)));
            self.status_reason = Some(format!("Deletion is being retried: {cause}"));
            self.chain = Some(Chain {
                token: new_id(),
                due_at: now + backoff - CHAIN_GRACE,
            });
        } else {
            self.fail(format!("Failed after {attempts} attempts: {cause}"), now);
        }
        self.lease = None;
        self.updated_at = now;
    }

    /// The agent reported use: the idle clock restarts. Only while the
    /// environment is meant to run, and never backwards.
    pub fn touch(&mut self, now: DateTime<Utc>) -> bool {
        if self.desired_state != DesiredState::Running || self.last_activity_at >= now {
            return false;
        }
        self.last_activity_at = now;
        true
    }

    /// Rename or change the idle timeout; refused once deletion is asked for.
    pub fn change_settings(
        &mut self,
        name: Option<&str>,
        idle_timeout_minutes: Option<u16>,
        now: DateTime<Utc>,
    ) -> Result<bool, TransitionError> {
        if self.desired_state == DesiredState::Deleted {
            return Err(TransitionError::Deleting);
        }
        let mut changed = false;
        if let Some(name) = name
            && self.name != name
        {
            self.name = name.to_string();
            changed = true;
        }
        if let Some(idle) = idle_timeout_minutes
            && self.idle_timeout_minutes != idle
        {
            self.idle_timeout_minutes = idle;
            changed = true;
        }
        if changed {
            self.updated_at = now;
        }
        Ok(changed)
    }

    /// How long a transitional status may last before the sweep calls it stuck.
    pub fn deadline(&self) -> Option<Duration> {
        match self.status {
            Status::Creating => Some(CREATE_DEADLINE),
            Status::Starting => Some(START_DEADLINE),
            Status::Stopping => Some(STOP_DEADLINE),
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
                repository: None,
                dotfiles_repository: None,
                home_mode: HomeMode::Share,
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
    fn each_drift_check_falls_once_per_period_and_spreads() {
        let t0 = DateTime::parse_from_rfc3339("2026-12-02T00:00:07Z")
            .unwrap()
            .with_timezone(&Utc);
        let sweep = Duration::seconds(60);
        let sweeps = (DRIFT_CHECK_EVERY.num_seconds() / sweep.num_seconds()) as i32;
        let mut per_sweep = vec![0u32; sweeps as usize];
        for i in 0..200 {
            let mut e = env(t0);
            e.id = format!("01KBFZ{i:05}");
            assert!(e.drift_check_due(None, t0), "no previous sweep: due");
            assert!(e.drift_check_due(Some(t0 - DRIFT_CHECK_EVERY), t0));
            assert!(!e.drift_check_due(Some(t0), t0), "an empty window");
            // Sweeps a minute apart over two periods: due exactly once in each.
            let mut due = 0;
            for k in 0..2 * sweeps {
                let (since, now) = (t0 + sweep * k, t0 + sweep * (k + 1));
                if e.drift_check_due(Some(since), now) {
                    due += 1;
                    per_sweep[(k % sweeps) as usize] += 1;
                }
            }
            assert_eq!(due, 2, "{}", e.id);
        }
        // Spread: no sweep gets twice its share.
        let share = 2 * 200 / sweeps as u32;
        assert!(per_sweep.iter().all(|n| *n < 2 * share), "{per_sweep:?}");
    }

    #[test]
    fn create_runs_through_creating_to_running() {
        let now = Utc::now();
        let mut e = env(now);
        assert_eq!(e.status, Status::Creating);
        assert_eq!(e.plan(&Observed::Absent, now), Step::Start);
        assert_eq!(e.status, Status::Creating);
        assert_eq!(e.plan(&Observed::Starting(None), now), Step::Wait);
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
        let rules = IdleRules::default();
        assert!(!e.is_idle(t0 + Duration::minutes(29), rules));
        assert!(e.is_idle(t0 + Duration::minutes(30), rules));
        let mut e = e;
        e.request_stop(StopCause::Idle, t0).unwrap();
        assert_eq!(e.stop_cause, Some(StopCause::Idle));
        assert!(e.status_reason.as_deref().unwrap().contains("30 minutes"));
        assert!(!e.is_idle(t0 + Duration::days(1), rules));
    }

    #[test]
    fn status_changed_at_moves_only_on_change() {
        let t0 = Utc::now();
        let mut e = env(t0);
        let t1 = t0 + Duration::seconds(5);
        e.plan(&Observed::Starting(None), t1);
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
    fn observing_the_state_already_recorded_changes_nothing() {
        let t0 = Utc::now();
        let e = running(t0);
        let mut again = e.clone();
        let later = t0 + Duration::minutes(1);
        assert_eq!(
            again.plan(
                &Observed::Running {
                    ide_url: "http://x/".into()
                },
                later
            ),
            Step::Done
        );
        assert_eq!(
            again, e,
            "a drift check of a healthy environment writes nothing"
        );
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

    #[test]
    fn a_lease_is_taken_for_an_action_and_a_start_mints_the_agent_token_once() {
        let t0 = Utc::now();
        let mut e = env(t0);
        assert!(!e.is_leased(t0));
        e.take_lease("m1", Step::Start, t0);
        assert!(e.is_leased(t0));
        assert!(e.leased_by_other("m2", t0));
        assert!(!e.leased_by_other("m1", t0));
        assert!(!e.is_leased(t0 + LEASE));
        let token = e
            .agent_token_id
            .clone()
            .expect("a start mints the agent token id");
        e.take_lease("m1", Step::Start, t0);
        assert_eq!(
            e.agent_token_id.as_ref(),
            Some(&token),
            "kept while running"
        );
        e.release_lease();
        assert!(!e.is_leased(t0));
        // Stopping clears it, so the next start rotates it.
        e.request_stop(StopCause::User, t0).unwrap();
        e.plan(&Observed::Stopped, t0);
        assert_eq!(e.agent_token_id, None);
        e.request_start(t0).unwrap();
        e.take_lease("m2", Step::Start, t0);
        assert_ne!(e.agent_token_id.as_ref(), Some(&token));
        // A stop or delete lease mints nothing.
        let mut other = env(t0);
        other.take_lease("m3", Step::Stop, t0);
        assert_eq!(other.agent_token_id, None);
    }

    #[test]
    fn only_the_chains_own_message_or_an_overdue_chain_schedules_the_next() {
        let t0 = Utc::now();
        let every = Duration::seconds(1);
        let mut e = env(t0);
        assert!(e.chain_is_stale(t0), "no chain is stale");
        let first = e.continue_chain(None, every, t0).expect("no chain yet");
        assert!(!e.chain_is_stale(t0));
        // A duplicate delivery (another token, or none) may not fork the chain.
        assert_eq!(e.continue_chain(None, every, t0), None);
        assert_eq!(e.continue_chain(Some("stale"), every, t0), None);
        // The chain's own follow-up continues it with a new token.
        let second = e.continue_chain(Some(&first), every, t0).unwrap();
        assert_ne!(first, second);
        // A chain overdue by the grace is presumed lost: anyone may restart it.
        let late = t0 + every + CHAIN_GRACE;
        assert!(e.chain_is_stale(late));
        assert!(e.continue_chain(None, every, late).is_some());
        e.end_chain();
        assert_eq!(e.chain, None);
    }

    #[test]
    fn transient_failures_count_and_give_the_lease_back() {
        let t0 = Utc::now();
        let mut e = env(t0);
        e.take_lease("m1", Step::Start, t0);
        e.count_failure();
        e.count_failure();
        assert_eq!(e.failures, 2);
        assert_eq!(e.lease, None);
        // A new start resets the count.
        e.fail("x".into(), t0);
        e.request_start(t0).unwrap();
        assert_eq!(e.failures, 0);
    }

    #[test]
    fn a_final_failure_is_an_error_except_for_deletion_which_backs_off() {
        let t0 = Utc::now();
        let mut e = env(t0);
        e.take_lease("m1", Step::Start, t0);
        e.fail_finally("quota", 5, t0);
        assert_eq!(e.status, Status::Error);
        assert_eq!(
            e.status_reason.as_deref(),
            Some("Failed after 5 attempts: quota")
        );
        assert_eq!(e.lease, None);

        let mut d = env(t0);
        d.request_delete(t0);
        d.fail_finally("busy", 5, t0);
        assert_eq!(d.status, Status::Deleting, "deletion never ends in error");
        let due1 = d.chain.as_ref().unwrap().due_at;
        d.fail_finally("busy", 5, t0);
        let due2 = d.chain.as_ref().unwrap().due_at;
        assert!(due2 > due1, "the back-off grows");
        // The sweep restarts it only once the back-off is over.
        assert!(!d.chain_is_stale(t0));
        assert!(d.chain_is_stale(due2 + CHAIN_GRACE));
        assert!(
            d.status_reason
                .unwrap()
                .starts_with("Deletion is being retried")
        );
    }

    #[test]
    fn activity_moves_the_idle_clock_forward_only_while_running_is_wanted() {
        let t0 = Utc::now();
        let mut e = running(t0);
        let t1 = t0 + Duration::minutes(1);
        assert!(e.touch(t1));
        assert_eq!(e.last_activity_at, t1);
        assert!(!e.touch(t0), "never backwards");
        e.request_stop(StopCause::User, t1).unwrap();
        assert!(!e.touch(t1 + Duration::minutes(1)));
    }

    #[test]
    fn the_idle_stop_time_and_its_warning_follow_activity_and_the_timeout() {
        let t0 = Utc::now();
        let mut e = running(t0);
        e.idle_timeout_minutes = 30;
        let rules = IdleRules::default();
        let lead = |m| IdleRules {
            warning_minutes: Some(m),
            ..rules
        };
        assert_eq!(e.idle_stop_at(rules), Some(t0 + Duration::minutes(30)));
        // The default lead: 5 minutes, or a third of a short timeout.
        assert_eq!(e.idle_warning_at(rules), Some(t0 + Duration::minutes(25)));
        e.idle_timeout_minutes = 6;
        assert_eq!(e.idle_warning_at(rules), Some(t0 + Duration::minutes(4)));
        // A configured lead, never longer than the timeout itself.
        assert_eq!(e.idle_warning_at(lead(1)), Some(t0 + Duration::minutes(5)));
        assert_eq!(e.idle_warning_at(lead(60)), Some(t0));
        // Use pushes both back; the sweep's rule agrees with the time.
        let t1 = t0 + Duration::minutes(3);
        e.touch(t1);
        let stop = e.idle_stop_at(rules).unwrap();
        assert_eq!(stop, t1 + Duration::minutes(6));
        assert!(!e.is_idle(stop - Duration::seconds(1), rules) && e.is_idle(stop, rules));
        e.request_stop(StopCause::User, t1).unwrap();
        assert_eq!(
            (e.idle_stop_at(rules), e.idle_warning_at(rules)),
            (None, None)
        );
    }

    #[test]
    fn a_shortened_idle_minute_scales_the_timeout_and_the_warning_alike() {
        let t0 = Utc::now();
        let mut e = running(t0);
        e.idle_timeout_minutes = 6;
        let rules = IdleRules {
            minute: Duration::seconds(2),
            warning_minutes: None,
        };
        assert_eq!(e.idle_stop_at(rules), Some(t0 + Duration::seconds(12)));
        assert_eq!(e.idle_warning_at(rules), Some(t0 + Duration::seconds(8)));
        assert!(!e.is_idle(t0 + Duration::seconds(11), rules));
        assert!(e.is_idle(t0 + Duration::seconds(12), rules));
        let lead = IdleRules {
            warning_minutes: Some(1),
            ..rules
        };
        assert_eq!(e.idle_warning_at(lead), Some(t0 + Duration::seconds(10)));
    }

    #[test]
    fn settings_change_only_what_differs_and_not_after_delete() {
        let t0 = Utc::now();
        let mut e = env(t0);
        assert_eq!(e.change_settings(Some("app"), Some(30), t0), Ok(false));
        assert_eq!(e.change_settings(Some("web"), None, t0), Ok(true));
        assert_eq!(e.name, "web");
        assert_eq!(e.change_settings(None, Some(60), t0), Ok(true));
        assert_eq!(e.idle_timeout_minutes, 60);
        e.request_delete(t0);
        assert_eq!(
            e.change_settings(Some("x"), None, t0),
            Err(TransitionError::Deleting)
        );
    }

    #[test]
    fn usage_is_kept_only_while_running_and_cleared_when_it_stops() {
        let t0 = Utc::now();
        let mut e = env(t0);
        let u = Usage {
            cpu_percent: 5.0,
            memory_bytes: 1,
            memory_limit_bytes: 2,
            disk_bytes: 3,
            disk_limit_bytes: 4,
            at: t0,
            snapshot: None,
        };
        assert!(!e.record_usage(u.clone()), "creating: not kept");
        e.plan(
            &Observed::Running {
                ide_url: "http://x/".into(),
            },
            t0,
        );
        let activity = e.last_activity_at;
        assert!(e.record_usage(u.clone()));
        assert_eq!(e.usage.as_ref(), Some(&u));
        assert_eq!(e.last_activity_at, activity, "usage is not use");
        e.request_stop(StopCause::User, t0).unwrap();
        assert_eq!(e.usage, None);
        assert!(!e.record_usage(u), "stopping: not kept");
    }

    #[test]
    fn progress_is_noted_while_creating_or_starting_and_cleared_after() {
        let t0 = Utc::now();
        let t1 = t0 + Duration::seconds(3);
        let mut e = env(t0);
        assert_eq!(e.progress.as_ref().unwrap().step, steps::QUEUED);
        assert!(e.note_progress(StepNote::new(steps::STARTING_IDE), t0));
        // The same step again keeps its time.
        assert!(!e.note_progress(StepNote::new(steps::STARTING_IDE), t1));
        assert_eq!(e.progress.as_ref().unwrap().at, t0);
        e.plan(
            &Observed::Starting(Some(StepNote::with_detail(steps::PULLING_IMAGE, "node:1"))),
            t1,
        );
        let p = e.progress.clone().unwrap();
        assert_eq!(
            (p.step.as_str(), p.detail.as_deref(), p.at),
            ("pulling the image", Some("node:1"), t1)
        );
        e.plan(
            &Observed::Running {
                ide_url: "http://x/".into(),
            },
            t1,
        );
        assert_eq!(e.progress, None);
        assert!(!e.note_progress(StepNote::new(steps::STARTING_IDE), t1));
    }

    /// A running snapshot-mode environment asked to stop, and what compute
    /// observes of it.
    fn stopping_in_snapshot_mode(t0: DateTime<Utc>) -> (Environment, Observed) {
        let mut e = running(t0);
        e.home_mode = HomeMode::Snapshot;
        e.request_stop(StopCause::User, t0).unwrap();
        let observed = Observed::Running {
            ide_url: "http://x/".into(),
        };
        (e, observed)
    }

    #[test]
    fn a_stop_waits_for_the_final_snapshot_within_its_bound_and_shows_it() {
        let t0 = Utc::now();
        let (mut e, running_ide) = stopping_in_snapshot_mode(t0);
        assert_eq!(e.plan(&running_ide, t0), Step::Stop);
        assert!(e.wait_for_final_snapshot(t0));
        let p = e.progress.clone().unwrap();
        assert_eq!((p.step.as_str(), p.at), (steps::SAVING_FILES, t0));
        assert!(e.status.shows_progress());
        // Later deliveries keep the first ask's time: the bound counts from it.
        let later = t0 + FINAL_SNAPSHOT_WAIT - Duration::seconds(1);
        e.plan(&running_ide, later);
        assert!(e.wait_for_final_snapshot(later));
        assert_eq!(e.final_snapshot_asked_at, Some(t0));
        assert_eq!(e.progress.as_ref().unwrap().at, t0);
        assert!(!e.wait_for_final_snapshot(t0 + FINAL_SNAPSHOT_WAIT));
        // Compute stopped: the wait and its progress are over.
        e.plan(&Observed::Stopped, later);
        assert_eq!(e.status, Status::Stopped);
        assert_eq!(
            (e.final_snapshot_asked_at, e.progress.clone()),
            (None, None)
        );
    }

    #[test]
    fn a_start_during_the_final_snapshot_lets_the_stop_finish_first() {
        let t0 = Utc::now();
        let (mut e, running_ide) = stopping_in_snapshot_mode(t0);
        e.plan(&running_ide, t0);
        e.wait_for_final_snapshot(t0);
        assert!(e.request_start(t0).unwrap());
        assert_eq!(e.status, Status::Starting);
        // The agent has ended the IDE: stop compute first (after the snapshot),
        assert_eq!(e.plan(&running_ide, t0), Step::Stop);
        assert_eq!(
            e.plan(&Observed::Starting(None), t0),
            Step::Stop,
            "its readiness no longer answers"
        );
        // then start afresh.
        assert_eq!(e.plan(&Observed::Stopped, t0), Step::Start);
        assert_eq!(e.final_snapshot_asked_at, None);
        assert_eq!(e.status, Status::Starting);
    }

    #[test]
    fn a_record_without_a_home_mode_is_a_share() {
        let mut doc = serde_json::to_value(env(Utc::now())).unwrap();
        doc.as_object_mut().unwrap().remove("homeMode");
        let e: Environment = serde_json::from_value(doc).unwrap();
        assert_eq!(e.home_mode, HomeMode::Share);
    }
}
