//! Accounts and tokens: argon2id passwords, Ed25519-signed JWTs of distinct
//! kinds, server-side sessions, and sign-in rate limits.

pub mod keys;
pub mod password;
pub mod ratelimit;
pub mod tokens;

pub use keys::KeySet;
pub use tokens::{Claims, TokenError, TokenKind};
