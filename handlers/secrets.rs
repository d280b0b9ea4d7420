//! Personal secrets, the service: one function per operation (list, set,
//! delete, delete all of an account's, open them for an environment's
//! start), each with its audit record. Values are write-only: they come in
//! through `set`, leave only through `for_environment` (the reconcile job,
//! on the way to the agent's environment) and are stored sealed
//! (`crate::sealing`). No function here logs, returns or audits a value.

use crate::audit::{self, Action, Entry};
use crate::domain::{SECRETS_PER_USER, StoredSecret};
use crate::platform::Platform;
use crate::store::{StoreError, StoreResult};
use secrecy::SecretString;
use std::net::IpAddr;

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("no secret by that name")]
    NotFound,
    #[error("an account keeps at most {SECRETS_PER_USER} secrets")]
    TooMany,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("sealing failed")]
    Sealing(#[source] anyhow::Error),
}

/// The caller's secrets (sealed), by name.
pub async fn list(p: &Platform, user_id: &str) -> StoreResult<Vec<StoredSecret>> {
    p.store.secrets(user_id).await
}

/// Create or replace `name` (already validated). Returns what was stored
/// and whether it replaced an existing secret.
pub async fn set(
    p: &Platform,
    user_id: &str,
    client: Option<IpAddr>,
    name: &str,
    value: &str,
) -> Result<(StoredSecret, bool), SecretsError> {
    let existing = p.store.secrets(user_id).await?;
    let replaced = existing.iter().any(|s| s.name == name);
    if !replaced && existing.len() >= SECRETS_PER_USER {
        return Err(SecretsError::TooMany);
    }
    let sealed = p
        .secrets_key
        .seal(user_id, name, value)
        .map_err(SecretsError::Sealing)?;
    let stored = StoredSecret {
        user_id: user_id.to_string(),
        name: name.to_string(),
        sealed,
        updated_at: p.clock.now(),
    };
    p.store.put_secret(&stored).await?;
    audit::record(
        p,
        Entry::ok(user_id, Action::SecretSet)
            .from(client)
            .detail(name),
    )
    .await;
    Ok((stored, replaced))
}

/// Remove `name`; `NotFound` when the caller has no such secret.
pub async fn delete(
    p: &Platform,
    user_id: &str,
    client: Option<IpAddr>,
    name: &str,
) -> Result<(), SecretsError> {
    match p.store.delete_secret(user_id, name).await {
        Ok(()) => {}
        Err(StoreError::NotFound) => return Err(SecretsError::NotFound),
        Err(e) => return Err(e.into()),
    }
    audit::record(
        p,
        Entry::ok(user_id, Action::SecretDelete)
            .from(client)
            .detail(name),
    )
    .await;
    Ok(())
}

/// Remove every secret of an account (account deletion; no audit records:
/// the account's log goes with it).
pub async fn delete_all(p: &Platform, user_id: &str) -> StoreResult<()> {
    for s in p.store.secrets(user_id).await? {
        match p.store.delete_secret(user_id, &s.name).await {
            Ok(()) | Err(StoreError::NotFound) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The account's secrets opened, for an environment's start: name and
/// value, in name order. A value that does not open (the key was changed)
/// is an error naming the secret, never a silent omission.
pub async fn for_environment(
    p: &Platform,
    user_id: &str,
) -> anyhow::Result<Vec<(String, SecretString)>> {
    let mut out = Vec::new();
    for s in p.store.secrets(user_id).await? {
        let value = p.secrets_key.open(user_id, &s.name, &s.sealed)?;
        out.push((s.name, value));
    }
    Ok(out)
}
