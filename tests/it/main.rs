//! Dev8's integration tests: one binary (one link), one module per concern,
//! one harness (`harness::TestApp`, see its docs).
//!
//! Two tiers. Plain `cargo test` is the fast tier and needs nothing installed
//! or running: in-process apps, in-test fakes (`fakes`), the `handler` binary.
//! Tests that need a real peer (`peers`: code-server, Azurite, the
//! Cosmos-compatible server, npm `oidc-provider`) are marked
//! `#[ignore = "full tier: needs <peer>"]`; `scripts/test.sh` runs them with
//! `cargo test -- --include-ignored`, and there a missing peer fails the test.

mod fakes;
mod harness;
mod peers;
mod specs;

mod aci;
mod aci_snapshot;
mod activity;
mod activity_replay;
mod agent;
mod api_auth;
mod api_environments;
mod audit;
mod cosmos_lifecycle;
mod cosmos_retries;
mod doctor;
mod front_door;
mod functions_binary;
mod functions_host;
mod functions_package;
mod functions_tidy;
mod idle_workbench;
mod infra_alerts;
mod infra_deploy;
mod infra_parse;
mod infra_settings;
mod jobs;
mod local_compute;
mod logs;
mod metrics;
mod module_deps;
mod oauth_github;
mod oauth_oidc;
mod queue_contract;
mod repository;
mod schemastore;
mod secrets;
mod serve_binary;
mod shutdown;
mod signin_limits;
mod signup_confirm;
mod snapshot_blob;
mod snapshot_local;
mod store_behaviour;
mod swa;
mod tiers;
mod usage;
mod usage_local;
mod workspace_trust;
