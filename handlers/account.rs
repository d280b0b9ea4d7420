//! Account settings: what a person sets once for all their environments
//! (today `dotfilesRepository`). One document per account in the store's
//! document space (`settings:<userId>`), written through
//! `store::update::update_document`; account deletion expires it.

use crate::store::update::{Retries, update_document};
use crate::store::{Store, StoreError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The stored settings of one account (and the `/api/settings` answer).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountSettings {
    /// Cloned to `~/.dotfiles` on each new environment's first start.
    #[serde(default)]
    pub dotfiles_repository: Option<String>,
    /// Set when the account is deleted: the document is gone from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<DateTime<Utc>>,
}

fn key(user_id: &str) -> String {
    format!("settings:{user_id}")
}

/// The account's settings (defaults when none were ever set).
pub async fn read(store: &dyn Store, user_id: &str) -> Result<AccountSettings, StoreError> {
    Ok(store
        .document(&key(user_id))
        .await?
        .and_then(|d| serde_json::from_value(d.value).ok())
        .unwrap_or_default())
}

/// Set (or with `None` remove) the dotfiles repository; returns the
/// settings and whether the repository changed.
pub async fn set_dotfiles(
    store: &dyn Store,
    user_id: &str,
    url: Option<String>,
) -> Result<(AccountSettings, bool), StoreError> {
    let mut written = AccountSettings::default();
    let mut changed = false;
    update_document(
        store,
        &key(user_id),
        Retries::RECORD,
        |s: &mut AccountSettings| {
            changed = s.dotfiles_repository != url;
            s.dotfiles_repository = url.clone();
            written = s.clone();
            Ok::<_, StoreError>(changed.into())
        },
        |s| s.expires_at,
    )
    .await?;
    Ok((written, changed))
}

/// Account deletion: the settings expire now (reads miss them from then on,
/// the store's purge removes them).
pub async fn forget(
    store: &dyn Store,
    user_id: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if store.document(&key(user_id)).await?.is_none() {
        return Ok(());
    }
    update_document(
        store,
        &key(user_id),
        Retries::RECORD,
        |s: &mut AccountSettings| {
            *s = AccountSettings {
                dotfiles_repository: None,
                expires_at: Some(now),
            };
            Ok::<_, StoreError>(crate::store::update::Change::Write)
        },
        |s| s.expires_at,
    )
    .await
}
