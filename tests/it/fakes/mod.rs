//! In-test stand-ins for what cannot run here, each a stateful fake of its
//! documented wire contract on 127.0.0.1 (or, for compute, of the port's
//! contract): fast tier, nothing to install.

pub mod appinsights;
pub mod arm;
pub mod compute;
pub mod deployment;
pub mod github;
pub mod host_sim;
pub mod identity;
pub mod idp;
pub mod smtp;
pub mod swa;
