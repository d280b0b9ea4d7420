//! The real peers full-tier tests talk to, each on loopback: Azurite, the
//! Cosmos-compatible server, code-server (with Node.js) and npm
//! `oidc-provider`. Every accessor checks its peer is there and panics with
//! what to run when it is not: a full-tier test never skips.

pub mod azurite;
pub mod code_server;
pub mod cosmos;
pub mod oidc_provider;

/// `node` on PATH (code-server and `oidc-provider` run on it).
pub fn node() -> std::path::PathBuf {
    dev8::compute::local::find_node().unwrap_or_else(|e| panic!("{e:#}"))
}
