//! What a person sees of a running or starting environment beyond its
//! status: the latest usage its agent measured, and the step a create or
//! start is at. Both live on the environment record; the rules that keep
//! them true (usage only while running, progress only while creating or
//! starting, both cleared when the status moves on) are `Environment`
//! methods.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The latest usage the agent reported (`POST /api/environments/{id}/report`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// CPU time used over the agent's last window, as a percentage of the
    /// environment's size in CPUs (100 = every CPU of the size busy).
    pub cpu_percent: f64,
    pub memory_bytes: u64,
    pub memory_limit_bytes: u64,
    /// Bytes used under the environment's home (the workspace and its settings).
    pub disk_bytes: u64,
    pub disk_limit_bytes: u64,
    /// When the control plane received it.
    pub at: DateTime<Utc>,
    /// Snapshot mode: the last snapshot of the home and any warning about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotState>,
}

/// Snapshot mode, as the agent reports it: what a crash would lose (work
/// since `lastAt`, at most `intervalSeconds`), and a warning when a snapshot
/// failed, an older one had to be restored, or the next may not fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotState {
    pub last_at: Option<DateTime<Utc>>,
    pub stored_bytes: Option<u64>,
    pub interval_seconds: u64,
    pub warning: Option<String>,
}

/// The step a create or start is at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub step: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// When this step began.
    pub at: DateTime<Utc>,
}

/// A step as compute or the reconcile job names it (no time yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepNote {
    pub step: &'static str,
    pub detail: Option<String>,
}

impl StepNote {
    pub fn new(step: &'static str) -> Self {
        StepNote { step, detail: None }
    }

    pub fn with_detail(step: &'static str, detail: impl Into<String>) -> Self {
        StepNote {
            step,
            detail: Some(detail.into()),
        }
    }
}

/// The steps a person may see, in the words the dashboard shows. Adding a
/// step is one line here and a `StepNote::new(steps::X)` where it happens.
pub mod steps {
    /// Asked for; the reconcile job has not picked it up yet.
    pub const QUEUED: &str = "waiting to start";
    /// The reconcile job is about to create or attach the workspace storage.
    pub const PREPARING_STORAGE: &str = "preparing storage";
    /// Compute accepted the start: the agent is launching code-server.
    pub const STARTING_IDE: &str = "starting VS Code";
    /// code-server runs but its readiness does not answer yet.
    pub const WAITING_FOR_IDE: &str = "waiting for VS Code to answer";
    /// ACI: the container group is being provisioned.
    pub const PROVISIONING: &str = "creating the container group";
    /// ACI: the image is being pulled (`Pulling` event).
    pub const PULLING_IMAGE: &str = "pulling the image";
    /// ACI: the image is in place, the container starts (`Pulled`/`Created` events).
    pub const STARTING_CONTAINER: &str = "starting the container";
    /// First start: the agent clones the environment's repository.
    pub const CLONING_REPOSITORY: &str = "cloning the repository";
    /// First start: the agent clones and installs the account's dotfiles.
    pub const INSTALLING_DOTFILES: &str = "installing dotfiles";
    /// Snapshot mode: a stop waits for the agent's final snapshot.
    pub const SAVING_FILES: &str = "saving your files";

    /// The steps an agent names in its readiness answer, by their words
    /// (anything else names no step).
    pub fn agent_step(words: &str) -> Option<&'static str> {
        [CLONING_REPOSITORY, INSTALLING_DOTFILES]
            .into_iter()
            .find(|s| *s == words)
    }
}
