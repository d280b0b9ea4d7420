//! Accounts and tokens: argon2id passwords, Ed25519-signed JWTs of distinct
//! kinds, server-side sessions, sign-in rate limits, and sign-in with
//! external providers (GitHub, one OpenID Connect issuer).

pub mod github;
pub mod keys;
pub mod oauth;
pub mod oidc;
pub mod password;
pub mod provider;
pub mod ratelimit;
pub mod sessions;
pub mod strength;
pub mod tokens;

pub use keys::KeySet;
pub use tokens::{Claims, TokenError, TokenKind};
