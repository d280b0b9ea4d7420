//! Dev8 control plane: one library behind the `handler` binary's three run
//! modes (`serve`, `functions`, `agent`). See ARCHITECTURE.md for the map.

pub mod account;
pub mod agent;
pub mod agent_env;
pub mod audit;
pub mod auth;
pub mod azure_http;
pub mod clock;
pub mod compute;
pub mod config;
pub mod db;
pub mod doctor;
pub mod domain;
pub mod frontdoor;
pub mod host;
pub mod http;
pub mod jobs;
pub mod lifecycle;
pub mod mail;
pub mod metrics;
pub mod platform;
pub mod procs;
pub mod queue;
pub mod quota;
pub mod reconciles;
pub mod sealing;
pub mod secrets;
pub mod snapshot;
pub mod snapshot_grant;
pub mod startup;
pub mod storage_sas;
pub mod store;
