//! The `Compute` port: the resources an environment runs on. Adapters:
//! `local` (code-server processes behind the agent, `serve`) and `aci`
//! (Azure Container Instances + Azure Files, over `arm`). Every call is idempotent:
//! names derive from the environment id, so a repeated call finds what an
//! earlier one made.

pub mod aci;
pub mod arm;
pub mod local;
mod starter;

pub use local::{LocalCompute, LocalOptions};

use crate::domain::{Environment, Observed};
use async_trait::async_trait;
use std::sync::Arc;

pub use crate::agent_env::AgentParams;

pub use crate::domain::HomeMode;

#[derive(Debug, thiserror::Error)]
pub enum ComputeError {
    /// Worth retrying (network, throttling, a provider hiccup).
    #[error("compute backend unavailable")]
    Transient(#[source] anyhow::Error),
    /// Will not succeed by retrying; the reason is shown to the user.
    #[error("{0}")]
    Permanent(String),
}

pub type ComputeResult<T> = Result<T, ComputeError>;

/// What became of the final snapshot a stop asked an environment's agent
/// for (snapshot mode), as the agent answers `POST /_dev8/final-snapshot`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinalSnapshot {
    /// Nothing to wait for: the home is used in place, nothing runs, or
    /// this backend's agents take theirs on their way out (local).
    NotNeeded,
    /// The IDE and every process have ended; the snapshot is being taken.
    Saving,
    /// Taken: the store holds the home as it was at `last_at`.
    Saved {
        last_at: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// It failed (the previous snapshot is kept), or the agent refused.
    Failed { error: String },
    /// The agent did not answer.
    Unreachable,
}

/// What the record tells the agent at every start: the environment's name
/// (the IDE tab's title), and what the first start sets up — its repository
/// and the dotfiles its account named when it was created.
pub(crate) fn setup_variables(env: &Environment) -> Vec<crate::agent_env::Variable> {
    let repository = env.repository.as_ref();
    crate::agent_env::setup_variables(
        &env.name,
        repository.map(|r| r.url.as_str()),
        repository.and_then(|r| r.git_ref.as_deref()),
        env.dotfiles_repository.as_deref(),
    )
}

/// The size the agent measures usage against.
pub(crate) fn agent_size(env: &Environment) -> crate::agent_env::Size {
    crate::agent_env::Size {
        cpus: env.cpu_cores,
        memory_gb: env.memory_gb,
        storage_gb: env.storage_gb,
    }
}

/// An environment some provider resources carry Dev8's mark for (orphan collection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedEnvironment {
    pub user_id: String,
    pub environment_id: String,
}

#[async_trait]
pub trait Compute: Send + Sync + 'static {
    /// What exists for this environment now. `Running` only when the IDE answers.
    async fn observe(&self, env: &Environment) -> ComputeResult<Observed>;
    /// Create or start the resources. Returns provider references to keep in
    /// the record (`Environment::compute`).
    async fn start(
        &self,
        env: &Environment,
        agent: &AgentParams,
    ) -> ComputeResult<serde_json::Value>;
    /// Snapshot mode, before `stop`: ask the environment's agent for its
    /// final snapshot (or how the one asked for earlier is going), with an
    /// `agent-control` token. Idempotent. Default: nothing to wait for.
    async fn final_snapshot(
        &self,
        _env: &Environment,
        _token: &str,
    ) -> ComputeResult<FinalSnapshot> {
        Ok(FinalSnapshot::NotNeeded)
    }
    /// Stop, keeping the workspace.
    async fn stop(&self, env: &Environment) -> ComputeResult<()>;
    /// Remove everything, the workspace included.
    async fn delete(&self, env: &Environment) -> ComputeResult<()>;
    /// The environments that resources marked as Dev8's belong to. The sweep
    /// removes those whose record is gone. Default: nothing to collect.
    async fn managed_environments(&self) -> ComputeResult<Vec<ManagedEnvironment>> {
        Ok(Vec::new())
    }
    /// Remove the resources of an environment that has no record.
    async fn remove_orphan(&self, _orphan: &ManagedEnvironment) -> ComputeResult<()> {
        Ok(())
    }
    /// The control plane is shutting down: release what this process owns
    /// (the local backend stops its agents; cloud resources stay as they are).
    async fn shutdown(&self) {}
    /// The agents `serve`'s front door may forward to, when this backend's
    /// environments are reached through it (local); `None` when they have
    /// addresses of their own (ACI).
    fn front_door(&self) -> Option<Arc<crate::frontdoor::Doors>> {
        None
    }
}
