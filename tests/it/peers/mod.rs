//! The real peers full-tier tests talk to, each on loopback: Azurite, the
//! Cosmos-compatible server, code-server (with Node.js) and npm
//! `oidc-provider`. Every accessor checks its peer is there and panics with
//! what to run when it is not: a full-tier test never skips.

pub mod azurite;
pub mod code_server;
pub mod cosmos;
pub mod oidc_provider;
