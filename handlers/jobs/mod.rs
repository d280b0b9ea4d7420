//! Background work: the reconcile job, the sweep, and the embedded worker
//! loop. Trigger-agnostic: `serve` and the Functions envelope call the same
//! functions here; nothing in this module speaks HTTP.

pub mod reconcile;
pub mod sweep;
pub mod worker;

use crate::domain::Environment;
use crate::platform::Platform;
use crate::queue::Job;
use std::time::Duration;

/// Enqueue an immediate reconcile of `env` (after the API changed its desired state).
pub async fn enqueue(p: &Platform, env: &Environment) -> anyhow::Result<()> {
    p.queue
        .send(
            &Job::reconcile(&env.user_id, &env.id).to_body(),
            Duration::ZERO,
        )
        .await?;
    Ok(())
}
