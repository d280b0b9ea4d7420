//! Background work: the reconcile job, the sweep, and the embedded worker
//! loop. Trigger-agnostic: `serve` and the Functions envelope call the same
//! functions here; nothing in this module speaks HTTP. Jobs take a
//! `JobContext` — the only holder of `Compute` — and orchestrate: the
//! record's rules are `Environment` methods, lifecycle effects (idle stop,
//! forgetting a deleted record) are `lifecycle` functions, and follow-ups
//! are asked for through `Reconciles`.

pub mod reconcile;
pub mod sweep;
pub mod worker;
